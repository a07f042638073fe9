"""The startup collector: a Snapshot's pod starts and histograms as families."""

from gpulse import catalog
from gpulse.collectors import startup
from gpulse.kernels import ExpositionEncoder
from gpulse.snapshot import PodStartup, Snapshot, StartupHistogram

BUCKETS = catalog.BY_NAME["gpulse_workload_startup_seconds"].buckets


def test_families_from_a_snapshot():
    snap = Snapshot(0.0, "n1", startups=(
        PodStartup("llm", "vllm-a", "vllm", "deployment", "initial",
                   (("containers_started", 12.0), ("gpu_memory_allocated", 3.5)), "server_answering", True),
        PodStartup("llm", "vllm-b", "vllm", "deployment", "restart", (("containers_started", 10.0),), "", False),
        PodStartup("llm", "vllm-c", "vllm", "deployment", "initial", (("containers_started", 20.0),), "", None),
    ), startup_histograms=(
        StartupHistogram("llm", "vllm", "deployment", "initial", (0.0,) * 4 + (1.0,) * (len(BUCKETS) - 3), 27.5),
    ))
    phases, starting, histogram = startup.collect(snap)
    assert phases.samples == [
        (("llm", "vllm-a", "vllm", "deployment", "initial", "containers_started"), 12.0),
        (("llm", "vllm-a", "vllm", "deployment", "initial", "gpu_memory_allocated"), 3.5),
        (("llm", "vllm-b", "vllm", "deployment", "restart", "containers_started"), 10.0),
        (("llm", "vllm-c", "vllm", "deployment", "initial", "containers_started"), 20.0)]
    # vllm-c's start was under way before the agent: whether it still starts is not known yet.
    assert starting.samples == [(("llm", "vllm-a", "vllm", "deployment", "initial", "server_answering"), 1.0),
                                (("llm", "vllm-b", "vllm", "deployment", "restart", ""), 0.0)]
    text = ExpositionEncoder().render([histogram]).decode()
    assert 'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",workload_type="deployment",' \
           'start="initial",le="20.0"} 0\n' in text
    assert 'start="initial",le="30.0"} 1\n' in text and 'start="initial",le="+Inf"} 1\n' in text
    assert text.endswith('gpulse_workload_startup_seconds_count{namespace="llm",workload="vllm",'
                         'workload_type="deployment",start="initial"} 1\n')


def test_the_collector_declares_its_catalog_families():
    assert set(startup.COLLECTOR.families) == {s.name for s in catalog.for_collector("startup")}
