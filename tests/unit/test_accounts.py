"""Accounts: per-pod energy, power, idle-allocated time and cost, tick by tick, with the
GPU's energy conserved and every counter monotonic while its pod holds the unit."""

from types import MappingProxyType

import pytest
from gpulse.accounts import ENERGY, POWER, Accounts, gpu_slices, instance_slices, pod_labels
from gpulse.identity.gpu import resolve_gpu
from gpulse.identity.records import NodeRecord
from gpulse.identity.resolver import IdentityView
from gpulse.nvml.reading import MIG_UTILIZATION, UTILIZATION, DeviceReading, MigReading, NvmlReading
from gpulse.pricing import PriceTable
from gpulse.snapshot import GpuState, MigState, PodShare

G0 = "GPU-00000000-0000-4000-8000-000000000000"
G1 = "GPU-11111111-1111-4111-8111-111111111111"
H100 = resolve_gpu("NVIDIA H100 80GB HBM3", pci_device_id=0x233010DE, memory_mib=81559)
T4 = resolve_gpu("Tesla T4", pci_device_id=0x1EB810DE, memory_mib=15360)
PRICE = 6.88  # built-in: H100-SXM5-80GB on AWS, on-demand


def _node(cloud="aws"):
    return NodeRecord("n", cloud, "providerID", "us-east-1", "us-east-1a", "p5.48xlarge", "dmi", "", None,
                      "H100", "H100-SXM5-80GB", 2, "550.90.07", "12.4")


def _identity(records=None, cloud="aws"):
    records = records or {G0: H100, G1: H100}
    return IdentityView(records, {u: i for i, u in enumerate(records)}, _node(cloud))


def _gpu(index, uuid, energy=None, power=None, mig=False, up=True):
    values = {k: v for k, v in ((ENERGY, energy), (POWER, power)) if v is not None}
    return GpuState(index, uuid, "H100", up=up, mig_enabled=mig, values=MappingProxyType(values))


def _reading(utils=None, migs=()):
    utils = utils or {}
    devices = tuple(DeviceReading(i, u, "H100", values=MappingProxyType({UTILIZATION: v} if v is not None else {}))
                    for i, (u, v) in enumerate(utils.items()))
    return NvmlReading(0.0, devices, tuple(migs))


def _share(pod, gpu=0, uuid=G0, sharing="exclusive", allocated=1.0, util=None, gi="", profile=""):
    return PodShare("ml", pod, "main", gpu, uuid, sharing, allocated, util, None, gi, "0" if gi else "", profile,
                    f"MIG-{gi}" if gi else "")


class Ticker:
    def __init__(self, **kw):
        self.acc = Accounts(PriceTable.load(), **kw)
        self.t = 100.0

    def tick(self, gpus, pods, reading=None, activity=None, identity=None, migs=(), dt=1.0):
        self.t += dt
        pods_out, gpus_out = self.acc.update(self.t, reading or _reading(), tuple(gpus), tuple(migs), tuple(pods),
                                             activity or {}, identity if identity is not None else _identity())
        return {a.labels[1]: a for a in pods_out}, {g.uuid: g for g in gpus_out}


def test_whole_gpu_holder_gets_all_energy_and_power_and_allocation_cost():
    k = Ticker()
    pod = _share("a", util=0.6)
    k.tick([_gpu(0, G0, 1000.0, 300.0)], [pod], _reading({G0: 0.6}))
    pods, gpus = k.tick([_gpu(0, G0, 1300.0, 310.0)], [pod], _reading({G0: 0.6}))
    assert pods["a"].energy_joules == pytest.approx(300.0)
    assert pods["a"].power_watts == pytest.approx(310.0)
    assert gpus[G0].unattributed_energy_joules == pytest.approx(0.0)
    assert pods["a"].cost == pytest.approx(PRICE * 1.0 / 3600)
    assert pods["a"].idle_seconds == 0.0


