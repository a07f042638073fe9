"""Which container holds which GPU (kubelet PodResources) and which pod a PID is in.

Allocations come two ways, read from the same List answer: device-plugin ids under
`devices` (GPU-<uuid>, MIG-<uuid>, ...: gpulse.kube.devices) and DRA claims under
`dynamic_resources` (claim name and namespace, then driver, pool and device per allocated
device, plus its CDI device names). A DRA allocation names no GPU by itself: attribution
resolves it through this node's ResourceSlices (gpulse.kube.resourceslices), which the
view carries as `slices`. Every DRA device is kept whatever the driver, since only its
slice says whether it is a GPU.

PodSource(config) refreshes allocations on its own thread every
`kubelet.refresh-interval`, off the tick (a gpulse.refresh.Refresher); current() hands the
sampler an immutable PodView. A failed refresh keeps the last good allocations and shows
up=False with the error (gpulse_source_up{source="kubelet"} 0); retries back off
exponentially up to the refresh interval.

PodResources names pods by namespace/name, a process's cgroup names them by UID. The
join comes from a pod directory: any callable `uid -> (namespace, name)`,
`(namespace, name, {container_id: container_name})`, an object with .namespace and
.name (and optionally .container_ids), or None; typically the node's pod
list from the Kubernetes API (field selector spec.nodeName), kept in memory by its
owner and so cheap to call every tick. Without one the attributor falls back to
elimination (see agent/attribution.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional, Protocol, Union

from ..config import Config
from ..refresh import Refresher, SourceStatus
from . import podresources_pb2 as pb
from .cgroup import PidOwner, PidResolver
from .devices import DeviceId, is_gpu_resource, parse_device_id
from .podresources import PodResourcesClient, PodResourcesError
from .resourceslices import SliceLookup

log = logging.getLogger(__name__)

_MAX_LOGGED_IDS = 1000


@dataclass(frozen=True, slots=True)
class ClaimDevice:
    """One device of a DRA claim, as the kubelet reports it."""
    claim_namespace: str
    claim: str
    driver: str
    pool: str
    device: str
    cdi_devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Allocation:
    """One device the kubelet assigned to one container: a device-plugin id (`device`), or a
    DRA claim's device (`claim`; then `resource` is the driver and `device` names the
    triplet only)."""
    namespace: str
    pod: str
    container: str
    resource: str
    device: DeviceId
    claim: Optional[ClaimDevice] = None


@dataclass(frozen=True, slots=True)
class PodIdentity:
    namespace: str
    name: str
    containers: Mapping[str, str] = field(default_factory=dict)  # container id (64 hex, no runtime prefix) -> name


class PodLike(Protocol):
    """A pod as a directory may answer it (e.g. apiserver.PodInfo); it may also carry
    .container_ids ({container id: container name}, ids in either runtime form)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


# What a pod directory answers for a UID; as_identity() normalizes it.
PodDirectoryAnswer = Union[PodIdentity, PodLike, tuple[str, str], tuple[str, str, Mapping[str, str]], None]


class PodDirectory(Protocol):
    """uid -> the pod with that UID (see PodDirectoryAnswer), None when unknown."""

    def __call__(self, uid: str, /) -> PodDirectoryAnswer: ...


def _strip_runtime(container_id: str) -> str:
    """'containerd://abc' (API server form) -> 'abc' (cgroup form)."""
    return container_id.rpartition("://")[2]


def as_identity(found: object) -> Optional[PodIdentity]:
    """Normalize what a pod directory answers into a PodIdentity (None stays None).

    `found` is checked at run time: a directory is any callable, so an answer of another
    shape raises TypeError."""
    if found is None or isinstance(found, PodIdentity):
        return found
    containers: Mapping[str, str]
    if hasattr(found, "namespace") and hasattr(found, "name"):  # e.g. apiserver.PodInfo
        containers = getattr(found, "container_ids", None) or {}
        return PodIdentity(found.namespace, found.name,
                           MappingProxyType({_strip_runtime(k): v for k, v in dict(containers).items()}))
    if isinstance(found, tuple) and len(found) in (2, 3):
        containers = found[2] if len(found) == 3 else {}
        return PodIdentity(str(found[0]), str(found[1]),
                           MappingProxyType({_strip_runtime(k): v for k, v in dict(containers).items()}))
    raise TypeError(f"pod directory answered {type(found).__name__}; "
                    "expected (namespace, name[, containers]), a pod or None")


