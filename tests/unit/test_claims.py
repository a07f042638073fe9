"""Attribution of DRA allocations (gpulse.attribution with gpulse.claims) on hand-built
readings, kubelet views and ResourceSlices."""

import pytest
from gpulse.attribution import DEVICE_PLUGIN, NOT_IN_POD, Attributor
from gpulse.claims import AMBIGUOUS_DEVICE, DRA, SLICE_NOT_SEEN, UNKNOWN_DEVICE
from gpulse.kube.cgroup import PidOwner
from gpulse.kube.devices import DeviceId, parse_device_id
from gpulse.kube.resourceslices import SliceIndex, parse_slice
from gpulse.kube.source import Allocation, ClaimDevice, PodIdentity, PodView
from gpulse.nvml.reading import DeviceReading, MigReading, NvmlReading, ProcessInfo, ProcessUtilization
from gpulse.snapshot import PodClaim
from gpulse.windowing import DeviceWindows, unit_utilization

G0 = "GPU-00000000-0000-4000-8000-000000000000"
G1 = "GPU-11111111-1111-4111-8111-111111111111"
M0 = "MIG-22222222-2222-4222-8222-222222222222"
M1 = "MIG-33333333-3333-4333-8333-333333333333"
MIB = 1024 * 1024
DRIVER = "gpu.nvidia.com"
POOL = "node-1"


def uid(n):
    return f"{n:08x}-0000-4000-8000-000000000000"


class FakeResolver:
    def __init__(self, owners):
        self.owners = dict(owners)

    def resolve(self, pid):
        return self.owners.get(pid)

    def retain(self, pids):
        pass


def slice_obj(devices, driver=DRIVER, pool=POOL, name="node-1-gpu.nvidia.com-abcde", generation=1):
    return {"metadata": {"name": name}, "spec": {"driver": driver, "nodeName": "node-1",
                                                 "pool": {"name": pool, "generation": generation, "resourceSliceCount": 1},
                                                 "devices": devices}}


def gpu_dev(name, uuid, **attrs):
    return {"name": name, "attributes": {"type": {"string": "gpu"}, "uuid": {"string": uuid},
                                         **{k: {"string": v} for k, v in attrs.items()}}}


def mig_dev(name, parent, profile, uuid=None):
    attrs = {"type": {"string": "mig"}, "parentUUID": {"string": parent}, "profile": {"string": profile}}
    if uuid:
        attrs["uuid"] = {"string": uuid}
    return {"name": name, "attributes": attrs}


def index(*objs):
    idx = SliceIndex()
    idx.replace(parse_slice(o) for o in objs)
    return idx


def claim_alloc(ns, pod, container, claim, device, driver=DRIVER, pool=POOL, claim_ns=None):
    c = ClaimDevice(claim_ns or ns, claim, driver, pool, device)
    return Allocation(ns, pod, container, driver, DeviceId(f"{driver}/{pool}/{device}"), c)


def plugin_alloc(ns, pod, container, dev):
    return Allocation(ns, pod, container, "nvidia.com/gpu", parse_device_id(dev))


def view(allocs, owners=None, directory=None, slices=None, allocatable=()):
    return PodView(tuple(allocs), tuple(parse_device_id(d) for d in allocatable), True, 0.0, "",
                   FakeResolver(owners or {}), directory, slices)


def update(att, reading, v, now):
    windows = att.__dict__.setdefault("_test_windows", DeviceWindows(att.window_seconds))
    gpus, migs = windows.apply(reading, now, None)
    return att.update(reading, v, now, unit_utilization(gpus, migs))


def device(index_, uuid, gpu_util, procs=None, mem=None, pci=""):
    procs, mem = procs or {}, mem or {}
    return DeviceReading(index_, uuid, "H100", pci_bus_id=pci,
                         values={} if gpu_util is None else {"gpulse_gpu_utilization_ratio": gpu_util},
                         processes=tuple(ProcessInfo(pid, mem.get(pid, 100 * MIB)) for pid in procs),
                         process_utilization=tuple(ProcessUtilization(pid, 1, u, 0.0) for pid, u in procs.items()))


OWNERS = {101: PidOwner(uid(1), "a" * 64), 102: PidOwner(uid(2), "b" * 64), 103: PidOwner(uid(3), "c" * 64),
          104: PidOwner(uid(4), "d" * 64)}