def test_time_sliced_gpu_splits_idle_by_allocation_and_active_by_this_ticks_activity():
    k = Ticker()
    a, b = _share("a", sharing="time-slicing", allocated=0.25, util=0.3), \
        _share("b", sharing="time-slicing", allocated=0.25, util=0.0)
    activity = {("gpu", 0): ({("ml", "a", "main"): 0.3}, 0.1)}  # 0.1: a host process
    # Teach the floor the idle power first (the GPU rests at 70 W).
    k.tick([_gpu(0, G0, 0.0, 70.0)], [a, b], _reading({G0: 0.0}), {("gpu", 0): ({}, 0.0)})
    pods, gpus = k.tick([_gpu(0, G0, 270.0, 270.0)], [a, b], _reading({G0: 0.4}), activity)
    idle, active = 70.0, 200.0
    assert pods["a"].energy_joules == pytest.approx(0.25 * idle + active * 0.3 / 0.4)
    assert pods["b"].energy_joules == pytest.approx(0.25 * idle), "an idle holder pays its share of the floor"
    assert gpus[G0].unattributed_energy_joules == pytest.approx(0.5 * idle + active * 0.1 / 0.4)
    assert pods["a"].energy_joules + pods["b"].energy_joules + gpus[G0].unattributed_energy_joules == \
        pytest.approx(270.0)
    assert gpus[G0].idle_power_watts == 70.0 and gpus[G0].idle_power_estimate == "idle"
    # b is idle: its 0.25 share accrues idle time; a's 0.3 / 0.25 is busy.
    assert pods["b"].idle_seconds == pytest.approx(0.25 * 1.0), "the first tick has no interval to count"
    assert pods["a"].idle_seconds == 0.0
    assert pods["a"].cost == pytest.approx(PRICE * 0.25 / 3600)


def test_shared_gpu_without_this_ticks_split_falls_back_to_allocation():
    k = Ticker()
    a = _share("a", sharing="time-slicing", allocated=0.5)
    k.tick([_gpu(0, G0, 0.0, 200.0)], [a])
    pods, gpus = k.tick([_gpu(0, G0, 200.0, 200.0)], [a])
    assert pods["a"].energy_joules == pytest.approx(100.0)
    assert gpus[G0].unattributed_energy_joules == pytest.approx(100.0)


def test_mig_gpu_by_slices_and_instance_activity():
    k = Ticker()
    # A 3g and a 1g instance held, a 2g instance nobody holds; 7 slices on an H100.
    pods = [_share("big", gi="1", profile="3g.40gb", sharing="mig", util=0.5),
            _share("small", gi="2", profile="1g.10gb", sharing="mig", util=0.0)]
    migs = [MigReading(0, G0, 1, 0, "3g.40gb", "MIG-1", MappingProxyType({MIG_UTILIZATION: 0.5})),
            MigReading(0, G0, 2, 0, "1g.10gb", "MIG-2", MappingProxyType({MIG_UTILIZATION: 0.0})),
            MigReading(0, G0, 3, 0, "2g.20gb", "MIG-3", MappingProxyType({MIG_UTILIZATION: 0.7}))]
    reading = NvmlReading(0.0, (DeviceReading(0, G0, "H100", mig_enabled=True),), tuple(migs))
    gpu0, gpu1 = _gpu(0, G0, 0.0, 70.0, mig=True), _gpu(0, G0, 400.0, 400.0, mig=True)
    quiet = NvmlReading(0.0, reading.devices, tuple(MigReading(m.gpu, m.uuid, m.gpu_instance, 0, m.profile,
                                                               m.mig_uuid, MappingProxyType({MIG_UTILIZATION: 0.0}))
                                                    for m in migs))
    k.tick([gpu0], pods, quiet)
    out, gpus = k.tick([gpu1], pods, reading)
    idle, active = 70.0, 330.0
    busy = 0.5 * 3 / 7 + 0.7 * 2 / 7
    assert out["big"].energy_joules == pytest.approx(3 / 7 * idle + active * (0.5 * 3 / 7) / busy)
    assert out["small"].energy_joules == pytest.approx(1 / 7 * idle), "a slice it never uses: its idle share only"
    assert gpus[G0].unattributed_energy_joules == pytest.approx(3 / 7 * idle + active * (0.7 * 2 / 7) / busy)
    assert out["small"].idle_seconds == pytest.approx(1.0), "a whole MIG instance counts 1 x seconds"
    assert out["big"].cost == pytest.approx(PRICE * 3 / 7 / 3600), "3 of 7 slices of the GPU-hour price"


def test_mig_without_instance_activity_splits_by_allocation():
    k = Ticker()
    pods = [_share("a", gi="1", profile="3g.40gb", sharing="mig")]
    migs = [MigReading(0, G0, 1, 0, "3g.40gb", "MIG-1"), MigReading(0, G0, 2, 0, "3g.40gb", "MIG-2")]
    reading = NvmlReading(0.0, (DeviceReading(0, G0, "H100", mig_enabled=True),), tuple(migs))
    k.tick([_gpu(0, G0, 0.0, 200.0, mig=True)], pods, reading)
    out, gpus = k.tick([_gpu(0, G0, 210.0, 200.0, mig=True)], pods, reading)
    assert out["a"].energy_joules == pytest.approx(210.0 * 3 / 7)
    assert gpus[G0].unattributed_energy_joules == pytest.approx(210.0 * 4 / 7)
    assert out["a"].idle_seconds is None, "utilization never known: idle time is not claimed"


