"""Attribution on hand-built NVML readings and pod views."""

import pytest
from gpulse.attribution import AMBIGUOUS_CONTAINER, NO_SLOT, NOT_IN_POD, UNKNOWN_POD, Attributor
from gpulse.kube.cgroup import PidOwner
from gpulse.kube.devices import parse_device_id
from gpulse.kube.source import Allocation, PodIdentity, PodView
from gpulse.nvml.reading import DeviceFacts, DeviceReading, MigReading, NvmlReading, ProcessInfo, ProcessUtilization
from gpulse.windowing import DeviceWindows, unit_utilization

G0 = "GPU-00000000-0000-4000-8000-000000000000"
G1 = "GPU-11111111-1111-4111-8111-111111111111"
M0 = "MIG-22222222-2222-4222-8222-222222222222"
MIB = 1024 * 1024


def util(value, family="gpulse_gpu_utilization_ratio"):
    """A reading's values with this tick's utilization (none when value is None)."""
    return {} if value is None else {family: value}


def update(att, reading, view, now, mig_activity=None):
    """What the sampler does each tick: window the devices once, then attribute."""
    windows = att.__dict__.setdefault("_test_windows", DeviceWindows(att.window_seconds))
    gpus, migs = windows.apply(reading, now, mig_activity)
    return att.update(reading, view, now, unit_utilization(gpus, migs))


def uid(n):
    return f"{n:08x}-0000-4000-8000-000000000000"


class FakeResolver:
    def __init__(self, owners):
        self.owners = dict(owners)
        self.retained = None

    def resolve(self, pid):
        return self.owners.get(pid)

    def retain(self, pids):
        self.retained = set(pids)


def view(allocs, owners, directory=None, allocatable=()):
    allocations = tuple(Allocation(ns, pod, c, "nvidia.com/gpu", parse_device_id(dev)) for ns, pod, c, dev in allocs)
    return PodView(allocations, tuple(parse_device_id(d) for d in allocatable), True, 0.0, "",
                   FakeResolver(owners), directory)


def shared_reading(gpu_util, procs, mem=None, t_us=1):
    """procs: {pid: sm percent}."""
    mem = mem or {}
    dev = DeviceReading(0, G0, "H100", values=util(gpu_util),
                        processes=tuple(ProcessInfo(pid, mem.get(pid, 100 * MIB)) for pid in procs),
                        process_utilization=tuple(ProcessUtilization(pid, t_us, u, 0.0) for pid, u in procs.items()))
    return NvmlReading(0.0, devices=(dev,))


SLOTS = [f"{G0}::{r}" for r in range(4)]
DIRECTORY = {uid(1): ("ml", "a"), uid(2): ("ml", "b"), uid(3): ("ml", "c")}
OWNERS = {101: PidOwner(uid(1), "a" * 64), 102: PidOwner(uid(2), "b" * 64), 103: PidOwner(uid(3), "c" * 64)}
ALLOCS = [("ml", "a", "main", SLOTS[0]), ("ml", "b", "main", SLOTS[1]), ("ml", "c", "main", SLOTS[2])]


def by_pod(shares):
    return {s.pod: s for s in shares}


def test_time_sliced_split_by_process_and_conserved():
    att = Attributor(10)
    v = view(ALLOCS, OWNERS, DIRECTORY.get, allocatable=SLOTS)
    for t in range(5):
        shares, un = update(att, shared_reading(0.6, {101: 10, 102: 20, 103: 25}, {101: 3 * MIB}), v, float(t))
    s = by_pod(shares)
    assert s["a"].utilization == pytest.approx(0.10)
    assert s["b"].utilization == pytest.approx(0.20)
    assert s["c"].utilization == pytest.approx(0.25)
    assert un[0] == pytest.approx(0.05)
    assert sum(x.utilization for x in shares) + un[0] == pytest.approx(0.6)
    assert {x.allocated for x in shares} == {0.25}
    assert {x.sharing for x in shares} == {"time-slicing"}
    assert s["a"].memory_used_bytes == 3 * MIB and s["b"].memory_used_bytes == 100 * MIB
    assert v.resolver.retained == {101, 102, 103}


