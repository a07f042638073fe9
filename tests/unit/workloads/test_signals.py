"""Start signals from each server's own exposition: model ready, requests served."""

from __future__ import annotations

import os

import pytest
from gpulse.workloads import adapters, exposition, signals
from gpulse.workloads.scrape import WANTED

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "servers")

# fixture -> (ready, requests served): the sums of the request counters in the file.
EXPECTED = {
    "vllm.txt": (True, 1568.0),
    "vllm-legacy.txt": (True, None),  # no request counter in that body
    "tgi.txt": (True, 9300.0),  # answers only once loaded: the scrape itself is the signal
    "triton.txt": (True, 27330.0),
    "trtllm.txt": (True, 4410.0),
    "trtllm-serve.txt": (True, None),
    "sglang.txt": (True, None),
    "dynamo.txt": (True, 880.0),
    "ray-serve.txt": (True, None),
}


def _parse(text):
    samples, _ = exposition.parse(text, WANTED)
    return samples


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_bodies(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        samples = _parse(fh.read())
    adapter = adapters.detect(s[0] for s in samples)
    got = signals.extract(adapter, samples)
    assert (got.ready, got.requests) == EXPECTED[name]


def test_every_server_has_a_rule_and_the_scrape_keeps_its_families():
    assert set(signals.RULES) == set(adapters.BY_SERVER)
    assert signals.METRICS <= WANTED


def test_triton_is_ready_once_a_model_is_loaded():
    """Triton's server-wide families answer before any model is loaded (explicit model
    control); per-model families appear with the model."""
    loading = "nv_gpu_utilization{gpu_uuid=\"GPU-1\"} 0.1\nnv_inference_pending_request_count{model=\"\"} 0\n"
    loaded = loading + 'nv_inference_pending_request_count{model="llama",version="1"} 0\n' \
                       'nv_inference_request_success{model="llama",version="1"} 0\n'
    triton = adapters.BY_SERVER["triton"]
    assert signals.extract(triton, _parse(loading)) == signals.StartSignals(False, None)
    assert signals.extract(triton, _parse(loaded)) == signals.StartSignals(True, 0.0)


def test_ray_serve_replica_health_gauge_decides_when_present():
    ray = adapters.BY_SERVER["ray-serve"]
    base = 'ray_serve_deployment_queued_queries{deployment="LLM",application="app"} 0\n'
    assert signals.extract(ray, _parse(base)).ready  # no gauge: the deployment label
    unhealthy = base + 'ray_serve_deployment_replica_healthy{deployment="LLM",replica="r1"} 0\n'
    assert not signals.extract(ray, _parse(unhealthy)).ready
    healthy = unhealthy + 'ray_serve_deployment_replica_healthy{deployment="LLM",replica="r2"} 1\n' \
                          'ray_serve_deployment_request_counter_total{deployment="LLM",replica="r2"} 3\n' \
                          'ray_serve_deployment_request_counter_total{deployment="LLM",replica="r1"} 4\n'
    assert signals.extract(ray, _parse(healthy)) == signals.StartSignals(True, 7.0)


def test_the_preferred_counter_wins_and_nan_is_ignored():
    tgi = adapters.BY_SERVER["tgi"]
    assert signals.extract(tgi, _parse("tgi_request_count 10\n")).requests == 10.0
    assert signals.extract(tgi, _parse("tgi_request_count 10\ntgi_request_success 7\n")).requests == 7.0
    vllm = adapters.BY_SERVER["vllm"]
    assert signals.extract(vllm, _parse("vllm:request_success_total{model_name=\"m\"} NaN\n")) == \
        signals.StartSignals(False, None)  # dropped at parse: nothing labelled is left
