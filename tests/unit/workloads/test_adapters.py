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
    return adapter.server, {s.model: s for s in adapters.extract(adapter, samples, "ns", "pod", 0.01).states}


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
    # KV stats without a model label belong to the one model of the pod; inflight (10)
    # includes the queued (7): 3 run
    "dynamo": ("dynamo", {"qwen/qwen3-0.6b": (7, 3, 0.27)}),
    # keyed by (application, deployment), as Ray's own dashboards group
    "ray-serve": ("ray-serve", {"llm/LLMServer": (6, 8, None), "llm/Router": (0, 1, None)}),
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


def extract_text(text, server=None):
    samples, _ = exposition.parse(text.encode(), adapters.ALL_METRICS)
    adapter = adapters.BY_SERVER[server] if server else adapters.detect(s[0] for s in samples)
    assert adapter is not None
    got = adapters.extract(adapter, samples, "ns", "pod")
    return adapter.server, {s.model: (s.queue_depth, s.running_requests, s.kv_cache_usage) for s in got.states}, got


# Servers added from their documented names (tests/fixtures/exposition/ holds real texts):
# text -> (detected server, {model: (queue, running, kv)})
INLINE = {
    "lmdeploy": ('lmdeploy:num_requests_waiting{model_name="internlm2"} 4\n'
                 'lmdeploy:num_requests_running{model_name="internlm2"} 9\n'
                 'lmdeploy:gpu_cache_usage_perc{model_name="internlm2"} 0.5\n',
                 "lmdeploy", {"internlm2": (4, 9, 0.5)}),
    "llamacpp": ("llamacpp:requests_deferred 2\nllamacpp:requests_processing 4\n"
                 "llamacpp:kv_cache_usage_ratio 0.25\nllamacpp:prompt_tokens_total 99\n",
                 "llamacpp", {"": (2, 4, 0.25)}),
    "tei": ("te_queue_size 3\nte_batch_current_size 5\nte_request_count 10\n", "tei", {"": (3, 5, None)}),
    # unprefixed vLLM names: NIM's KV gauge is gpu_cache_usage_perc, MindIE's npu_cache_usage_perc
    "nim": ('num_requests_waiting{model_name="meta/llama"} 1\nnum_requests_running{model_name="meta/llama"} 2\n'
            'gpu_cache_usage_perc{model_name="meta/llama"} 0.1\nnum_request_max{model_name="meta/llama"} 64\n',
            "nim", {"meta/llama": (1, 2, 0.1)}),
    "mindie": ('num_requests_waiting{model_name="llama3-70b"} 3\nnum_requests_running{model_name="llama3-70b"} 6\n'
               'npu_cache_usage_perc{model_name="llama3-70b"} 0.7\nrequest_received_total{model_name="llama3-70b"} 9\n',
               "mindie", {"llama3-70b": (3, 6, 0.7)}),
    # the router counts requests in flight per worker; it has no queue or KV gauge
    "sglang-router": ('sgl_router_running_requests{worker="http://w0:8000"} 3\n'
                      'sgl_router_running_requests{worker="http://w1:8000"} 4\n'
                      'sgl_router_requests_total{route="/generate"} 50\n',
                      "sglang-router", {"": (None, 7, None)}),
    # vLLM's gauges re-exported by Ray with the ray_ prefix; ray_serve_* are there too;
    # two replicas add up
    "ray-serve-llm": ('ray_serve_deployment_queued_queries{application="app",deployment="LLMServer"} 0\n'
                      'ray_serve_replica_processing_queries{application="app",deployment="LLMServer",replica="r"} 3\n'
                      'ray_vllm:num_requests_waiting{ReplicaId="a",model_name="qwen"} 2\n'
                      'ray_vllm:num_requests_waiting{ReplicaId="b",model_name="qwen"} 1\n'
                      'ray_vllm:num_requests_running{ReplicaId="a",model_name="qwen"} 5\n'
                      'ray_vllm:num_requests_running{ReplicaId="b",model_name="qwen"} 4\n'
                      'ray_vllm:kv_cache_usage_perc{ReplicaId="a",model_name="qwen"} 0.2\n'
                      'ray_vllm:kv_cache_usage_perc{ReplicaId="b",model_name="qwen"} 0.6\n',
                      "ray-serve-llm", {"qwen": (3, 9, 0.6)}),
}


@pytest.mark.parametrize("name", sorted(INLINE))
def test_added_server_is_detected_and_read(name):
    text, want_server, want = INLINE[name]
    server, got, _ = extract_text(text)
    assert server == want_server
    assert got.keys() == want.keys()
    for model, values in want.items():
        assert got[model] == pytest.approx(values)