def test_shares_scaled_when_processes_exceed_gpu_mps():
    att = Attributor(10)
    v = view(ALLOCS[:2], OWNERS, DIRECTORY.get, allocatable=SLOTS)
    reading = shared_reading(0.5, {101: 40, 102: 60})
    dev = reading.devices[0]
    mps = NvmlReading(0.0, devices=(DeviceReading(0, G0, "H100", values=util(0.5), facts=DeviceFacts(compute_mode=3),
                                                  processes=dev.processes, process_utilization=dev.process_utilization),))
    shares, un = update(att, mps, v, 0.0)
    s = by_pod(shares)
    assert s["a"].utilization == pytest.approx(0.2) and s["b"].utilization == pytest.approx(0.3)
    assert un[0] == pytest.approx(0.0)
    assert {x.sharing for x in shares} == {"mps"}


def test_conservation_over_window_with_changing_loads():
    att = Attributor(5)
    v = view(ALLOCS, OWNERS, DIRECTORY.get, allocatable=SLOTS)
    gpu_samples = []
    for t in range(20):
        procs = {101: 5 + t, 102: 30 - t, 103: (t * 7) % 20}
        gpu = min(1.0, sum(procs.values()) / 100 + 0.02 * (t % 3) - 0.01)
        gpu_samples.append((t, gpu))
        shares, un = update(att, shared_reading(gpu, procs), v, float(t))
    gpu_mean = sum(g for t, g in gpu_samples if t > 19 - 5) / 5
    assert sum(x.utilization for x in shares) + un[0] == pytest.approx(gpu_mean)


def test_never_copies_gpu_value_and_differs_by_load():
    att = Attributor(10)
    v = view(ALLOCS, OWNERS, DIRECTORY.get, allocatable=SLOTS)
    shares, _ = update(att, shared_reading(0.9, {101: 10, 102: 30, 103: 50}), v, 0.0)
    values = [x.utilization for x in shares]
    assert len(set(values)) == 3 and all(u < 0.9 for u in values)


def test_host_process_and_unknown_pod_are_unattributed():
    att = Attributor(10)
    owners = dict(OWNERS)
    owners[104] = None  # host process
    owners[105] = PidOwner(uid(9), "")  # a pod holding no slot on this GPU
    v = view(ALLOCS, owners, {**DIRECTORY, uid(9): ("other", "x")}.get, allocatable=SLOTS)
    shares, un = update(att, shared_reading(0.7, {101: 10, 102: 10, 103: 10, 104: 15, 105: 5}), v, 0.0)
    assert un[0] == pytest.approx(0.4)
    assert att.unresolved == {(0, NOT_IN_POD): 1, (0, NO_SLOT): 1}


def test_elimination_without_directory():
    att = Attributor(10)
    # Only one pod on the GPU: its UID pairs with it even without the API.
    v = view(ALLOCS[:1], {101: OWNERS[101], 104: None}, None, allocatable=SLOTS)
    shares, un = update(att, shared_reading(0.5, {101: 30, 104: 10}), v, 0.0)
    assert by_pod(shares)["a"].utilization == pytest.approx(0.3)
    assert un[0] == pytest.approx(0.2)
    # Three pods, three UIDs and nothing else to tell them apart: all unattributed.
    att = Attributor(10)
    v = view(ALLOCS, OWNERS, None, allocatable=SLOTS)
    shares, un = update(att, shared_reading(0.6, {101: 10, 102: 20, 103: 30}), v, 0.0)
    assert all(x.utilization == 0.0 for x in shares) and un[0] == pytest.approx(0.6)
    assert att.unresolved == {(0, UNKNOWN_POD): 3}


