"""A fake kubelet: a real grpcio PodResources v1 server on a Unix socket.

It serves the scenario's pods the way the NVIDIA device plugin names devices:
`GPU-<uuid>` for a whole GPU, `GPU-<uuid>::<replica>` for a time-sliced or MPS share,
`MIG-<uuid>` for a MIG instance. Devices on a scenario's DRA GPUs are served the way the
kubelet reports DRA claims (KubeletPodResourcesDynamicResources, on by default since
1.34): only under `dynamic_resources`, per claim the container references, with the
driver, the pool (the node's name), the device name and CDI device names of
gpulse.sim.dra; GetAllocatableResources lists device-plugin devices only. Tests change what it serves mid-run with
set_pods(), add raw entries with set_extra(), slow it with set_delay(), and stop or
restart it; the agent's real client talks to it unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Optional

import grpc

from ..kube import podresources_pb2 as pb
from ..kube import podresources_pb2_grpc as pb_grpc
from . import dra

if TYPE_CHECKING:
    from .scenario import DeviceRef, GpuSpec, PodSpec, Scenario

# An entry served verbatim: (namespace, pod, container, resource, device ids).
_Extra = tuple[str, str, str, str, Iterable[str]]


def device_id(gpus: Sequence[GpuSpec], ref: DeviceRef) -> str:
    gpu = gpus[ref.gpu]
    if ref.mig is not None:
        return gpu.mig_instances[ref.mig].uuid + (f"::{ref.replica}" if ref.replica is not None else "")
    if ref.replica is not None:
        return f"{gpu.uuid}::{ref.replica}"
    return gpu.uuid


def list_response(gpus: Sequence[GpuSpec], pods: Iterable[PodSpec],
                  extra: Iterable[_Extra] = (), pool: str = "") -> pb.ListPodResourcesResponse:
    """extra: (namespace, pod, container, resource, [device ids]) served verbatim; `pool`:
    the DRA driver's pool (the node's name)."""
    resp = pb.ListPodResourcesResponse()
    for pod in pods:
        pr = resp.pod_resources.add(name=pod.name, namespace=pod.namespace)
        for c in pod.containers:
            cr = pr.containers.add(name=c.name)
            by_resource: dict[str, list[str]] = {}
            by_claim: dict[tuple[str, str], list[DeviceRef]] = {}
            for ref in c.devices:
                if ref.claim:
                    by_claim.setdefault((ref.claim_namespace, ref.claim), []).append(ref)
                else:
                    by_resource.setdefault(ref.resource, []).append(device_id(gpus, ref))
            for resource, ids in by_resource.items():
                cr.devices.add(resource_name=resource, device_ids=ids)
            for (claim_ns, claim), refs in by_claim.items():
                dr = cr.dynamic_resources.add(claim_name=claim, claim_namespace=claim_ns)
                for ref in refs:
                    gpu = gpus[ref.gpu]
                    name = dra.device_name(gpu, ref.mig)
                    res = dr.claim_resources.add(driver_name=gpu.dra_driver, pool_name=pool, device_name=name)
                    res.cdi_devices.add(name=dra.cdi_device(gpu.dra_driver, claim_ns, claim, name))
    for ns, name, container, resource, given_ids in extra:
        pr = resp.pod_resources.add(name=name, namespace=ns)
        pr.containers.add(name=container).devices.add(resource_name=resource, device_ids=list(given_ids))
    return resp


def allocatable_response(gpus: Iterable[GpuSpec]) -> pb.AllocatableResourcesResponse:
    resp = pb.AllocatableResourcesResponse()
    for gpu in gpus:
        if gpu.dra_driver:
            continue  # the DRA driver's devices are in its ResourceSlices, not the device plugin's list
        if gpu.mig_enabled:
            for inst in gpu.mig_instances:
                resp.devices.add(resource_name="nvidia.com/mig-" + inst.profile, device_ids=[inst.uuid])
        elif gpu.sharing != "exclusive":
            resp.devices.add(resource_name="nvidia.com/gpu",
                             device_ids=[f"{gpu.uuid}::{r}" for r in range(gpu.replicas)])
        else:
            resp.devices.add(resource_name="nvidia.com/gpu", device_ids=[gpu.uuid])
    return resp


class _Lister(pb_grpc.PodResourcesListerServicer):
    def __init__(self, handle: FakeKubelet) -> None:
        self.handle = handle

    def List(self, request: pb.ListPodResourcesRequest,  # noqa: N802 - gRPC method name
             context: grpc.ServicerContext) -> pb.ListPodResourcesResponse:
        self.handle._pause()
        return self.handle._list

    def GetAllocatableResources(self, request: pb.AllocatableResourcesRequest,  # noqa: N802
                                context: grpc.ServicerContext) -> pb.AllocatableResourcesResponse:
        self.handle._pause()
        return self.handle._allocatable


class FakeKubelet:
    def __init__(self, scenario: Scenario, socket_path: str) -> None:
        self.scenario = scenario
        self.socket_path = socket_path
        self._pods = tuple(scenario.pods)
        self._extra: tuple[_Extra, ...] = ()
        self._delay = 0.0
        self._list = list_response(scenario.gpus, self._pods, pool=scenario.node.name)
        self._allocatable = allocatable_response(scenario.gpus)
        self._server: Optional[grpc.Server] = None
        self.calls = 0
        self._lock = threading.Lock()

    def _pause(self) -> None:
        with self._lock:
            self.calls += 1
        if self._delay:
            time.sleep(self._delay)

    def start(self) -> FakeKubelet:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="fake-kubelet"))
        pb_grpc.add_PodResourcesListerServicer_to_server(_Lister(self), server)
        if server.add_insecure_port("unix:" + self.socket_path) == 0:
            raise OSError(f"fake kubelet: cannot listen on {self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(2.0)
            self._server = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pods(self) -> tuple[PodSpec, ...]:
        return self._pods

    def set_pods(self, pods: Iterable[PodSpec]) -> None:
        self._pods = tuple(pods)
        self._list = list_response(self.scenario.gpus, self._pods, self._extra, self.scenario.node.name)

    def set_extra(self, extra: Iterable[_Extra]) -> None:
        self._extra = tuple(extra)
        self._list = list_response(self.scenario.gpus, self._pods, self._extra, self.scenario.node.name)

    def set_delay(self, seconds: float) -> None:
        self._delay = float(seconds)


def start_fake_kubelet(scenario: Scenario, socket_path: str) -> FakeKubelet:
    """Serve `scenario`'s pods on `socket_path` until handle.stop()."""
    return FakeKubelet(scenario, socket_path).start()
