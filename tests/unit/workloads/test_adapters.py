"""Each server adapter against a recorded-format sample of that server's exposition."""

import os

import pytest
from gpulse.workloads import adapters, exposition

from tests.conftest import ROOT

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "servers")


def load(name):
    with open(os.path.join(FIXTURES, name + ".txt"), "rb") as fh:
        samples, _types = exposition.parse(fh.read(), adapters.ALL_METRICS)
    return samples


def states(name, server=None):
    samples = load(name)
    adapter = adapters.BY_SERVER[server] if server else adapters.detect(s[0] for s in samples)
    assert adapter is not None, f"{name}: no server detected"
    return adapter.server, {s.model: s for s in adapters.extract(adapter, samples, "ns", "pod", 0.01)}


# fixture -> (detected server, {model: (queue_depth, running_requests, kv_cache_usage)})
CASES = {
    # two engines of one model: counts sum, the KV ratio is the fuller engine's
    "vllm": ("vllm", {"meta-llama/Llama-3.1-8B-Instruct": (7, 21, 0.61)}),
    "vllm-legacy": ("vllm", {"mistralai/Mistral-7B-Instruct-v0.3": (2, 7, 0.875)}),
    "tgi": ("tgi", {"": (5, 8, None)}),
    # per model, versions folded; Triton has no running count
    "triton": ("triton", {"resnet50": (11, None, None), "bert": (3, None, None)}),
    # Triton's own pending count is there too, but the batcher's gauges decide
    "trtllm": ("trtllm", {"tensorrt_llm": (6, 14, 0.75)}),
    "trtllm-serve": ("trtllm-serve", {"llama3-8b": (3, 10, 0.5)}),
    "sglang": ("sglang", {"Qwen/Qwen2.5-7B-Instruct": (17, 21, 0.33)}),
    # KV stats without a model label belong to the one model of the pod
    "dynamo": ("dynamo", {"qwen/qwen3-0.6b": (7, 10, 0.27)}),
    "ray-serve": ("ray-serve", {"LLMServer": (6, 8, None), "Router": (0, 1, None)}),
}


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_adapter_maps_recorded_sample(fixture):
    want_server, want = CASES[fixture]
    server, got = states(fixture)
    assert server == want_server
    assert set(got) == set(want)
    for model, (q, r, kv) in want.items():
        s = got[model]
        assert (s.namespace, s.pod, s.server, s.scrape_up) == ("ns", "pod", want_server, True)
        assert s.queue_depth == q
        assert s.running_requests == r
        assert s.kv_cache_usage == (pytest.approx(kv) if kv is not None else None)


def test_trtllm_pending_zero_is_not_mistaken_for_plain_triton():
    # the same body read as plain Triton gives Triton's (empty) pending queue, not the batcher's
    _server, got = states("trtllm", server="triton")
    assert got["tensorrt_llm"].queue_depth == 0


def test_every_server_in_the_table_has_a_fixture_and_a_case():
    assert set(adapters.BY_SERVER) <= {server for server, _ in CASES.values()}


def test_detect_nothing_known():
    assert adapters.detect(["process_cpu_seconds_total", "up"]) is None


def test_no_samples_of_a_named_server_gives_one_state_without_values():
    (s,) = adapters.extract(adapters.BY_SERVER["vllm"], [], "ns", "pod")
    assert (s.model, s.queue_depth, s.running_requests, s.kv_cache_usage) == ("", None, None, None)


def test_percent_scale_is_applied():
    table = adapters.ServerAdapter("pct", kv_cache_usage=(adapters.Source("kv_percent", scale=0.01),))
    (s,) = adapters.extract(table, [("kv_percent", (), 42.0, None)], "ns", "pod")
    assert s.kv_cache_usage == pytest.approx(0.42)


def test_infinite_values_are_omitted_not_exported():
    samples = [("tgi_queue_size", (), float("inf"), None), ("tgi_batch_current_size", (), 3.0, None)]
    (s,) = adapters.extract(adapters.BY_SERVER["tgi"], samples, "ns", "pod")
    assert s.queue_depth is None and s.running_requests == 3


def test_nan_is_dropped_by_the_parser():
    samples, _ = exposition.parse(b"tgi_queue_size NaN\n", adapters.ALL_METRICS)
    assert samples == []


def test_parse_error_names_the_line():
    with pytest.raises(exposition.ExpositionError, match="line 2"):
        exposition.parse(b"tgi_queue_size 1\n{{{ nonsense\n")


def test_models_past_the_cap_fold_into_other_and_keep_the_pod_total():
    from gpulse.workloads import adapters
    n = adapters.MAX_MODELS_PER_ENDPOINT + 10
    samples = [("vllm:num_requests_waiting", (("model_name", f"lora-{i:03d}"),), float(i), None) for i in range(n)]
    states = adapters.extract(adapters.BY_SERVER["vllm"], samples, "ns", "pod")
    assert len(states) == adapters.MAX_MODELS_PER_ENDPOINT
    assert states[-1].model == adapters.OTHER_MODELS or any(s.model == adapters.OTHER_MODELS for s in states)
    assert sum(s.queue_depth for s in states) == sum(range(n))