class IdentityCache:
    """A pod directory whose answers are normalized once per answer object: the node's pod
    list hands back the same PodInfo until the pod changes, so its PodIdentity (container IDs
    stripped of their runtime prefix) is built once, not every tick. Used on the tick thread
    only; at most MAX_ENTRIES UIDs are remembered."""

    MAX_ENTRIES = 4096

    def __init__(self, directory: PodDirectory) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[object, Optional[PodIdentity]]] = {}

    def __call__(self, uid: str, /) -> Optional[PodIdentity]:
        found = self.directory(uid)
        hit = self._cache.get(uid)
        if hit is not None and hit[0] is found:
            return hit[1]
        ident = as_identity(found)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        self._cache[uid] = (found, ident)
        return ident


# Called with (raw device id, where it was seen) for each device id of no known form.
OnMalformed = Callable[[str, str], None]


@dataclass(frozen=True)
class PodView:
    allocations: tuple[Allocation, ...] = ()
    allocatable: tuple[DeviceId, ...] = ()  # every attributable device on the node
    up: bool = False
    age_seconds: Optional[float] = None
    error: str = "kubelet not yet refreshed"
    resolver: Optional[PidResolver] = field(default=None, compare=False, repr=False)
    directory: Optional[PodDirectory] = field(default=None, compare=False, repr=False)
    slices: Optional[SliceLookup] = field(default=None, compare=False, repr=False)  # DRA devices

    def resolve_pid(self, pid: int) -> Optional[PidOwner]:
        return self.resolver.resolve(pid) if self.resolver is not None else None

    def retain_pids(self, pids: Iterable[int]) -> None:
        if self.resolver is not None:
            self.resolver.retain(pids)

    def pod_for_uid(self, uid: str) -> Optional[PodIdentity]:
        if self.directory is None:
            return None
        try:
            return as_identity(self.directory(uid))
        except Exception as exc:  # noqa: BLE001 - a broken directory must not break the tick
            log.debug("pod directory lookup %s failed: %s", uid, exc)
            return None


def _gpu_devices(device_lists: Iterable[pb.ContainerDevices], extra_resources: Container[str],
                 on_malformed: Optional[OnMalformed], where: str) -> Iterator[tuple[str, DeviceId]]:
    """(resource name, DeviceId) for each well-formed GPU device id in ContainerDevices lists."""
    for devices in device_lists:
        if not is_gpu_resource(devices.resource_name, extra_resources):
            continue
        for raw in devices.device_ids:
            dev = parse_device_id(raw)
            if dev is None:
                if on_malformed:
                    on_malformed(raw, f"{where} {devices.resource_name}")
                continue
            yield devices.resource_name, dev


def _claim_devices(dynamic: Iterable[pb.DynamicResource], namespace: str) -> Iterator[ClaimDevice]:
    """Every device of every DRA claim a container references (a claim's namespace is its
    pod's when the kubelet leaves it empty)."""
    for claim in dynamic:
        claim_ns = claim.claim_namespace or namespace
        for res in claim.claim_resources:
            if res.driver_name and res.device_name:
                yield ClaimDevice(claim_ns, claim.claim_name, res.driver_name, res.pool_name, res.device_name,
                                  tuple(c.name for c in res.cdi_devices))