def test_windowed_mig_activity_stands_in_for_gpm():
    k = Ticker()
    pods = [_share("a", gi="1", profile="1g.10gb", sharing="mig")]
    migs_raw = [MigReading(0, G0, 1, 0, "1g.10gb", "MIG-1"), MigReading(0, G0, 2, 0, "1g.10gb", "MIG-2")]
    windowed = [MigState(0, G0, 1, 0, "1g.10gb", "MIG-1", MappingProxyType({MIG_UTILIZATION: 0.8})),
                MigState(0, G0, 2, 0, "1g.10gb", "MIG-2", MappingProxyType({MIG_UTILIZATION: 0.0}))]
    reading = NvmlReading(0.0, (DeviceReading(0, G0, "H100", mig_enabled=True),), tuple(migs_raw))
    k.tick([_gpu(0, G0, 0.0, 60.0, mig=True)], pods, reading, migs=windowed)
    out, gpus = k.tick([_gpu(0, G0, 100.0, 100.0, mig=True)], pods, reading, migs=windowed)
    assert gpus[G0].unattributed_energy_joules == pytest.approx(100.0 - out["a"].energy_joules)
    assert out["a"].energy_joules > 100.0 / 7 * 1.5, "the busy instance takes the active energy"


def test_counters_are_monotonic_across_churn_and_restart_from_zero():
    k = Ticker()
    a, b = _share("a", sharing="time-slicing", allocated=0.5), _share("b", sharing="time-slicing", allocated=0.5)
    e = 0.0
    last = {}
    for step, pods in enumerate([[a, b], [a, b], [a], [a], [a, b], [a, b]]):
        e += 100.0
        out, _ = k.tick([_gpu(0, G0, e, 100.0)], pods, activity={("gpu", 0): ({}, 0.0)})
        assert set(out) == {p.pod for p in pods}, "a pod that left has no series"
        for name, acc in out.items():
            if name in last and step != 4:
                assert acc.energy_joules >= last[name].energy_joules and acc.cost >= last[name].cost
            last[name] = acc
        if step == 2:
            assert "b" not in out
    assert out["b"].energy_joules < out["a"].energy_joules, "b came back at step 4 and started over"


def test_energy_across_a_gap_is_the_gpus_but_no_pods_and_a_reset_counter_starts_over():
    k = Ticker(max_gap=30.0)
    a = _share("a", util=0.0)
    k.tick([_gpu(0, G0, 5000.0, 100.0)], [a], _reading({G0: 0.0}))
    out, gpus = k.tick([_gpu(0, G0, 9000.0, 100.0)], [a], _reading({G0: 0.0}), dt=120.0)
    assert out["a"].energy_joules == 0.0 and out["a"].idle_seconds == 0.0 and out["a"].cost == 0.0
    assert gpus[G0].unattributed_energy_joules == pytest.approx(4000.0), "the GPU's energy is still conserved"
    out, _ = k.tick([_gpu(0, G0, 9100.0, 100.0)], [a], _reading({G0: 0.0}))
    assert out["a"].energy_joules == pytest.approx(100.0)
    out, _ = k.tick([_gpu(0, G0, 10.0, 90.0)], [a], _reading({G0: 0.0}))  # driver reload: the counter restarts
    out, gpus = k.tick([_gpu(0, G0, 110.0, 90.0)], [a], _reading({G0: 0.0}))
    assert out["a"].energy_joules == pytest.approx(200.0) and gpus[G0].unattributed_energy_joules == \
        pytest.approx(4000.0)


def test_a_tick_without_a_counter_reading_is_covered_by_the_next_one():
    k = Ticker()
    a = _share("a")
    k.tick([_gpu(0, G0, 1000.0, 100.0)], [a])
    k.tick([_gpu(0, G0, power=100.0)], [a])  # the field failed this tick
    out, gpus = k.tick([_gpu(0, G0, 1250.0, 100.0)], [a])
    assert out["a"].energy_joules == pytest.approx(250.0), "two seconds of the holder's energy, from the counter"


def test_gpu_without_energy_counter_uses_power_and_without_either_has_no_energy():
    k = Ticker()
    a, b = _share("a"), _share("b", gpu=1, uuid=G1)
    k.tick([_gpu(0, G0, power=50.0), _gpu(1, G1)], [a, b])
    out, gpus = k.tick([_gpu(0, G0, power=60.0), _gpu(1, G1)], [a, b], dt=2.0)
    assert out["a"].energy_joules == pytest.approx(120.0)
    assert out["b"].energy_joules is None and out["b"].power_watts is None
    assert gpus[G1].unattributed_energy_joules is None and gpus[G1].idle_power_watts is None