def test_every_server_in_the_table_has_a_case():
    covered = {server for server, _ in CASES.values()} | {server for _, server, _ in INLINE.values()}
    assert set(adapters.BY_SERVER) <= covered


def test_detect_nothing_known():
    assert adapters.detect(["process_cpu_seconds_total", "up"]) is None


def test_no_samples_of_a_named_server_gives_one_state_without_values():
    (s,) = adapters.extract(adapters.BY_SERVER["vllm"], [], "ns", "pod").states
    assert (s.model, s.queue_depth, s.running_requests, s.kv_cache_usage) == ("", None, None, None)


def test_percent_scale_is_applied():
    table = adapters.ServerAdapter("pct", kv_cache_usage=(adapters.Source("kv_percent", scale=0.01),))
    (s,) = adapters.extract(table, [("kv_percent", (), 42.0, None)], "ns", "pod").states
    assert s.kv_cache_usage == pytest.approx(0.42)


def test_infinite_values_are_dropped_and_counted_not_exported():
    samples = [("tgi_queue_size", (), float("inf"), None), ("tgi_batch_current_size", (), 3.0, None)]
    got = adapters.extract(adapters.BY_SERVER["tgi"], samples, "ns", "pod")
    (s,) = got.states
    assert s.queue_depth is None and s.running_requests == 3
    assert got.dropped == (("not_finite", 1),)


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
    states = adapters.extract(adapters.BY_SERVER["vllm"], samples, "ns", "pod").states
    assert len(states) == adapters.MAX_MODELS_PER_ENDPOINT
    assert states[-1].model == adapters.OTHER_MODELS or any(s.model == adapters.OTHER_MODELS for s in states)
    assert sum(s.queue_depth for s in states) == sum(range(n))


def test_model_names_are_bounded_as_the_push_path_bounds_them():
    from gpulse.workloads import adapters
    long_a, long_b = "m" * 300 + "a", "m" * 300 + "b"  # the same name once cut
    samples = [("vllm:num_requests_waiting", (("model_name", long_a),), 2.0, None),
               ("vllm:num_requests_waiting", (("model_name", long_b),), 3.0, None),
               ("vllm:gpu_cache_usage_perc", (("model_name", long_a),), 0.2, None),
               ("vllm:gpu_cache_usage_perc", (("model_name", long_b),), 0.5, None),
               ("vllm:num_requests_waiting", (("model_name", "x\x1b[2J"),), 1.0, None)]
    states = adapters.extract(adapters.BY_SERVER["vllm"], samples, "ns", "pod").states
    got = {s.model: (s.queue_depth, s.kv_cache_usage) for s in states}
    assert got == {"m" * 256: (5.0, 0.5), "x?[2J": (1.0, None)}
    # the warnings that name a model: one short line each, whatever the name
    samples = [("vllm:num_requests_waiting", (("model_name", "bad\nmodel" + "z" * 5000),), -1.0, None)]
    (warning,) = adapters.extract(adapters.BY_SERVER["vllm"], samples, "ns", "pod").warnings
    assert warning.startswith("queue_depth -1 out of range (negative) for model bad?modelzzz")
    assert len(warning) == adapters.MAX_WARNING_CHARS


def test_many_series_of_one_model_cost_linear_time():
    import time

    from gpulse.workloads import adapters
    n = exposition.MAX_SERIES  # as many as a scrape keeps, each differing in a label
    samples = [("vllm:num_requests_waiting", (("model_name", "m"), ("x", str(i))), 1.0, None) for i in range(n)]
    samples += [("vllm:num_requests_waiting", (("model_name", "m"), ("only_here", "1")), 1.0, None)]
    t0 = time.process_time()
    ext = adapters.extract(adapters.BY_SERVER["vllm"], samples, "ns", "pod")
    assert time.process_time() - t0 < 1.0  # 0.03 s here; 27 s when each label scanned every series
    assert [s.queue_depth for s in ext.states] == [n + 1]
    assert ext.warnings == ("series differ in only_here, x: queue_depth summed",)  # absent counts as differing


# --- the per-server rules, one by one ---

def test_sglang_tensor_parallel_ranks_count_once_data_parallel_ranks_add_up():
    text = "".join(f'sglang:num_queue_reqs{{dp_rank="{dp}",model_name="m",tp_rank="{tp}"}} {5 + dp}\n'
                   for dp in range(2) for tp in range(8))
    text += 'sglang:token_usage{dp_rank="0",model_name="m",tp_rank="0"} 0.2\n' \
            'sglang:token_usage{dp_rank="1",model_name="m",tp_rank="0"} 0.4\n'
    server, got, ext = extract_text(text)
    assert server == "sglang"
    assert got == {"m": (11, None, pytest.approx(0.4))}  # 5 + 6, not 8 x (5 + 6)
    assert "tp_rank 0..7 report the same queue_depth: counted once" in ext.warnings