def parse_allocations(response: pb.ListPodResourcesResponse, extra_resources: Container[str] = (),
                      on_malformed: Optional[OnMalformed] = None) -> tuple[Allocation, ...]:
    """ListPodResourcesResponse -> tuple[Allocation]: device-plugin GPU resources, then DRA
    claim devices."""
    out: list[Allocation] = []
    for pod in response.pod_resources:
        for container in pod.containers:
            out += (Allocation(pod.namespace, pod.name, container.name, resource, dev)
                    for resource, dev in _gpu_devices(container.devices, extra_resources, on_malformed,
                                                      f"{pod.namespace}/{pod.name}/{container.name}"))
            out += (Allocation(pod.namespace, pod.name, container.name, c.driver,
                               DeviceId(f"{c.driver}/{c.pool}/{c.device}"), c)
                    for c in _claim_devices(container.dynamic_resources, pod.namespace))
    return tuple(out)


def parse_allocatable(response: pb.AllocatableResourcesResponse, extra_resources: Container[str] = (),
                      on_malformed: Optional[OnMalformed] = None) -> tuple[DeviceId, ...]:
    """AllocatableResourcesResponse -> tuple[DeviceId] for GPU resources."""
    return tuple(dev for _, dev in _gpu_devices(response.devices, extra_resources, on_malformed, "allocatable"))


class PodSource:
    """The kubelet's allocations, refreshed by a Refresher (source "kubelet") every
    kubelet.refresh-interval; a failed refresh keeps the last good allocations."""

    def __init__(self, config: Config, pod_directory: Optional[PodDirectory] = None,
                 client: Optional[PodResourcesClient] = None, clock: Callable[[], float] = time.monotonic,
                 timeout_seconds: float = 2.0, slices: Optional[SliceLookup] = None) -> None:
        self.interval = float(config.kubelet_refresh_interval)
        self.extra_resources = tuple(config.kubelet_resource_names)
        self.client = client or PodResourcesClient(config.kubelet_pod_resources_socket, timeout_seconds)
        self.resolver = PidResolver(config.path_procfs, revalidate_seconds=self.interval, clock=clock)
        self.directory: Optional[PodDirectory] = IdentityCache(pod_directory) if pod_directory is not None else None
        self.slices = slices
        self._lock = threading.Lock()
        self._allocations: tuple[Allocation, ...] = ()
        self._allocatable: tuple[DeviceId, ...] = ()
        self._logged_ids: set[str] = set()
        self.refresher = Refresher("kubelet", self._refresh, self.interval, retry_base=min(0.5, self.interval),
                                   retry_ceiling=self.interval, clock=clock)

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop(timeout=self.client.timeout_seconds + 1.0)
        self.client.close()

    @property
    def refreshes(self) -> int:
        return self.refresher.refreshes

    # --- one refresh ---------------------------------------------------------------

    def _malformed(self, raw: str, where: str) -> None:
        if raw in self._logged_ids or len(self._logged_ids) >= _MAX_LOGGED_IDS:
            return
        self._logged_ids.add(raw)
        log.warning("kubelet device id %r (%s) is not a known form; skipped", raw, where)

    def refresh(self) -> bool:
        """List (and GetAllocatableResources) once; True on success. Safe to call directly."""
        return self.refresher.run_once()

    def _refresh(self) -> None:
        try:
            allocations = parse_allocations(self.client.list(), self.extra_resources, self._malformed)
        except PodResourcesError:
            self.client.reset()
            raise
        try:
            allocatable: Optional[tuple[DeviceId, ...]] = parse_allocatable(
                self.client.allocatable(), self.extra_resources, self._malformed)
        except PodResourcesError as exc:  # kubelets before 1.21 lack it: replicas come from List
            log.debug("%s", exc)
            allocatable = None
        with self._lock:
            self._allocations = allocations
            if allocatable is not None:
                self._allocatable = allocatable

    def status(self) -> SourceStatus:
        return self.refresher.status()

    def current(self) -> PodView:
        status = self.refresher.status()
        with self._lock:
            return PodView(self._allocations, self._allocatable, status.up, status.age_seconds,
                           status.error, self.resolver, self.directory, self.slices)
