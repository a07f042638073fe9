"""What an inference server's own /metrics says about its start: model ready, requests served.

One rule per server (the adapters' `server` names), as data:

  requests     counter families of finished requests, in order of preference: the pod's
               requests served are the sum over every series of the first one present
  ready_gauge  a gauge the server sets to 1 when it serves (ready when any series is >= 1);
               where the body lacks it, the model-label rule below applies
  answer_ready the server answers HTTP only once its model is loaded, and names no model:
               the first successful scrape is the ready signal
  otherwise    ready when a sample of the server's own families carries a model label
               (the adapter's model_labels): per-model series exist once a model is loaded

Facts behind the rows:
- vLLM: `vllm serve` builds the engine (weights, KV cache) before it serves HTTP
  (vllm/entrypoints/openai/api_server.py, run_server: build_async_engine_client, then
  serve_http); the port is bound early but not served, so a scrape is refused until the
  model is loaded. Its gauges carry model_name. Finished requests:
  vllm:request_success_total{finished_reason}.
- TGI: the launcher starts the shards and waits for them before spawn_webserver
  (launcher/src/main.rs); the router serves /metrics with no model label. Finished
  requests: tgi_request_success.
- Triton, and Triton with the TensorRT-LLM backend: metrics on their own port (8002 by
  default), per-model families (`model` label) once a model is loaded; the server's
  readiness is GET /v2/health/ready on the HTTP port (8000) ("ready when all models that
  are loaded at startup are ready"). Finished requests: nv_inference_request_success.
- trtllm-serve: trtllm_request_success_total{model_name, finished_reason}.
- SGLang: sglang:num_requests_total{model_name} ("Number of requests processed").
- Dynamo frontend: dynamo_frontend_requests_total{model}.
- Ray Serve: ray_serve_deployment_replica_healthy (1 healthy, 0 unhealthy) and
  ray_serve_deployment_request_counter_total per replica (`_total` added by newer Ray
  exporters; older ones drop it).
- Ray Serve LLM: vLLM's request counter re-exported as ray_vllm:request_success_total, and
  Ray Serve's replica health gauge.
- SGLang router: a router with no model of its own; requests it has forwarded:
  sgl_router_processed_requests_total{worker}.
- llama.cpp server and text-embeddings-inference name no model; both load the model
  before they serve (llama.cpp answers 503 "Loading model" meanwhile; TEI starts its HTTP
  router after the model backend is ready), so a successful scrape is the ready signal.
  TEI finished requests: te_request_success.
- NIM for LLMs and MindIE: request_success_total{model_name} (MindIE's service metrics
  page; NIM re-exports vLLM's families without the prefix). LMDeploy: the model-label rule.
Servers with a health endpoint of their own (vLLM, TGI, SGLang and trtllm-serve /health,
Triton /v2/health/ready) can be probed instead with the gpulse.dev/ready-path annotation
(gpulse.workloads.readyprobe).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .adapters import ServerAdapter
    from .exposition import Sample


@dataclass(frozen=True)
class SignalRule:
    requests: tuple[str, ...] = ()
    ready_gauge: str = ""
    answer_ready: bool = False


RULES: dict[str, SignalRule] = {
    "vllm": SignalRule(requests=("vllm:request_success_total",)),
    "tgi": SignalRule(requests=("tgi_request_success", "tgi_request_count"), answer_ready=True),
    "triton": SignalRule(requests=("nv_inference_request_success",)),
    "trtllm": SignalRule(requests=("nv_inference_request_success",)),
    "trtllm-serve": SignalRule(requests=("trtllm_request_success_total",)),
    "sglang": SignalRule(requests=("sglang:num_requests_total",)),
    "dynamo": SignalRule(requests=("dynamo_frontend_requests_total",)),
    "ray-serve": SignalRule(requests=("ray_serve_deployment_request_counter_total",
                                      "ray_serve_deployment_request_counter"),
                            ready_gauge="ray_serve_deployment_replica_healthy"),
    "ray-serve-llm": SignalRule(requests=("ray_vllm:request_success_total", "ray_vllm_request_success_total"),
                                ready_gauge="ray_serve_deployment_replica_healthy"),
    "sglang-router": SignalRule(requests=("sgl_router_processed_requests_total",), answer_ready=True),
    "lmdeploy": SignalRule(),
    "llamacpp": SignalRule(answer_ready=True),
    "tei": SignalRule(requests=("te_request_success",), answer_ready=True),
    "nim": SignalRule(requests=("request_success_total",)),
    "mindie": SignalRule(requests=("request_success_total",)),
}
METRICS: frozenset[str] = frozenset(
    name for rule in RULES.values() for name in (*rule.requests, rule.ready_gauge) if name)


@dataclass(frozen=True, slots=True)
class StartSignals:
    ready: bool  # the server says its model is loaded
    requests: Optional[float] = None  # requests served since the server process started; None: not reported


@functools.lru_cache(maxsize=64)  # one entry per adapter: the servers' table is fixed
def _rule(adapter: ServerAdapter) -> tuple[SignalRule, frozenset[str], frozenset[str]]:
    """(the server's rule, its own families, its model labels): once per adapter, not per scrape."""
    rule = RULES.get(adapter.server, SignalRule())
    return rule, adapter.metrics() | frozenset(rule.requests), frozenset(adapter.model_labels)


def extract(adapter: ServerAdapter, samples: Iterable[Sample]) -> StartSignals:
    """The start signals in one parsed scrape body of `adapter`'s server."""
    rule, own, model_labels = _rule(adapter)
    counters: dict[str, float] = {}
    gauge: Optional[bool] = None
    labelled = False
    for name, labels, value, _ts in samples:
        if not math.isfinite(value):
            continue
        if name in rule.requests:
            counters[name] = counters.get(name, 0.0) + value
        if rule.ready_gauge and name == rule.ready_gauge:
            gauge = bool(gauge) or value >= 1
        if not labelled and name in own and any(k in model_labels and v for k, v in labels):
            labelled = True
    requests = next((counters[n] for n in rule.requests if n in counters), None)
    if rule.answer_ready:
        ready = True
    elif gauge is not None:
        ready = gauge
    else:
        ready = labelled
    return StartSignals(ready, requests)
