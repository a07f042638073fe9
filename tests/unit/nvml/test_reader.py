"""The reader against the fake driver: versioned symbols, batching, classification."""

import time

from gpulse.nvml.reader import NvmlReader
from gpulse.sim import scenario
from gpulse.sim.nvml import FakeNvml


def _reader(name):
    clock = [1.0]
    reader = NvmlReader(FakeNvml(scenario.load(name), clock=lambda: clock[0]), clock=lambda: clock[0])
    reader.start()
    return reader, clock


def test_versioned_symbol_probed_once_per_driver():
    new, _ = _reader("reference")
    old, _ = _reader("t4-legacy")  # driver 470: no _v3 symbol
    try:
        assert new.functions["nvmlDeviceGetComputeRunningProcesses"] == "nvmlDeviceGetComputeRunningProcesses_v3"
        assert old.functions["nvmlDeviceGetComputeRunningProcesses"] == "nvmlDeviceGetComputeRunningProcesses_v2"
        reading = old.read(2.0)
        assert [len(d.processes) for d in reading.devices] == [1, 1], "processes still listed on the old driver"
        before = old.calls["nvmlDeviceGetComputeRunningProcesses_v3"]
        old.read(3.0)
        assert old.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == before, "the missing symbol is not asked again"
    finally:
        new.stop()
        old.stop()


def test_one_batched_field_call_per_gpu_per_tick():
    reader, clock = _reader("g5-timeslice")
    try:
        reader.read(1.0)
        before = reader.calls["nvmlDeviceGetFieldValues"]
        clock[0] = 2.0
        reader.read(2.0)
        assert reader.calls["nvmlDeviceGetFieldValues"] - before == 4
        # A10G: the memory temperature field is not supported and was dropped after one ask
        assert all("field NVML_FI_DEV_MEMORY_TEMP" in d.unsupported for d in reader.devices)
        assert reader.errors[("nvmlDeviceGetFieldValues:memory_temp", "unsupported")] == 4
    finally:
        reader.stop()


def test_process_utilization_carries_last_seen_timestamp():
    reader, clock = _reader("g5-timeslice")
    try:
        first = reader.read(1.0).devices[0].process_utilization
        assert first
        clock[0] = 1.5
        second = reader.read(1.5).devices[0].process_utilization
        assert second and min(s.timestamp_us for s in second) > max(s.timestamp_us for s in first)
        third = reader.read(1.5).devices[0].process_utilization
        assert third == ()  # nothing new since lastSeenTimeStamp: NOT_FOUND is no data, not an error
        assert reader.errors[("nvmlDeviceGetProcessUtilization", "no_data")] >= 1
        assert "nvmlDeviceGetProcessUtilization" not in reader.devices[0].unsupported
    finally:
        reader.stop()
        time.sleep(0)


def test_event_handles_match_devices_by_address_like_pynvml_returns_them():
    import ctypes

    import pynvml
    from gpulse.nvml.reader import _handle_key
    target = pynvml.struct_c_nvmlDevice_t()
    a = ctypes.cast(ctypes.pointer(target), pynvml.c_nvmlDevice_t)
    b = ctypes.cast(ctypes.pointer(target), pynvml.c_nvmlDevice_t)  # a new object, as per event
    other = ctypes.cast(ctypes.pointer(pynvml.struct_c_nvmlDevice_t()), pynvml.c_nvmlDevice_t)
    assert a is not b and _handle_key(a) == _handle_key(b) != _handle_key(other)


def test_a_size_query_answering_success_is_no_data_not_an_error():
    """An idle GPU: the process-utilization size query finds nothing to size and answers SUCCESS
    (NVIDIA's mock NVML does; pynvml then raises NVMLError with value 0)."""
    import os

    from tests.conftest import ROOT
    path = os.path.join(ROOT, "tests", "fixtures", "scenarios", "mock-nvml-gb200.yaml")
    clock = [1.0]
    reader = NvmlReader(FakeNvml(scenario.load(path), clock=lambda: clock[0]), clock=lambda: clock[0])
    reader.start()
    try:
        for t in (2.0, 3.0, 4.0):
            clock[0] = t
            reading = reader.read(t)
        assert all(d.process_utilization == () for d in reading.devices)
        assert reader.errors[("nvmlDeviceGetProcessUtilization", "no_data")] == 3 * len(reader.devices)
        assert reader.errors[("nvmlDeviceGetProcessUtilization", "broken")] == 0
        assert all(reader.outcomes[(d.index, "nvmlDeviceGetProcessUtilization")] == "no_data" for d in reader.devices)
        assert all("nvmlDeviceGetProcessUtilization" not in d.unsupported for d in reader.devices), "asked again"
    finally:
        reader.stop()
