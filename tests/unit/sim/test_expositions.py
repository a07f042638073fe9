"""The simulated servers' texts: valid Prometheus text for every server, version and rank
layout, with the truth the text means, and the scenario's `version` checked at load."""

import pytest
from gpulse.sim import expositions, scenario
from gpulse.workloads import exposition

FORMATS = [(server, f.since + (f"-{v}" if v else ""), f) for server, formats in expositions.FORMATS.items()
           for f in formats for v in f.variants]
VALUES = {"queue_depth": 7.0, "running_requests": 5.0, "kv_cache_usage": 0.42}


@pytest.mark.parametrize("server,version,fmt", FORMATS, ids=[f"{s}-{v}" for s, v, _ in FORMATS])
@pytest.mark.parametrize("tp,dp", [(1, 1), (4, 2)])
def test_every_format_is_prometheus_text_with_unique_series_and_its_truth(server, version, fmt, tp, dp):
    body, truth = expositions.render(server, version, "org/m", VALUES, 30.0, tensor_parallel=tp, data_parallel=dp)
    samples, _types = exposition.parse(body.encode(), None)
    keys = [(name, labels) for name, labels, _v, _ts in samples]
    assert len(keys) == len(set(keys)), "a series appears twice"
    ((_model, values),) = truth.items()
    assert set(values) == set(fmt.signals) - ({"queue_depth"} if version.endswith("-worker") else set())
    for signal, value in values.items():
        # counts are what was asked for; the KV ratio is too, or what used/max blocks give
        assert value == pytest.approx(VALUES[signal], abs=1e-3 if signal == "kv_cache_usage" else 0)


def test_ranks_that_repeat_and_ranks_that_add_up():
    body, truth = expositions.render("sglang", "0.5.0", "m", VALUES, 0.0, tensor_parallel=4, data_parallel=2)
    queue = [v for name, labels, v, _ in exposition.parse(body.encode(), None)[0] if name == "sglang:num_queue_reqs"]
    assert len(queue) == 8 and sum(queue) == 4 * 7, "each tp rank repeats its dp rank's queue"
    assert truth == {"m": VALUES}
    body, _ = expositions.render("vllm", "0.9.2", "m", VALUES, 0.0, data_parallel=3)
    waiting = [v for name, _l, v, _ in exposition.parse(body.encode(), None)[0] if name == "vllm:num_requests_waiting"]
    assert sorted(waiting) == [2, 2, 3]


@pytest.mark.parametrize("server,version,signals", [
    ("vllm", "0.6.3", ("vllm:gpu_cache_usage_perc",)),
    ("vllm", "0.10.1", ("vllm:kv_cache_usage_perc",)),
    ("trtllm", "0.6.0", ("nv_trt_llm_request_statistics",)),
    ("trtllm", "v0.17.1", ("nv_trt_llm_request_metrics",)),
    ("dynamo", "0.4.1-worker", ("dynamo_component_inflight_requests",)),
    ("dynamo", "0.9.0-worker", ("dynamo_component_kvstats_total_blocks",)),
    ("llamacpp", "b4600", ("llamacpp:kv_cache_usage_ratio",)),
])
def test_versions_pick_their_format(server, version, signals):
    body, _ = expositions.render(server, version, "m", VALUES, 0.0)
    names = {name for name, *_ in exposition.parse(body.encode(), None)[0]}
    assert set(signals) <= names
    assert "fraction" not in body  # before v0.18 and elsewhere: no KV fraction row


@pytest.mark.parametrize("workload,needle", [
    ("{server: vllm, version: 0.1.0}", "workload.version: version '0.1.0': the simulator's oldest vllm format is 0.4.0"),
    ("{server: vllm, version: latest}", "workload.version: version 'latest': expected a release like 0.6.3"),
    ("{server: vllm, version: 0.10.0-worker}", "unknown vllm variant 'worker'"),
    ("{server: vllm, version: 0.10}", "workload.version: expected a string, got 0.1"),
    ("{server: sglang, tensor_parallel: 0}", "workload.tensor_parallel: must be 1 to 16"),
    ("{server: sglang, data_parallel: 99}", "workload.data_parallel: must be 1 to 16"),
])
def test_bad_versions_and_ranks_are_one_line_scenario_errors(tmp_path, workload, needle):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nnode: {name: n}\ngpus:\n  - model: H100-SXM5-80GB\npods:\n"
                    "  - {namespace: a, name: b, containers: [{name: c, devices: [{gpu: 0}]}],\n"
                    f"     workload: {workload}}}\n")
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(str(path))
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_builtin_scenarios_mix_server_versions():
    ref = scenario.load("reference")
    versions = {p.workload.version for p in ref.pods if p.workload}
    assert {"0.6.3", "0.9.2", ""} <= versions
    g5 = scenario.load("g5-timeslice")
    assert {(p.workload.server, p.workload.version) for p in g5.pods if p.workload.version} == \
        {("vllm", "0.6.3"), ("trtllm", "0.15.0")}