def test_a_zero_watt_reading_is_no_reading_not_zero_power():
    # A powered GPU never draws 0 W: a 0 is a sensor that is not ready (IdleFloor reads it so).
    k = Ticker()
    a = _share("a")
    k.tick([_gpu(0, G0, power=0.0)], [a])
    out, gpus = k.tick([_gpu(0, G0, power=0.0)], [a])
    assert out["a"].power_watts is None and out["a"].energy_joules is None
    assert gpus[G0].unattributed_energy_joules is None
    out, _ = k.tick([_gpu(0, G0, power=80.0)], [a])
    assert out["a"].power_watts == pytest.approx(80.0)


def test_unknown_or_unpriced_gpus_get_no_cost_and_no_price():
    k = Ticker()
    a, b = _share("a"), _share("b", gpu=1, uuid=G1)
    unknown = resolve_gpu("Mystery Accelerator 9000")
    identity = _identity({G0: unknown, G1: T4})
    k.tick([_gpu(0, G0, 0.0, 50.0), _gpu(1, G1, 0.0, 50.0)], [a, b], identity=identity)
    out, gpus = k.tick([_gpu(0, G0, 50.0, 50.0), _gpu(1, G1, 50.0, 50.0)], [a, b], identity=identity)
    assert out["a"].cost is None and out["b"].cost is None
    assert gpus[G0].price_per_hour is None and gpus[G1].price_per_hour is None
    assert out["a"].energy_joules == pytest.approx(50.0), "energy does not need a price"


def test_price_labels_and_spot_nodes_priced_only_when_the_table_says():
    k = Ticker()
    _, gpus = k.tick([_gpu(0, G0, 0.0, 50.0)], [_share("a")])
    g = gpus[G0]
    assert (g.price_per_hour, g.price_key, g.cloud, g.pricing_kind, g.currency, g.price_region) == \
        (PRICE, "H100-SXM5-80GB", "aws", "on-demand", "USD", "us-east-1")
    assert g.price_source.startswith("https://") and g.price_as_of == "2026-11-09"
    spot = Ticker(node_labels=lambda: {"karpenter.sh/capacity-type": "spot"})
    _, gpus = spot.tick([_gpu(0, G0, 0.0, 50.0)], [_share("a")])
    assert gpus[G0].price_per_hour is None, "no spot row: no price, never the on-demand one"


def test_cost_by_energy_share():
    k = Ticker(basis="energy")
    a, b = _share("a", sharing="time-slicing", allocated=0.5), _share("b", sharing="time-slicing", allocated=0.5)
    act = {("gpu", 0): ({("ml", "a", "main"): 0.6}, 0.0)}
    k.tick([_gpu(0, G0, 0.0, 70.0)], [a, b], _reading({G0: 0.0}), {("gpu", 0): ({}, 0.0)})
    out, _ = k.tick([_gpu(0, G0, 400.0, 400.0)], [a, b], _reading({G0: 0.6}), act)
    share_a = (35.0 + 330.0) / 400.0
    assert out["a"].cost == pytest.approx(PRICE * share_a / 3600)
    assert out["b"].cost == pytest.approx(PRICE * (35.0 / 400.0) / 3600)


def test_idle_threshold_is_per_allocated_gpu():
    k = Ticker(idle_threshold=0.05)
    # 1/9 of a GPU used 0.004 of the GPU: 3.6% of its share, idle; 0.02 is 18%, busy.
    idle, busy = _share("idle", sharing="time-slicing", allocated=1 / 9, util=0.004), \
        _share("busy", sharing="time-slicing", allocated=1 / 9, util=0.02)
    for _ in range(11):
        out, _ = k.tick([_gpu(0, G0, power=100.0)], [idle, busy])
    assert out["idle"].idle_seconds == pytest.approx(10 / 9) and out["busy"].idle_seconds == 0.0


def test_helpers():
    assert instance_slices("1g.10gb") == 1 and instance_slices("1c.3g.40gb") == 3
    assert instance_slices("7g.80gb") == 7 and instance_slices("1g.10gb+me") == 1 and instance_slices("x") is None
    assert gpu_slices(H100.sku) == 7 and gpu_slices(resolve_gpu("NVIDIA A30", memory_mib=24576).sku) == 4
    assert gpu_slices("") == 7
    share = _share("a", gi="3", profile="1g.10gb", sharing="mig")
    assert pod_labels(share) == ("ml", "a", "main", "0", G0, "mig", "3", "0", "1g.10gb", "MIG-3", "device-plugin")
