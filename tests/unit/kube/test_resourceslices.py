"""ResourceSlice parsing, the node's slice index, and the list+watch against the fake API server."""

import http.server
import json
import threading

import pytest
from gpulse.kube.apiserver import KubeClient, KubeConfig, KubeError
from gpulse.kube.resourceslices import ResourceSliceWatcher, SliceDevice, SliceIndex, parse_slice
from gpulse.sim.apiserver import FakeApiServer

from tests.conftest import wait_for

NODE = "node-a"
G0 = "GPU-00000000-0000-4000-8000-000000000000"
M0 = "MIG-22222222-2222-4222-8222-222222222222"


def slice_obj(name, devices, node=NODE, driver="gpu.nvidia.com", pool=NODE, generation=1):
    return {"kind": "ResourceSlice", "apiVersion": "resource.k8s.io/v1", "metadata": {"name": name},
            "spec": {"driver": driver, "nodeName": node, "pool": {"name": pool, "generation": generation,
                                                                  "resourceSliceCount": 1}, "devices": devices}}


# What NVIDIA's DRA driver publishes for a GPU and a static MIG device (resource.k8s.io/v1 JSON).
NVIDIA_GPU = {"name": "gpu-0", "attributes": {
    "type": {"string": "gpu"}, "uuid": {"string": G0}, "productName": {"string": "NVIDIA H100 80GB HBM3"},
    "architecture": {"string": "Hopper"}, "cudaComputeCapability": {"version": "9.0.0"},
    "driverVersion": {"version": "570.133.20"}, "pcieBusID": {"string": "0000:18:00.0"},
    "resource.kubernetes.io/pciBusID": {"string": "0000:18:00.0"}},
    "capacity": {"memory": {"value": "81559Mi"}}}
NVIDIA_MIG = {"name": "gpu-1-mig-1g10gb-19-0", "attributes": {
    "type": {"string": "mig"}, "uuid": {"string": M0}, "parentUUID": {"string": G0}, "profile": {"string": "1g.10gb"}}}


def test_parse_nvidia_devices():
    s = parse_slice(slice_obj("s", [NVIDIA_GPU, NVIDIA_MIG]))
    assert (s.name, s.driver, s.pool, s.generation) == ("s", "gpu.nvidia.com", NODE, 1)
    assert s.devices == (SliceDevice("gpu.nvidia.com", NODE, "gpu-0", G0, "", "", "0000:18:00.0", "gpu"),
                         SliceDevice("gpu.nvidia.com", NODE, "gpu-1-mig-1g10gb-19-0", M0, G0, "1g.10gb", "", "mig"))


def test_parse_qualified_names_v1beta1_and_junk():
    devices = [{"name": "a", "attributes": {"gpu.example.com/uuid": {"string": "U"}, "other.io/profile": {"string": "P"}}},
               {"name": "b", "basic": {"attributes": {"uuid": {"string": "V"}}}},  # v1beta1 shape
               {"name": "c", "attributes": {"uuid": {"int": 3}}},  # wrong type: ignored
               {"attributes": {}}, "junk", {"name": 5}]
    s = parse_slice(slice_obj("s", devices, driver="gpu.example.com"))
    assert [(d.name, d.uuid, d.profile) for d in s.devices] == [("a", "U", "P"), ("b", "V", ""), ("c", "", "")]
    assert parse_slice({"metadata": {"name": "x"}, "spec": {"driver": "d"}}) is None  # no pool
    older = dict(NVIDIA_GPU, attributes={"uuid": {"string": G0}, "pcieBusID": {"string": "0000:18:00.0"}})
    assert parse_slice(slice_obj("s", [older])).devices[0].pci_bus_id == "0000:18:00.0"  # NVIDIA's own name
    assert parse_slice({"metadata": "x"}) is None
    assert parse_slice({}) is None