def test_dynamo_frontend_running_excludes_the_queued():
    text = ('dynamo_frontend_inflight_requests{model="q"} 10\ndynamo_frontend_queued_requests{model="q"} 7\n')
    assert extract_text(text)[1] == {"q": (7, 3, None)}


def test_dynamo_frontend_inflight_below_queued_is_zero_running_with_a_warning():
    text = ('dynamo_frontend_inflight_requests{model="q"} 2\ndynamo_frontend_queued_requests{model="q"} 5\n')
    _server, got, ext = extract_text(text)
    assert got == {"q": (5, 0, None)}
    assert any("running taken as 0" in w for w in ext.warnings)


def test_dynamo_worker_generate_endpoint_is_running_and_the_one_named_model_is_taken():
    text = ('dynamo_component_inflight_requests{dynamo_component="backend",dynamo_endpoint="generate",'
            'dynamo_namespace="dynamo"} 4\n'
            'dynamo_component_inflight_requests{dynamo_component="backend",dynamo_endpoint="clear_kv_blocks",'
            'dynamo_namespace="dynamo"} 1\n'
            'dynamo_component_kvstats_gpu_cache_usage_percent{dynamo_component="backend",dynamo_namespace="dynamo"} 0.3\n'
            'dynamo_component_requests_total{dynamo_endpoint="generate",model="Qwen/Qwen3-0.6B"} 12\n')
    server, got, ext = extract_text(text)
    assert server == "dynamo"
    assert got == {"Qwen/Qwen3-0.6B": (None, 4, pytest.approx(0.3))}
    assert not any("model" in w for w in ext.warnings)


def test_dynamo_worker_without_any_model_name_is_empty_with_a_warning():
    text = 'dynamo_component_inflight_requests{dynamo_endpoint="generate"} 4\n'
    _server, got, ext = extract_text(text)
    assert got == {"": (None, 4, None)}
    assert "no model label: model is empty" in ext.warnings


def test_dynamo_worker_re_exporting_vllm_is_read_as_vllm():
    text = ('dynamo_component_inflight_requests{dynamo_endpoint="generate"} 4\n'
            'dynamo_component_kvstats_gpu_cache_usage_percent{dynamo_component="backend"} 0.3\n'
            'vllm:num_requests_waiting{model_name="m"} 1\nvllm:num_requests_running{model_name="m"} 4\n'
            'vllm:kv_cache_usage_perc{model_name="m"} 0.3\n')
    assert extract_text(text)[:2] == ("vllm", {"m": (1, 4, pytest.approx(0.3))})


TRT_BLOCKS = ('{family}{{kv_cache_block_type="used",model="t",version="1"}} 300\n'
              '{family}{{kv_cache_block_type="max",model="t",version="1"}} 1200\n'
              '{family}{{kv_cache_block_type="free",model="t",version="1"}} 900\n')


def test_trtllm_before_v0_18_kv_is_used_over_max_and_there_is_no_queue():
    text = ('nv_trt_llm_request_metrics{model="t",request_type="scheduled",version="1"} 3\n'
            'nv_trt_llm_request_metrics{model="t",request_type="active",version="1"} 5\n'
            'nv_inference_pending_request_count{model="t",version="1"} 0\n'
            + TRT_BLOCKS.format(family="nv_trt_llm_kv_cache_block_metrics"))
    assert extract_text(text)[:2] == ("trtllm", {"t": (None, 3, pytest.approx(0.25))})


def test_trtllm_before_v0_7_reads_the_statistics_families():
    text = ('nv_trt_llm_request_statistics{model="t",request_type="scheduled",version="1"} 2\n'
            + TRT_BLOCKS.format(family="nv_trt_llm_kv_cache_block_statistics"))
    assert extract_text(text)[:2] == ("trtllm", {"t": (None, 2, pytest.approx(0.25))})


def test_trtllm_zero_max_blocks_gives_no_ratio():
    text = ('nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="t"} 0\n'
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="t"} 0\n'
            'nv_trt_llm_request_metrics{model="t",request_type="scheduled"} 1\n')
    assert extract_text(text)[1] == {"t": (None, 1, None)}


def test_ray_serve_same_deployment_name_in_two_applications_stays_apart():
    text = ('ray_serve_deployment_queued_queries{application="a",deployment="LLMServer",handle="h"} 2\n'
            'ray_serve_deployment_queued_queries{application="b",deployment="LLMServer",handle="h"} 5\n')
    assert extract_text(text)[1] == {"a/LLMServer": (2, None, None), "b/LLMServer": (5, None, None)}


