"""Windows over the NVML rows: means, maxima, the MIG fallback, lost GPUs."""

import pytest
from gpulse.nvml.reading import DeviceReading, MigReading, NvmlReading
from gpulse.windowing import DeviceWindows, unit_utilization

G = "GPU-0"


def reading(t, util, power=None, up=True, mig_util=None, xids=None):
    values = {"gpulse_gpu_utilization_ratio": util, "gpulse_gpu_memory_utilization_ratio": util / 2}
    if power is not None:
        values["gpulse_gpu_power_watts"] = power
    labeled = {"gpulse_gpu_xid_errors_total": xids} if xids else {}
    migs = ()
    if mig_util is not False:
        mig_values = {} if mig_util is None else {"gpulse_mig_utilization_ratio": mig_util}
        migs = (MigReading(1, "GPU-1", 3, 0, "1g.10gb", "MIG-1", values=mig_values),)
    return NvmlReading(t, devices=(DeviceReading(0, G, "H100", up=up, values=values, labeled=labeled),
                                   DeviceReading(1, "GPU-1", "A100", mig_enabled=True)), migs=migs)


def test_mean_and_max_over_the_window_last_value_for_the_rest():
    w = DeviceWindows(3.0)
    for t, u, p in ((1, 0.2, 100.0), (2, 0.6, 200.0), (3, 1.0, 300.0)):
        gpus, _ = w.apply(reading(t, u, p), float(t))
    v = gpus[0].values
    assert v["gpulse_gpu_utilization_ratio"] == pytest.approx(0.6)
    assert v["gpulse_gpu_utilization_max_ratio"] == 1.0
    assert v["gpulse_gpu_memory_utilization_ratio"] == pytest.approx(0.3)
    assert v["gpulse_gpu_power_watts"] == 300.0  # a "last" row is not averaged
    gpus, _ = w.apply(reading(5, 0.0), 5.0)
    assert gpus[0].values["gpulse_gpu_utilization_ratio"] == pytest.approx(0.5)  # t=3 and t=5 in (2, 5]


def test_mig_activity_falls_back_to_dcgm_exporter():
    w = DeviceWindows(10.0)
    _, migs = w.apply(reading(1, 0.1), 1.0, {("GPU-1", 3): 0.42})
    assert migs[0].values["gpulse_mig_utilization_ratio"] == 0.42
    _, migs = w.apply(reading(2, 0.1, mig_util=0.2), 2.0, {("GPU-1", 3): 0.9})
    assert migs[0].values["gpulse_mig_utilization_ratio"] == pytest.approx(0.31), "NVML's GPM wins; one window"
    _, migs = w.apply(reading(3, 0.1), 3.0, None)
    assert migs[0].values["gpulse_mig_utilization_ratio"] == pytest.approx(0.31)


def test_a_lost_gpu_keeps_only_its_xids_and_windows_of_gone_devices_are_dropped():
    w = DeviceWindows(10.0)
    w.apply(reading(1, 0.5), 1.0)
    gpus, _ = w.apply(reading(2, 0.5, up=False, xids={("79",): 1.0}), 2.0)
    assert dict(gpus[0].values) == {} and dict(gpus[0].labeled) == {"gpulse_gpu_xid_errors_total": {("79",): 1.0}}
    w.apply(NvmlReading(3.0, devices=(DeviceReading(1, "GPU-1", "A100", mig_enabled=True),)), 3.0)
    gpus, _ = w.apply(reading(4, 0.1, mig_util=False), 4.0)
    assert gpus[0].values["gpulse_gpu_utilization_ratio"] == pytest.approx(0.1), "the old samples were dropped"


def test_unit_utilization_keys_match_attribution_units():
    w = DeviceWindows(10.0)
    gpus, migs = w.apply(reading(1, 0.5, mig_util=0.25), 1.0)
    assert unit_utilization(gpus, migs) == {("gpu", 0): 0.5, ("mig", 1, 3): 0.25}