def test_elimination_chains_across_gpus():
    # Pod a is alone on exclusive GPU 1 and also holds a slot on shared GPU 0 with pod b:
    # GPU 1 pairs uid 1 with a, which leaves uid 2 to b on GPU 0.
    att = Attributor(10)
    g1 = DeviceReading(1, G1, "H100", values=util(0.4), processes=(ProcessInfo(201, 0),))
    g0 = shared_reading(0.5, {101: 10, 102: 30}).devices[0]
    owners = {101: OWNERS[101], 201: OWNERS[101], 102: OWNERS[102]}
    allocs = [("ml", "a", "main", SLOTS[0]), ("ml", "b", "main", SLOTS[1]), ("ml", "a", "main", G1)]
    shares, un = update(att, NvmlReading(0.0, devices=(g0, g1)), view(allocs, owners, None, SLOTS), 0.0)
    got = {(x.pod, x.gpu): x.utilization for x in shares}
    assert got == {("a", 0): pytest.approx(0.1), ("b", 0): pytest.approx(0.3), ("a", 1): pytest.approx(0.4)}
    assert att.uid_pairs == {uid(1): ("ml", "a"), uid(2): ("ml", "b")}


def test_two_containers_of_one_pod_on_one_gpu():
    att = Attributor(10)
    allocs = [("ml", "a", "x", SLOTS[0]), ("ml", "a", "y", SLOTS[1])]
    owners = {101: PidOwner(uid(1), "1" * 64), 102: PidOwner(uid(1), "2" * 64)}
    directory = {uid(1): PodIdentity("ml", "a", {"1" * 64: "x", "2" * 64: "y"})}.get
    shares, _ = update(att, shared_reading(0.5, {101: 10, 102: 30}), view(allocs, owners, directory, SLOTS), 0.0)
    assert {x.container: x.utilization for x in shares} == {"x": pytest.approx(0.1), "y": pytest.approx(0.3)}
    # Without container ids from the directory the split is unknown: unattributed, not guessed.
    att = Attributor(10)
    shares, un = update(att, shared_reading(0.5, {101: 10, 102: 30}), view(allocs, owners, {uid(1): ("ml", "a")}.get, SLOTS), 0.0)
    assert un[0] == pytest.approx(0.5) and att.unresolved == {(0, AMBIGUOUS_CONTAINER): 2}


def test_two_slots_one_container():
    att = Attributor(10)
    allocs = [("ml", "a", "main", SLOTS[0]), ("ml", "a", "main", SLOTS[1])]
    shares, _ = update(att, shared_reading(0.3, {101: 30}), view(allocs, OWNERS, DIRECTORY.get, SLOTS), 0.0)
    (s,) = shares
    assert s.allocated == 0.5 and s.utilization == pytest.approx(0.3)


def test_exclusive_gpu_and_mig():
    att = Attributor(10)
    g1 = DeviceReading(1, G1, "H100", values=util(0.8), processes=(ProcessInfo(201, 5 * MIB), ProcessInfo(999, 7 * MIB)))
    g0 = DeviceReading(0, G0, "H100", mig_enabled=True, values=util(None))
    mig = MigReading(0, G0, 3, 0, "1g.10gb", M0, values=util(0.35, "gpulse_mig_utilization_ratio"), processes=(ProcessInfo(301, 9 * MIB, 3, 0),))
    owners = {201: PidOwner(uid(1), ""), 999: None, 301: PidOwner(uid(2), "")}
    allocs = [("ml", "a", "main", G1), ("ml", "b", "main", M0)]
    shares, un = update(att, NvmlReading(0.0, devices=(g0, g1), migs=(mig,)), view(allocs, owners), 0.0)
    s = by_pod(shares)
    assert (s["a"].sharing, s["a"].allocated, s["a"].utilization, s["a"].memory_used_bytes) == ("exclusive", 1.0, 0.8, 5 * MIB)
    assert (s["b"].sharing, s["b"].utilization, s["b"].memory_used_bytes) == ("mig", 0.35, 9 * MIB)
    assert (s["b"].gpu_instance, s["b"].compute_instance, s["b"].mig_profile, s["b"].mig_uuid) == ("3", "0", "1g.10gb", M0)
    assert un == {}  # exclusive units report no unattributed share


