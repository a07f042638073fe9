"""The PodResources client and PodSource against the fake kubelet (a real gRPC server)."""

import dataclasses
import logging
import os
import shutil
import tempfile

import pytest
from gpulse import config as cfgmod
from gpulse.kube import podresources_pb2 as pb
from gpulse.kube.podresources import PodResourcesClient, PodResourcesError
from gpulse.kube.source import ClaimDevice, IdentityCache, PodIdentity, PodSource, as_identity, parse_allocations
from gpulse.sim import scenario as scen
from gpulse.sim.kubelet import start_fake_kubelet

from tests.conftest import wait_for

U = "a1b2c3d4-e5f6-4789-8abc-def012345678"


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="gk", dir="/tmp")  # Unix socket paths must stay short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _config(sock, **kw):
    base = cfgmod.load(None, environ={})
    return dataclasses.replace(base, kubelet_pod_resources_socket=sock, kubelet_refresh_interval=0.2,
                               path_procfs="/nonexistent", **kw)


def test_happy_path_reference(sockdir):
    sc = scen.load("reference")
    sock = os.path.join(sockdir, "kubelet.sock")
    kubelet = start_fake_kubelet(sc, sock)
    try:
        src = PodSource(_config(sock))
        assert not src.current().up
        assert src.refresh()
        view = src.current()
        assert view.up and view.error == "" and view.age_seconds is not None
        pods = {(a.namespace, a.pod) for a in view.allocations}
        assert len(pods) == 64
        migs = [a for a in view.allocations if a.device.mig_uuid]
        shared = [a for a in view.allocations if a.device.replica is not None]
        assert len(migs) == 28 and len(shared) == 36
        assert {a.resource for a in migs} == {"nvidia.com/mig-1g.10gb"}
        # allocatable lists every MIG instance and every replica of the shared GPUs
        assert len(view.allocatable) == 28 + 4 * 9
    finally:
        kubelet.stop()
        src.stop()


def test_dra_node_serves_claims_beside_device_ids(sockdir):
    sc = scen.load("dra")
    sock = os.path.join(sockdir, "kubelet.sock")
    kubelet = start_fake_kubelet(sc, sock)
    try:
        src = PodSource(_config(sock))
        assert src.refresh()
        view = src.current()
        dra = [a for a in view.allocations if a.claim is not None]
        plugin = [a for a in view.allocations if a.claim is None]
        assert {a.pod for a in plugin} == {"etl-nightly-0", "notebook-a", "notebook-b"}
        assert len(dra) == 2 + 4 + 4 + 1 + 2 and not any(a.device.gpu_uuid or a.device.mig_uuid for a in dra)
        node = sc.node.name
        assert {(a.claim.driver, a.claim.pool) for a in dra} == {("gpu.nvidia.com", node)}
        shared = [a for a in dra if a.claim.claim == "shared-h100"]
        assert {(a.pod, a.claim.claim_namespace, a.claim.device) for a in shared} == {
            (f"vllm-small-{r}", "inference", "gpu-2") for r in range(4)}
        assert all(len(a.claim.cdi_devices) == 1 and a.claim.cdi_devices[0].startswith("k8s.gpu.nvidia.com/claim=")
                   and a.claim.cdi_devices[0].endswith("-gpu-2") for a in shared)
        (ext,) = [a for a in dra if a.pod == "legacy-render-0"]
        assert ext.claim.claim.startswith("legacy-render-0-extended-resources-") and ext.claim.device == "gpu-4"
        assert {a.container for a in dra if a.pod == "rag-pipeline-0"} == {"embedder", "reranker"}
        assert {a.claim.device for a in dra if a.pod in ("jupyter-ana", "eval-job")} == {
            "gpu-3-mig-3g40gb-9-0", "gpu-3-mig-1g10gb-19-6"}
        # GetAllocatableResources is the device plugin's: its two GPUs (one with two replicas)
        assert sorted(d.raw for d in view.allocatable) == sorted(
            [sc.gpus[6].uuid, f"{sc.gpus[7].uuid}::0", f"{sc.gpus[7].uuid}::1"])
    finally:
        kubelet.stop()
        src.stop()


def test_dynamic_resources_parse_with_defaults():
    resp = pb.ListPodResourcesResponse()
    c = resp.pod_resources.add(name="p", namespace="ns").containers.add(name="main")
    c.devices.add(resource_name="nvidia.com/gpu", device_ids=["GPU-" + U])
    claim = c.dynamic_resources.add(claim_name="cl")  # the claim's namespace left empty: the pod's
    claim.claim_resources.add(driver_name="gpu.nvidia.com", pool_name="n1", device_name="gpu-0")
    claim.claim_resources.add(driver_name="", pool_name="n1", device_name="x")  # not a device: skipped
    allocs = parse_allocations(resp)
    assert [(a.resource, a.claim) for a in allocs] == [
        ("nvidia.com/gpu", None),
        ("gpu.nvidia.com", ClaimDevice("ns", "cl", "gpu.nvidia.com", "n1", "gpu-0"))]
    assert allocs[1].device.raw == "gpu.nvidia.com/n1/gpu-0"


