"""The workloads collector and WorkloadSource's contract with the sampler."""

from gpulse.catalog import BY_NAME
from gpulse.collectors import workloads as collector
from gpulse.snapshot import Snapshot, WorkloadState


def families(states):
    return {f.name: f for f in collector.collect(Snapshot(timestamp=0.0, node_name="n", workloads=tuple(states)))}


def test_one_vocabulary_with_catalog_labels():
    fams = families([
        WorkloadState("ns", "triton-0", "triton", "bert", queue_depth=3, scrape_duration_seconds=0.01),
        WorkloadState("ns", "triton-0", "triton", "resnet", queue_depth=11, scrape_duration_seconds=0.01),
        WorkloadState("ns", "vllm-0", "vllm", "llama", queue_depth=2, running_requests=5, kv_cache_usage=0.4,
                      scrape_duration_seconds=0.02),
        WorkloadState("ns", "down-0", "unknown", scrape_up=False, scrape_duration_seconds=0.5),
    ])
    for name, fam in fams.items():
        assert fam.labelnames == BY_NAME[name].labels and fam.type == BY_NAME[name].type
    assert fams["gpulse_workload_queue_depth"].samples == [
        (("ns", "triton-0", "triton", "bert"), 3.0), (("ns", "triton-0", "triton", "resnet"), 11.0),
        (("ns", "vllm-0", "vllm", "llama"), 2.0)]
    # unknown values are omitted, never NaN
    assert fams["gpulse_workload_running_requests"].samples == [(("ns", "vllm-0", "vllm", "llama"), 5.0)]
    assert fams["gpulse_workload_kv_cache_usage_ratio"].samples == [(("ns", "vllm-0", "vllm", "llama"), 0.4)]
    # one scrape_up per endpoint, even for a two-model server
    assert fams["gpulse_workload_scrape_up"].samples == [
        (("ns", "triton-0", "triton"), 1.0), (("ns", "vllm-0", "vllm"), 1.0), (("ns", "down-0", "unknown"), 0.0)]
    assert [s[0] for s in fams["gpulse_workload_scrape_duration_seconds"].samples] == [
        ("ns", "triton-0", "triton"), ("ns", "vllm-0", "vllm"), ("ns", "down-0", "unknown")]


def test_pushed_entries_have_no_duration_sample():
    fams = families([WorkloadState("batch", "q", "push", queue_depth=4)])
    assert fams["gpulse_workload_scrape_up"].samples == [(("batch", "q", "push"), 1.0)]
    assert fams["gpulse_workload_scrape_duration_seconds"].samples == []


def test_duplicate_series_rendered_once():
    fams = families([WorkloadState("ns", "p", "vllm", "m", queue_depth=1),
                     WorkloadState("ns", "p", "vllm", "m", queue_depth=9)])
    assert fams["gpulse_workload_queue_depth"].samples == [(("ns", "p", "vllm", "m"), 1.0)]
