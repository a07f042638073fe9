"""The sampler: assemble one Snapshot from its inputs, collect, render both formats, swap."""

import gzip

from gpulse import collectors
from gpulse.attribution import Attributor
from gpulse.config import Config
from gpulse.health import Health
from gpulse.nvml.supervisor import NvmlSupervisor
from gpulse.refresh import SourceStatus
from gpulse.sampler import Inputs, Sampler
from gpulse.sim import scenario
from gpulse.sim.nvml import FakeNvml
from gpulse.snapshot import WorkloadState
from gpulse.windowing import DeviceWindows


class Clock:
    def __init__(self):
        self.t = 10.0

    def __call__(self):
        return self.t


class StaticSource:
    def __init__(self, status):
        self._status = status

    def status(self):
        return self._status


class Workloads:
    def current(self):
        return (WorkloadState("ml", "vllm-0", "vllm", "llama", queue_depth=3.0),)


def make(load, clock, sources=None):
    nvml = NvmlSupervisor(load, clock=clock)
    inputs = Inputs(nvml=nvml, windows=DeviceWindows(10.0), attributor=Attributor(10.0), workloads=Workloads(),
                    sources={"nvml": nvml, **(sources or {})})
    runner = collectors.CollectorRunner(collectors.REGISTRY.enabled(Config()), collectors.SELF, 1000)
    return Sampler(inputs, runner, Health(1.0, clock=clock), interval=1.0, node_name="n", backend="fake",
                   clock=clock, wallclock=lambda: 1_700_000_000.0)


def test_a_tick_reads_renders_both_formats_and_swaps():
    clock = Clock()
    lib = FakeNvml(scenario.load("t4-legacy"), clock=clock)
    s = make(lambda: lib, clock, {"kubelet": StaticSource(SourceStatus(False, 12.0, "kubelet away"))})
    assert s.current is None
    r1 = s.tick(clock())
    assert s.current is r1 and r1.snapshot.tick.ticks == 0
    clock.t += 1
    r2 = s.tick(clock())
    assert s.current is r2 and r2.snapshot.tick.ticks == 1 and r2.snapshot.tick.duration is not None
    text = r2.text.decode()
    assert 'gpulse_gpu_up{gpu="1",' in text and 'gpulse_workload_queue_depth{namespace="ml",pod="vllm-0"' in text
    assert 'gpulse_source_up{source="kubelet"} 0' in text and 'gpulse_snapshot_age_seconds{source="kubelet"} 12' in text
    assert 'gpulse_source_up{source="nvml"} 1' in text
    assert gzip.decompress(r2.text_gzip) == r2.text and gzip.decompress(r2.openmetrics_gzip) == r2.openmetrics
    assert r2.openmetrics.endswith(b"# EOF\n")
    assert s.readiness() == (True, "")


def test_nvml_down_still_serves_the_rest_and_is_not_ready():
    clock = Clock()

    def missing():
        import pynvml
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    s = make(missing, clock)
    r = s.tick(clock())
    text = r.text.decode()
    assert "gpulse_gpu_up{" not in text and 'gpulse_source_up{source="nvml"} 0' in text
    assert "gpulse_workload_queue_depth{" in text
    ready, reason = s.readiness()
    assert not ready and "LibraryNotFound" in reason
    assert s.liveness()[0]


def test_the_loop_ticks_on_its_thread_until_stopped():
    import time

    lib = FakeNvml(scenario.load("t4-legacy"))
    s = make(lambda: lib, time.monotonic)
    s.interval = 0.05
    s.start()
    try:
        deadline = time.monotonic() + 5
        while s.ticks < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.ticks >= 3
    finally:
        s.stop()
    n = s.ticks
    time.sleep(0.15)
    assert s.ticks == n