def test_ray_serve_without_application_label_keys_by_deployment():
    assert extract_text('ray_serve_deployment_queued_queries{deployment="D"} 2\n')[1] == {"D": (2, None, None)}


def test_detection_parts_nim_from_vllm_and_trtllm_from_triton():
    assert adapters.detect(["num_requests_waiting", "gpu_cache_usage_perc"]).server == "nim"
    assert adapters.detect(["vllm:num_requests_waiting"]).server == "vllm"
    assert adapters.detect(["nv_inference_pending_request_count", "nv_trt_llm_request_metrics"]).server == "trtllm"
    assert adapters.detect(["nv_inference_pending_request_count"]).server == "triton"
    assert adapters.detect(["num_requests_waiting", "npu_cache_usage_perc"]).server == "mindie"
    assert adapters.detect(["ray_serve_deployment_queued_queries"]).server == "ray-serve"


def test_series_differing_in_an_unknown_label_are_summed_with_a_warning():
    text = 'tgi_queue_size{shard="0"} 1\ntgi_queue_size{shard="1"} 2\n'
    _server, got, ext = extract_text(text)
    assert got == {"": (3, None, None)}
    assert "series differ in shard: queue_depth summed" in ext.warnings


# --- values checked like pushed ones ---

@pytest.mark.parametrize("text, reason", [
    ('vllm:num_requests_waiting{model_name="m"} -5\n', "negative"),
    ('vllm:num_requests_waiting{model_name="m"} 1e300\n', "too_large"),
    ('vllm:num_requests_waiting{model_name="m"} +Inf\n', "not_finite"),
])
def test_out_of_range_count_is_dropped_and_counted(text, reason):
    _server, got, ext = extract_text(text + 'vllm:num_requests_running{model_name="m"} 2\n', "vllm")
    assert got == {"m": (None, 2, None)}
    assert ext.dropped == ((reason, 1),)
    assert any(w.startswith("queue_depth") and w.endswith("dropped") for w in ext.warnings)


def test_push_bound_is_the_scrape_bound():
    from gpulse.workloads import push
    assert adapters.check("queue_depth", push.MAX_VALUE) == (push.MAX_VALUE, "")
    assert adapters.check("queue_depth", push.MAX_VALUE * 1.5) == (None, "too_large")


def test_kv_ratio_out_of_range_is_dropped_float_noise_is_clamped():
    _server, got, ext = extract_text('vllm:kv_cache_usage_perc{model_name="m"} 7.5\n')
    assert got == {"m": (None, None, None)} and ext.dropped == (("too_large", 1),)
    assert "kv_cache_usage 7.5 out of range (too_large) for model m: dropped" in ext.warnings
    assert extract_text('vllm:kv_cache_usage_perc{model_name="m"} 1.0000001\n')[1] == {"m": (None, None, 1.0)}
    assert adapters.check("kv_cache_usage", -0.1) == (None, "negative")


def test_one_bad_engine_drops_the_models_value_not_a_partial_sum():
    text = ('vllm:num_requests_waiting{engine="0",model_name="m"} 3\n'
            'vllm:num_requests_waiting{engine="1",model_name="m"} -1\n'
            'vllm:num_requests_waiting{engine="0",model_name="n"} 4\n')
    _server, got, ext = extract_text(text)
    assert got == {"m": (None, None, None), "n": (4, None, None)}
    assert ext.dropped == (("negative", 1),)


def test_a_sum_past_the_bound_is_dropped():
    text = ('vllm:num_requests_waiting{engine="0",model_name="m"} 9e11\n'
            'vllm:num_requests_waiting{engine="1",model_name="m"} 9e11\n')
    _server, got, ext = extract_text(text)
    assert got == {"m": (None, None, None)} and ext.dropped == (("too_large", 1),)


def test_warnings_are_bounded():
    text = "".join(f'vllm:num_requests_waiting{{model_name="m{i}"}} -1\n' for i in range(100))
    ext = extract_text(text)[2]
    assert len(ext.warnings) == adapters.MAX_WARNINGS and ext.dropped == (("negative", 100),)


def test_sglang_first_release_names_and_name_label():
    # SGLang 0.3.x (its first Prometheus metrics) named the model in `name`
    text = ('sglang:num_requests_waiting{name="/models/llama-3.2-3b"} 4\n'
            'sglang:num_requests_running{name="/models/llama-3.2-3b"} 9\n'
            'sglang:token_usage{name="/models/llama-3.2-3b"} 0.25\n')
    assert extract_text(text)[:2] == ("sglang", {"/models/llama-3.2-3b": (4, 9, 0.25)})