def test_socket_missing_at_start_then_appears(sockdir):
    sc = scen.load("g5-timeslice")
    sock = os.path.join(sockdir, "kubelet.sock")
    src = PodSource(_config(sock))
    src.start()
    kubelet = None
    try:
        assert wait_for(lambda: src.refreshes >= 2)
        view = src.current()
        assert not view.up and "UNAVAILABLE" in view.error and view.allocations == ()
        kubelet = start_fake_kubelet(sc, sock)
        assert wait_for(lambda: src.current().up)
        assert len(src.current().allocations) == 16
    finally:
        src.stop()
        if kubelet:
            kubelet.stop()


def test_server_restart_keeps_last_good_mapping(sockdir):
    sc = scen.load("g5-timeslice")
    sock = os.path.join(sockdir, "kubelet.sock")
    kubelet = start_fake_kubelet(sc, sock)
    src = PodSource(_config(sock))
    try:
        assert src.refresh()
        good = src.current().allocations
        kubelet.stop()
        assert not src.refresh()
        view = src.current()
        assert not view.up and view.error.startswith("kubelet List on ")
        assert view.allocations == good  # the last good mapping is kept
        kubelet.set_pods(sc.pods[:3])
        kubelet.start()
        assert wait_for(src.refresh)
        view = src.current()
        assert view.up and {a.pod for a in view.allocations} == {p.name for p in sc.pods[:3]}
    finally:
        kubelet.stop()
        src.stop()


def test_deadline_exceeded(sockdir):
    sc = scen.load("t4-legacy")
    sock = os.path.join(sockdir, "kubelet.sock")
    kubelet = start_fake_kubelet(sc, sock)
    client = PodResourcesClient(sock, timeout_seconds=0.2)
    src = PodSource(_config(sock), client=client)
    try:
        assert src.refresh()
        kubelet.set_delay(1.0)
        assert not src.refresh()
        view = src.current()
        assert "DEADLINE_EXCEEDED" in view.error and not view.up
        assert len(view.allocations) == 2
        kubelet.set_delay(0)
        assert wait_for(src.refresh)
    finally:
        kubelet.stop()
        src.stop()


def test_malformed_ids_skipped_and_logged_once(sockdir, caplog):
    sc = scen.load("t4-legacy")
    sock = os.path.join(sockdir, "kubelet.sock")
    kubelet = start_fake_kubelet(sc, sock)
    kubelet.set_extra([
        ("bad", "pod-a", "c", "nvidia.com/gpu", ["GPU-not-a-uuid", f"GPU-{U}::1"]),
        ("bad", "pod-b", "c", "nvidia.com/gpu", ["0000:3b:00.0"]),
        ("other", "pod-c", "c", "example.com/fpga", ["fpga0"]),  # not a GPU resource: ignored silently
        ("extra", "pod-d", "c", "nvidia.com/a100", [f"GPU-{U}"]),
    ])
    src = PodSource(_config(sock, kubelet_resource_names=("nvidia.com/a100",)))
    try:
        with caplog.at_level(logging.WARNING, logger="gpulse.kube"):
            assert src.refresh() and src.refresh()
        lines = [r.getMessage() for r in caplog.records if "not a known form" in r.getMessage()]
        assert len(lines) == 2  # one per malformed id, not one per refresh
        assert any("GPU-not-a-uuid" in x and "bad/pod-a/c" in x for x in lines)
        pods = {a.pod: a for a in src.current().allocations}
        assert "pod-b" not in pods and "pod-c" not in pods
        assert pods["pod-a"].device.replica == 1
        assert pods["pod-d"].resource == "nvidia.com/a100"
    finally:
        kubelet.stop()
        src.stop()


def test_client_error_is_one_line(sockdir):
    client = PodResourcesClient(os.path.join(sockdir, "missing.sock"), timeout_seconds=0.5)
    with pytest.raises(PodResourcesError) as err:
        client.list()
    assert "\n" not in str(err.value) and "missing.sock" in str(err.value)
    client.close()


def test_identity_cache_normalizes_each_answer_once():
    class Pod:  # what the pod watch hands back: the same object until the pod changes
        def __init__(self, cid):
            self.namespace, self.name, self.container_ids = "ns", "p", {f"containerd://{cid}": "main"}

    pods, calls = {"u1": Pod("a" * 64)}, []
    cache = IdentityCache(lambda uid: calls.append(uid) or pods.get(uid))
    first = cache("u1")
    assert first == PodIdentity("ns", "p", {"a" * 64: "main"}) and cache("u1") is first
    pods["u1"] = Pod("b" * 64)  # the pod changed: a new object, a new identity
    assert dict(cache("u1").containers) == {"b" * 64: "main"}
    assert cache("gone") is None and calls == ["u1", "u1", "u1", "gone"]


def test_directory_answers_are_normalized():
    assert as_identity(None) is None
    ident = as_identity(("ns", "p", {"containerd://" + "ab" * 32: "main"}))
    assert ident == PodIdentity("ns", "p", ident.containers)
    assert ident.containers == {"ab" * 32: "main"}
    with pytest.raises(TypeError):
        as_identity("ns/p")