def test_index_keeps_the_newest_generation_and_a_device_ceiling():
    idx = SliceIndex(max_devices=3)
    assert not idx.synced and idx.device("gpu.nvidia.com", NODE, "gpu-0") is None
    idx.replace([parse_slice(slice_obj("old", [dict(NVIDIA_GPU, name="gpu-9")], generation=1)),
                 parse_slice(slice_obj("new", [NVIDIA_GPU], generation=2))])
    assert idx.synced and idx.has_driver("gpu.nvidia.com") and not idx.has_driver("x")
    assert idx.device("gpu.nvidia.com", NODE, "gpu-9") is None and idx.device("gpu.nvidia.com", NODE, "gpu-0").uuid == G0
    idx.apply("DELETED", parse_slice(slice_obj("new", [])))
    assert idx.device("gpu.nvidia.com", NODE, "gpu-9") is not None  # generation 1 is the newest left
    idx.apply("ADDED", parse_slice(slice_obj("many", [dict(NVIDIA_GPU, name=f"g{i}") for i in range(5)], pool="p2")))
    assert len(idx.devices()) == 3  # the ceiling holds


@pytest.fixture
def api():
    node = {"kind": "Node", "metadata": {"name": NODE, "labels": {}}}
    server = FakeApiServer(node, [], slices=[slice_obj("a-gpu", [NVIDIA_GPU]),
                                             slice_obj("b-gpu", [NVIDIA_GPU], node="node-b", pool="node-b")])
    yield server
    server.stop()


def test_watcher_lists_this_nodes_slices_and_follows_changes(api):
    watcher = ResourceSliceWatcher(KubeClient(KubeConfig(api.url)), NODE)
    watcher.start()
    try:
        assert watcher.wait_synced(10)
        idx = watcher.index
        assert [d.pool for d in idx.devices()] == [NODE]  # node-b's slice is not listed
        assert any("fieldSelector=spec.nodeName%3Dnode-a" in r and "resourceslices" in r for r in api.requests)
        api.add_slice(slice_obj("a-mig", [NVIDIA_MIG]))
        assert wait_for(lambda: idx.device("gpu.nvidia.com", NODE, NVIDIA_MIG["name"]) is not None)
        api.update_slice("a-mig", lambda o: o["spec"]["devices"][0]["attributes"]["profile"].update(string="2g.20gb"))
        assert wait_for(lambda: idx.device("gpu.nvidia.com", NODE, NVIDIA_MIG["name"]).profile == "2g.20gb")
        api.delete_slice("a-gpu")
        assert wait_for(lambda: idx.device("gpu.nvidia.com", NODE, "gpu-0") is None)
        api.expire()  # compaction: the watcher lists again
        assert wait_for(lambda: watcher.relists == 2)
        assert watcher.status().up
    finally:
        watcher.stop()


class _Answer(http.server.BaseHTTPRequestHandler):
    code = 404

    def do_GET(self):
        body = json.dumps({"kind": "Status", "code": self.code, "message": f"answer {self.code}"}).encode()
        self.send_response(self.code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("code, up", [(404, True), (403, False)])
def test_not_served_is_up_and_empty_forbidden_is_down(code, up):
    handler = type("H", (_Answer,), {"code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    watcher = ResourceSliceWatcher(KubeClient(KubeConfig(f"http://127.0.0.1:{server.server_address[1]}")), NODE)
    watcher.start()
    try:
        assert wait_for(lambda: watcher.status().error != "not yet refreshed")
        status = watcher.status()
        assert status.up is up
        if up:  # resource.k8s.io/v1 not served (before 1.34): nothing to resolve, nothing wrong
            assert watcher.index.synced and not watcher.served and watcher.index.devices() == ()
        else:
            assert "HTTP 403" in status.error and "resourceslices" in status.error
    finally:
        watcher.stop()
        server.shutdown()
        server.server_close()


def test_empty_node_name_is_refused():
    with pytest.raises(KubeError, match="node.name is empty"):
        ResourceSliceWatcher(KubeClient(KubeConfig("http://127.0.0.1:9")), "")