DIRECTORY = {uid(1): ("ml", "a"), uid(2): ("ml", "b"), uid(3): ("ml", "c"), uid(4): ("ml", "d")}.get


def test_exclusive_dra_gpu_gets_the_whole_gpu_and_a_claim():
    att = Attributor(10)
    idx = index(slice_obj([gpu_dev("gpu-0", G0), gpu_dev("gpu-1", G1)]))
    reading = NvmlReading(0.0, devices=(device(0, G0, 0.7, {101: 70}), device(1, G1, 0.2)))
    shares, un = update(att, reading, view([claim_alloc("ml", "a", "main", "a-gpu-x7k2p", "gpu-0")], OWNERS,
                                           DIRECTORY, idx), 0.0)
    (s,) = shares
    assert (s.pod, s.gpu, s.sharing, s.allocated, s.utilization, s.allocation) == ("a", 0, "exclusive", 1.0, 0.7, DRA)
    assert s.memory_used_bytes == 100 * MIB and un == {}
    assert att.claims == (PodClaim("ml", "a", "main", "ml", "a-gpu-x7k2p", DRIVER, POOL, "gpu-0", G0),)
    assert att.unresolved_allocations == {}


def test_one_claim_shared_by_four_pods_is_split_and_conserved():
    att = Attributor(10)
    idx = index(slice_obj([gpu_dev("gpu-0", G0)]))
    allocs = [claim_alloc("ml", p, "main", "shared", "gpu-0") for p in "abcd"]
    owners = {**OWNERS, 105: None}  # a host process too
    v = view(allocs, owners, DIRECTORY, idx)
    for t in range(5):
        shares, un = update(att, NvmlReading(float(t), devices=(device(0, G0, 0.7, {101: 10, 102: 15, 103: 20,
                                                                                    104: 5, 105: 10}),)), v, float(t))
    got = {s.pod: s for s in shares}
    assert {p: got[p].utilization for p in "abcd"} == {"a": pytest.approx(0.10), "b": pytest.approx(0.15),
                                                     "c": pytest.approx(0.20), "d": pytest.approx(0.05)}
    assert {s.allocated for s in shares} == {0.25} and {s.sharing for s in shares} == {"time-slicing"}
    assert {s.allocation for s in shares} == {DRA}
    assert sum(s.utilization for s in shares) + un[0] == pytest.approx(0.7)
    assert att.unresolved == {(0, NOT_IN_POD): 1}
    assert len(att.claims) == 4 and {c.claim for c in att.claims} == {"shared"}


def test_several_claims_on_one_device_share_it():
    """Consumable capacity or admin access: two claims, one device, split like time-slicing."""
    att = Attributor(10)
    idx = index(slice_obj([gpu_dev("gpu-0", G0)]))
    allocs = [claim_alloc("ml", "a", "main", "claim-a", "gpu-0"), claim_alloc("ml", "b", "main", "claim-b", "gpu-0")]
    shares, un = update(att, NvmlReading(0.0, devices=(device(0, G0, 0.5, {101: 20, 102: 30}),)),
                        view(allocs, OWNERS, DIRECTORY, idx), 0.0)
    assert {s.pod: (s.allocated, s.utilization) for s in shares} == {
        "a": (0.5, pytest.approx(0.2)), "b": (0.5, pytest.approx(0.3))}
    assert un[0] == pytest.approx(0.0)


def test_two_containers_on_one_claim_split_by_container_id():
    att = Attributor(10)
    idx = index(slice_obj([gpu_dev("gpu-0", G0)]))
    allocs = [claim_alloc("ml", "a", c, "a-gpu", "gpu-0") for c in ("embedder", "reranker")]
    owners = {201: PidOwner(uid(1), "1" * 64), 202: PidOwner(uid(1), "2" * 64)}
    directory = {uid(1): PodIdentity("ml", "a", {"1" * 64: "embedder", "2" * 64: "reranker"})}.get
    shares, _ = update(att, NvmlReading(0.0, devices=(device(0, G0, 0.5, {201: 30, 202: 12}),)),
                       view(allocs, owners, directory, idx), 0.0)
    assert {s.container: (s.allocated, s.utilization) for s in shares} == {
        "embedder": (0.5, pytest.approx(0.3)), "reranker": (0.5, pytest.approx(0.12))}