def test_sglang_pipeline_and_expert_ranks_count_once_gateway_workers_add_up():
    text = "".join(f'sglang_num_queue_reqs{{model_name="m",moe_ep_rank="{ep}",pp_rank="{pp}",tp_rank="0",'
                   f'worker_addr="grpc://10.0.0.{w}:8001"}} {3 + w}\n'
                   for w in range(2) for pp in range(2) for ep in range(4))
    server, got, _ext = extract_text(text)
    assert (server, got) == ("sglang", {"m": (7, None, None)})  # 3 + 4, each worker once


def test_vllm_behind_triton_is_keyed_by_model_and_versions_add_up():
    # Triton's vLLM backend re-labels vLLM's gauges with Triton's model/version
    text = ('nv_inference_pending_request_count{model="vllm_model",version="1"} 0\n'
            'vllm:num_requests_waiting{model="vllm_model",version="1"} 2\n'
            'vllm:num_requests_waiting{model="vllm_model",version="2"} 1\n'
            'vllm:num_requests_running{model="vllm_model",version="1"} 5\n'
            'vllm:gpu_cache_usage_perc{model="vllm_model",version="1"} 0.5\n')
    assert extract_text(text)[:2] == ("vllm", {"vllm_model": (3, 5, 0.5)})


def test_dynamo_active_requests_stand_in_for_inflight():
    text = ('dynamo_frontend_active_requests{model="q"} 12\ndynamo_frontend_queued_requests{model="q"} 5\n')
    assert extract_text(text)[1] == {"q": (5, 7, None)}


def test_sglang_gateway_relaying_worker_gauges_reads_the_engines_not_its_in_flight():
    # a model gateway in front of two workers: its own in-flight count per worker includes
    # the requests waiting in the engines, so the relayed engine gauges come first
    text = ('smg_http_requests_total{method="POST",path="/v1/chat/completions"} 40\n'
            'smg_worker_requests_active{worker="http://10.0.0.1:30000"} 9\n'
            'smg_worker_requests_active{worker="http://10.0.0.2:30000"} 4\n')
    for i, (q, r, kv) in enumerate(((5, 4, 0.5), (1, 3, 0.25))):
        for tp in range(2):
            labels = f'model_name="m",tp_rank="{tp}",worker_addr="grpc://10.0.0.{i + 1}:8001"'
            text += (f'sglang_num_queue_reqs{{{labels}}} {q}\nsglang_num_running_reqs{{{labels}}} {r}\n'
                     f'sglang_token_usage{{{labels}}} {kv}\n')
    assert extract_text(text)[:2] == ("sglang-router", {"m": (6, 7, 0.5)})


def test_sglang_gateway_without_relayed_gauges_reads_its_in_flight():
    text = ('smg_http_requests_total{method="POST",path="/generate"} 3\n'
            'smg_worker_requests_active{worker="http://10.0.0.1:30000"} 2\n'
            'smg_worker_requests_active{worker="http://10.0.0.2:30000"} 1\n')
    assert extract_text(text)[:2] == ("sglang-router", {"": (None, 3, None)})


def test_sglang_engine_with_underscore_names_stays_sglang():
    text = ('sglang_num_queue_reqs{model_name="m",tp_rank="0"} 2\nsglang_num_running_reqs{model_name="m",tp_rank="0"} 5\n'
            'sglang_token_usage{model_name="m",tp_rank="0"} 0.1\n')
    assert extract_text(text)[:2] == ("sglang", {"m": (2, 5, 0.1)})


def test_ray_serve_process_labels_add_up_without_warnings():
    # Ray exports each worker process's series with its own process labels (Ray 2.0 had no
    # application label): two replicas of one deployment, two handles queueing for it
    lab = 'Component="core_worker",NodeAddress="10.47.123.4",Version="2.0.0",deployment="BoostingModel"'
    text = (f'ray_serve_deployment_queued_queries{{{lab},WorkerId="a1"}} 2\n'
            f'ray_serve_deployment_queued_queries{{{lab},WorkerId="b2"}} 3\n'
            f'ray_serve_replica_processing_queries{{{lab},WorkerId="c3",replica="BoostingModel#x"}} 4\n'
            f'ray_serve_replica_processing_queries{{{lab},WorkerId="d4",replica="BoostingModel#y"}} 1\n')
    server, got, ext = extract_text(text)
    assert (server, got, ext.warnings) == ("ray-serve", {"BoostingModel": (5, 5, None)}, ())