def test_mig_utilization_from_dcgm_when_nvml_has_none():
    att = Attributor(10)
    g0 = DeviceReading(0, G0, "A100", mig_enabled=True)
    mig = MigReading(0, G0, 3, 0, "1g.10gb", M0)
    shares, _ = update(att, NvmlReading(0.0, devices=(g0,), migs=(mig,)), view([("ml", "b", "m", M0)], {}), 0.0)
    assert shares[0].utilization is None  # unknown: omitted, never NaN
    shares, _ = update(att, NvmlReading(1.0, devices=(g0,), migs=(mig,)), view([("ml", "b", "m", M0)], {}), 1.0,
                           mig_activity={(G0, 3): 0.42})
    assert shares[0].utilization == pytest.approx(0.42)


def test_gke_and_legacy_mig_ids():
    att = Attributor(10)
    g0 = DeviceReading(0, G0, "A100", mig_enabled=True, facts=DeviceFacts(minor_number=4))
    g1 = DeviceReading(1, G1, "T4", values=util(0.2), facts=DeviceFacts(minor_number=5))
    mig = MigReading(0, G0, 3, 0, "1g.10gb", M0, values=util(0.1, "gpulse_mig_utilization_ratio"))
    allocs = [("a", "p", "c", "nvidia4/gi3"), ("a", "q", "c", "nvidia5"), ("a", "r", "c", f"MIG-{G0}/3/0"),
              ("a", "s", "c", "nvidia9")]
    shares, _ = update(att, NvmlReading(0.0, devices=(g0, g1), migs=(mig,)), view(allocs, {}), 0.0)
    got = {x.pod: (x.gpu, x.mig_uuid) for x in shares}
    # p and r name the same instance: it is then shared by two holders and not copied.
    assert got == {"p": (0, M0), "q": (1, ""), "r": (0, M0)}
    assert {x.pod: x.utilization for x in shares if x.gpu == 0} == {"p": None, "r": None}


def test_churn_pod_leaves_and_series_go():
    att = Attributor(10)
    v = view(ALLOCS, OWNERS, DIRECTORY.get, allocatable=SLOTS)
    shares, _ = update(att, shared_reading(0.6, {101: 10, 102: 20, 103: 30}), v, 0.0)
    assert {x.pod for x in shares} == {"a", "b", "c"}
    v2 = view(ALLOCS[:2], {k: OWNERS[k] for k in (101, 102)}, DIRECTORY.get, allocatable=SLOTS)
    shares, un = update(att, shared_reading(0.3, {101: 10, 102: 20}), v2, 1.0)
    assert {x.pod for x in shares} == {"a", "b"}
    assert v2.resolver.retained == {101, 102}
    # A shared GPU with no holder left still reports its unattributed rest.
    shares, un = update(att, shared_reading(0.1, {}), view([], {}, allocatable=SLOTS), 2.0)
    assert shares == () and 0 in un


def test_ticks_without_new_samples_hold_the_last_split():
    att = Attributor(10)
    v = view(ALLOCS[:2], OWNERS, DIRECTORY.get, allocatable=SLOTS)
    update(att, shared_reading(0.4, {101: 10, 102: 30}), v, 0.0)
    r = shared_reading(0.4, {101: 10, 102: 30})
    no_samples = NvmlReading(1.0, devices=(DeviceReading(0, G0, "H100", values=util(0.4),
                                                         processes=r.devices[0].processes),))
    shares, un = update(att, no_samples, v, 1.0)
    assert by_pod(shares)["b"].utilization == pytest.approx(0.3) and un[0] == pytest.approx(0.0)