def test_static_mig_by_uuid_and_dynamic_mig_by_parent_and_profile():
    att = Attributor(10)
    idx = index(slice_obj([mig_dev("gpu-0-mig-1g10gb-19-0", G0, "1g.10gb", M0),
                           mig_dev("gpu-0-mig-3g40gb-9-4", G0, "3g.40gb")]))  # dynamic MIG: no uuid yet
    g0 = DeviceReading(0, G0, "H100", mig_enabled=True)
    migs = (MigReading(0, G0, 9, 0, "1g.10gb", M0, values={"gpulse_mig_utilization_ratio": 0.3}),
            MigReading(0, G0, 2, 0, "3g.40gb", M1, values={"gpulse_mig_utilization_ratio": 0.6}))
    allocs = [claim_alloc("ml", "a", "main", "a-mig", "gpu-0-mig-1g10gb-19-0"),
              claim_alloc("ml", "b", "main", "b-mig", "gpu-0-mig-3g40gb-9-4")]
    shares, _ = update(att, NvmlReading(0.0, devices=(g0,), migs=migs), view(allocs, slices=idx), 0.0)
    got = {s.pod: (s.sharing, s.mig_profile, s.mig_uuid, s.gpu_instance, s.utilization, s.allocation) for s in shares}
    assert got == {"a": ("mig", "1g.10gb", M0, "9", 0.3, DRA), "b": ("mig", "3g.40gb", M1, "2", 0.6, DRA)}
    assert {c.pod: c.uuid for c in att.claims} == {"a": G0, "b": G0}


def test_dynamic_mig_with_two_candidates_is_ambiguous():
    att = Attributor(10)
    idx = index(slice_obj([mig_dev("gpu-0-mig-1g10gb-19-0", G0, "1g.10gb"),
                           mig_dev("gpu-0-mig-1g10gb-19-1", G0, "1g.10gb")]))
    g0 = DeviceReading(0, G0, "H100", mig_enabled=True)
    migs = (MigReading(0, G0, 9, 0, "1g.10gb", M0), MigReading(0, G0, 10, 0, "1g.10gb", M1))
    allocs = [claim_alloc("ml", "a", "main", "a-mig", "gpu-0-mig-1g10gb-19-0"),
              claim_alloc("ml", "b", "main", "b-mig", "gpu-0-mig-1g10gb-19-1")]
    shares, _ = update(att, NvmlReading(0.0, devices=(g0,), migs=migs), view(allocs, slices=idx), 0.0)
    assert shares == () and att.claims == ()
    assert att.unresolved_allocations == {(DRA, DRIVER, AMBIGUOUS_DEVICE): 2}
    # One of the two instances named outright by another device leaves one candidate.
    idx = index(slice_obj([mig_dev("gpu-0-mig-1g10gb-19-0", G0, "1g.10gb", M0),
                           mig_dev("gpu-0-mig-1g10gb-19-1", G0, "1g.10gb")]))
    shares, _ = update(att, NvmlReading(1.0, devices=(g0,), migs=migs), view(allocs, slices=idx), 1.0)
    assert {s.pod: s.mig_uuid for s in shares} == {"a": M0, "b": M1}


def test_any_driver_by_qualified_uuid_bare_uuid_or_pci_bus_id():
    att = Attributor(10)
    vendor = "gpu.example.com"
    devs = [{"name": "dev-a", "attributes": {f"{vendor}/uuid": {"string": G0}}},
            {"name": "dev-b", "attributes": {"uuid": {"string": G1.removeprefix("GPU-")}}},
            {"name": "dev-c", "attributes": {"resource.kubernetes.io/pciBusID": {"string": "0000:3a:00.0"}}}]
    g2 = "GPU-44444444-4444-4444-8444-444444444444"
    idx = index(slice_obj(devs, driver=vendor, name="s1"))
    reading = NvmlReading(0.0, devices=(device(0, G0, 0.1), device(1, G1, 0.2),
                                        device(2, g2, 0.3, pci="00000000:3A:00.0")))
    allocs = [claim_alloc("ml", p, "main", f"{p}-claim", d, driver=vendor)
              for p, d in (("a", "dev-a"), ("b", "dev-b"), ("c", "dev-c"))]
    shares, _ = update(att, reading, view(allocs, slices=idx), 0.0)
    assert {s.pod: (s.uuid, s.utilization) for s in shares} == {"a": (G0, 0.1), "b": (G1, 0.2), "c": (g2, 0.3)}


