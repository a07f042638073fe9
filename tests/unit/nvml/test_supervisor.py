"""NVML supervision: start with backoff, restart after a driver reload, one status."""

import pynvml
from gpulse.nvml.supervisor import NvmlSupervisor
from gpulse.sim import scenario
from gpulse.sim.nvml import FakeNvml


def test_nvml_missing_backs_off_doubling_then_starts():
    attempts = []
    lib = FakeNvml(scenario.load("t4-legacy"), clock=lambda: 1.0)

    def load():
        attempts.append(1)
        if len(attempts) < 3:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        return lib

    sup = NvmlSupervisor(load)
    assert sup.ready_reader(0.0) is None
    assert not sup.status().up and "NVMLError_LibraryNotFound" in sup.status().error
    assert sup.ready_reader(0.5) is None and len(attempts) == 1, "not retried before the 1 s backoff"
    assert sup.ready_reader(1.0) is None and len(attempts) == 2
    assert sup.ready_reader(2.5) is None and len(attempts) == 2, "then 2 s"
    reader = sup.ready_reader(3.0)
    assert reader is not None and len(attempts) == 3
    assert sup.status().up and sup.status().error == "" and sup.status().age_seconds is None
    assert sup.ready_reader(4.0) is reader
    sup.stop()
    assert sup.reader is None


def test_a_reader_that_needs_a_restart_is_replaced():
    libs = []

    def load():
        libs.append(FakeNvml(scenario.load("t4-legacy"), clock=lambda: 1.0))
        return libs[-1]

    sup = NvmlSupervisor(load)
    first = sup.ready_reader(0.0)
    first.needs_restart = "nvmlDeviceGetMemoryInfo: Uninitialized"
    second = sup.ready_reader(1.0)
    assert second is not None and second is not first and len(libs) == 2
    sup.stop()