def test_unresolvable_allocations_are_counted_with_a_reason():
    att = Attributor(10)
    gone = "GPU-99999999-9999-4999-8999-999999999999"
    idx = index(slice_obj([gpu_dev("gpu-0", G0), gpu_dev("gpu-7", gone),
                           {"name": "nic-0", "attributes": {"resource.kubernetes.io/pciBusID": {"string": "0000:9a:00.0"},
                                                            "type": {"string": "vf"}}}]),
                slice_obj([], driver="sriov.example.com", name="s2"))
    allocs = [claim_alloc("ml", "a", "main", "a", "gpu-0"),
              claim_alloc("ml", "b", "main", "b", "gpu-7"),  # a GPU NVML does not show
              claim_alloc("ml", "c", "main", "c", "gpu-9"),  # not in any slice of the driver (yet)
              claim_alloc("ml", "d", "main", "d", "nic-0"),  # a device with no GPU identity: not ours
              claim_alloc("ml", "e", "main", "e", "vf-3", driver="sriov.example.com"),  # published, not a GPU
              claim_alloc("ml", "f", "main", "f", "x", driver="net.example.com"),  # no slices on this node
              plugin_alloc("ml", "g", "main", gone)]
    shares, _ = update(att, NvmlReading(0.0, devices=(device(0, G0, 0.4),)), view(allocs, slices=idx), 0.0)
    assert [s.pod for s in shares] == ["a"]
    assert att.unresolved_allocations == {(DRA, DRIVER, UNKNOWN_DEVICE): 1, (DRA, DRIVER, SLICE_NOT_SEEN): 1,
                                          (DRA, "sriov.example.com", SLICE_NOT_SEEN): 1,
                                          (DEVICE_PLUGIN, "", UNKNOWN_DEVICE): 1}


def test_before_slices_are_seen_every_dra_allocation_waits():
    att = Attributor(10)
    allocs = [claim_alloc("ml", "a", "main", "a", "gpu-0"), claim_alloc("ml", "b", "main", "b", "x", driver="other")]
    reading = NvmlReading(0.0, devices=(device(0, G0, 0.4),))
    update(att, reading, view(allocs, slices=None), 0.0)  # no API server at all
    assert att.unresolved_allocations == {(DRA, DRIVER, SLICE_NOT_SEEN): 1, (DRA, "other", SLICE_NOT_SEEN): 1}
    update(att, reading, view(allocs, slices=SliceIndex()), 1.0)  # not listed yet
    assert att.unresolved_allocations == {(DRA, DRIVER, SLICE_NOT_SEEN): 1, (DRA, "other", SLICE_NOT_SEEN): 1}
    shares, _ = update(att, reading, view(allocs, slices=index(slice_obj([gpu_dev("gpu-0", G0)]))), 2.0)
    assert [s.pod for s in shares] == ["a"] and att.unresolved_allocations == {}


def test_device_plugin_and_dra_on_one_node():
    att = Attributor(10)
    idx = index(slice_obj([gpu_dev("gpu-0", G0)]))
    slots = [f"{G1}::{r}" for r in range(2)]
    allocs = [claim_alloc("ml", "a", "main", "a", "gpu-0"), plugin_alloc("ml", "b", "main", slots[0]),
              plugin_alloc("ml", "c", "main", slots[1])]
    reading = NvmlReading(0.0, devices=(device(0, G0, 0.6, {101: 60}), device(1, G1, 0.5, {102: 20, 103: 25})))
    shares, un = update(att, reading, view(allocs, OWNERS, DIRECTORY, idx, allocatable=slots), 0.0)
    got = {s.pod: (s.gpu, s.sharing, s.allocated, s.allocation) for s in shares}
    assert got == {"a": (0, "exclusive", 1.0, DRA), "b": (1, "time-slicing", 0.5, DEVICE_PLUGIN),
                   "c": (1, "time-slicing", 0.5, DEVICE_PLUGIN)}
    assert set(un) == {1} and [c.pod for c in att.claims] == ["a"]


def test_newest_pool_generation_wins():
    att = Attributor(10)
    old = slice_obj([gpu_dev("gpu-0", G1)], name="old", generation=1)
    new = slice_obj([gpu_dev("gpu-0", G0)], name="new", generation=2)
    reading = NvmlReading(0.0, devices=(device(0, G0, 0.1), device(1, G1, 0.9)))
    shares, _ = update(att, reading, view([claim_alloc("ml", "a", "main", "a", "gpu-0")], slices=index(old, new)), 0.0)
    assert [s.uuid for s in shares] == [G0]
