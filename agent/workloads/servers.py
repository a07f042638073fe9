"""The inference servers gpulse reads, as data: per server, its metric names for each
signal of gpulse.workloads.adapters, in order of preference, and its label rules.

Adding a server is adding a `ServerAdapter` to ADAPTERS. Per signal an adapter lists
`Source`s in order of preference: the first that yields a value wins (vLLM's current KV name
before its pre-0.9 one, TensorRT-LLM's `fraction` row before used/max). A source is one
family with label pairs a sample must carry, a `scale` (0.01 for a percent), and optionally
a derivation: `per` divides by the same family's rows carrying other pairs (used / max
blocks), `minus` subtracts another family's series of the same labels (Dynamo: inflight -
queued).

Per server, also as data:
  model_labels      labels that name the model, in order; "a/b" joins two labels' values
                    with "/" (Ray Serve: application/deployment). No label: model "".
  duplicate_labels  series that differ only in these report the SAME value (SGLang
                    tensor-parallel ranks: every tp_rank reports the one queue): counted once
                    (the maximum), never summed.
  additive_labels   series that differ in these add up (vLLM engine, SGLang dp_rank, Triton
                    model version, Ray replica and handle): counts are summed. Series that
                    differ in a label of neither list are summed too, with a warning.
  The KV ratio of several caches is the maximum: the fullest cache preempts the next request.
  markers           other families of the server, for detection only
  model_hints       families whose model label names the model of a body whose signal
                    series carry none (Dynamo worker components)

Version and meaning facts behind the rows (sources in tests/fixtures/exposition/*/manifest.yaml):
- vLLM: vllm:gpu_cache_usage_perc renamed vllm:kv_cache_usage_perc in 0.9; both 0-1.
- Triton + TensorRT-LLM backend: request_type="waiting" and kv_cache_block_type="fraction"
  exist from v0.18 only (the backend's model.py: waiting = active - scheduled, fraction =
  used / max); before it the ratio is used / max and there is no queue; before v0.7 the
  families were nv_trt_llm_request_statistics / nv_trt_llm_kv_cache_block_statistics.
- Dynamo frontend: dynamo_frontend_inflight_requests includes the queued requests, so
  running = inflight - queued. Worker pods: dynamo_component_inflight_requests on the
  `generate` endpoint is the running count; component series carry no model label.
- Ray Serve: its dashboards group by (application, deployment); a model is
  "<application>/<deployment>" (deployment alone where a body has no application label).
  Ray Serve LLM re-exports vLLM's gauges as ray_vllm:* (ray_vllm_* where ':' is replaced).
- NIM for LLMs and MindIE: vLLM's names without a prefix, model_name label; NIM's KV gauge is
  gpu_cache_usage_perc, MindIE's npu_cache_usage_perc (both 0-1, "1 means 100 percent").
- LMDeploy lmdeploy:num_requests_waiting/_running, lmdeploy:gpu_cache_usage_perc (0-1);
  llama.cpp server llamacpp:requests_deferred (queue), llamacpp:requests_processing,
  llamacpp:kv_cache_usage_ratio; text-embeddings-inference te_queue_size,
  te_batch_current_size.
- SGLang router / model gateway: requests in flight per worker (sgl_router_running_requests,
  smg_worker_requests_active, label worker); it has no waiting-queue or KV gauge of its own.
  A gateway that relays its workers' engine gauges (sglang_* with worker_addr) is read from
  those, summed over workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .exposition import LabelPairs

SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")


@dataclass(frozen=True)
class Source:
    metric: str
    match: LabelPairs = ()  # (label, value) pairs a sample must carry, e.g. request_type=waiting
    scale: float = 1.0  # multiply into the gpulse unit (0.01 for a percent KV cache)
    per: LabelPairs = ()  # divide by the rows of `metric` carrying these pairs (used / max)
    minus: str = ""  # subtract this family's series with the same labels (inflight - queued)

    def families(self) -> tuple[str, ...]:
        return (self.metric, self.minus) if self.minus else (self.metric,)


@dataclass(frozen=True)
class ServerAdapter:
    server: str  # the `server` label value and the gpulse.dev/server annotation value
    queue_depth: tuple[Source, ...] = ()
    running_requests: tuple[Source, ...] = ()
    kv_cache_usage: tuple[Source, ...] = ()
    model_labels: tuple[str, ...] = ()  # first label present names the model; "a/b" joins two
    duplicate_labels: tuple[str, ...] = ()  # series differing only here report one value: max
    additive_labels: tuple[str, ...] = ()  # series differing here add up: sum
    markers: tuple[str, ...] = ()  # other families of this server (detection only)
    model_hints: tuple[str, ...] = ()  # families whose model label names a model-less body's model

    def sources(self, signal: str) -> tuple[Source, ...]:
        """The sources of one of SIGNALS, in order of preference."""
        found: tuple[Source, ...] = getattr(self, signal)
        return found

    def metrics(self) -> frozenset[str]:
        """The families the signals read."""
        return frozenset(f for sig in SIGNALS for s in self.sources(sig) for f in s.families())

    def wanted(self) -> frozenset[str]:
        """Every family this adapter looks at: signals, markers and model hints."""
        return self.metrics() | frozenset(self.markers) | frozenset(self.model_hints)


def _s(metric: str, scale: float = 1.0, **match: str) -> Source:
    return Source(metric, tuple(sorted(match.items())), scale)


def _ratio(metric: str, label: str, num: str, den: str) -> Source:
    return Source(metric, ((label, num),), per=((label, den),))


def _vllm_like(prefix: str) -> tuple[tuple[Source, ...], tuple[Source, ...], tuple[Source, ...]]:
    return ((_s(f"{prefix}num_requests_waiting"),), (_s(f"{prefix}num_requests_running"),),
            (_s(f"{prefix}kv_cache_usage_perc"), _s(f"{prefix}gpu_cache_usage_perc")))


_VLLM = _vllm_like("vllm:")
_RAY_COLON, _RAY_UNDERSCORE = _vllm_like("ray_vllm:"), _vllm_like("ray_vllm_")
_TRT_KV_BLOCKS = "kv_cache_block_type"
_TRITON_TRTLLM_MARKERS = ("nv_trt_llm_runtime_memory_metrics", "nv_trt_llm_inflight_batcher_metrics",
                          "nv_trt_llm_general_metrics", "nv_trt_llm_runtime_memory_statistics",
                          "nv_trt_llm_inflight_batcher_statistics", "nv_trt_llm_general_statistics")
# each handle (proxies, calling deployments) queues its own requests; each replica runs its own;
# Ray adds the reporting worker's process labels
_RAY_LABELS = ("application", "handle", "actor_id", "replica", "replica_id", "route", "WorkerId", "ReplicaId",
               "NodeAddress", "Component")
_RAY_WORKER_LABELS = ("WorkerId", "ReplicaId", "replica", "engine", "NodeAddress", "Component")

ADAPTERS: tuple[ServerAdapter, ...] = (
    ServerAdapter(
        # Triton's vLLM backend labels the same gauges model/version
        "vllm", *_VLLM, model_labels=("model_name", "model"), additive_labels=("engine", "version"),
        markers=("vllm:request_success_total", "vllm:cache_config_info"),
    ),
    ServerAdapter(
        "tgi",
        queue_depth=(_s("tgi_queue_size"),),
        running_requests=(_s("tgi_batch_current_size"),),
        markers=("tgi_batch_current_max_tokens", "tgi_request_count"),
    ),
    ServerAdapter(
        "triton",
        # "pending request count and queue size can be used interchangeably" (Triton docs)
        queue_depth=(_s("nv_inference_pending_request_count"),),
        model_labels=("model",), additive_labels=("version",),
        markers=("nv_inference_request_success",),
    ),
    ServerAdapter(
        "trtllm",  # Triton with the TensorRT-LLM backend
        # the waiting row exists from v0.18 only: before it there is no queue
        queue_depth=(_s("nv_trt_llm_request_metrics", request_type="waiting"),),
        running_requests=(_s("nv_trt_llm_request_metrics", request_type="scheduled"),
                          _s("nv_trt_llm_request_statistics", request_type="scheduled")),  # before v0.7
        kv_cache_usage=(_s("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="fraction"),  # v0.18+
                        _ratio("nv_trt_llm_kv_cache_block_metrics", _TRT_KV_BLOCKS, "used", "max"),
                        _ratio("nv_trt_llm_kv_cache_block_statistics", _TRT_KV_BLOCKS, "used", "max")),
        model_labels=("model",), additive_labels=("version",),
        markers=_TRITON_TRTLLM_MARKERS,
    ),
    ServerAdapter(
        "trtllm-serve",
        queue_depth=(_s("trtllm_num_requests_waiting"),),
        running_requests=(_s("trtllm_num_requests_running"),),
        kv_cache_usage=(_s("trtllm_kv_cache_utilization"),),
        model_labels=("model_name", "model"), additive_labels=("engine_type",),
        markers=("trtllm_request_success_total", "trtllm_kv_cache_max_blocks"),
    ),
    ServerAdapter(
        "sglang",
        # sglang_* (underscore) names: later releases as a second source, same meanings
        # sglang:num_requests_waiting/_running: the first (0.3.x) names, with a `name` label
        queue_depth=(_s("sglang:num_queue_reqs"), _s("sglang_num_queue_reqs"), _s("sglang:num_requests_waiting")),
        running_requests=(_s("sglang:num_running_reqs"), _s("sglang_num_running_reqs"),
                          _s("sglang:num_requests_running")),
        kv_cache_usage=(_s("sglang:token_usage"), _s("sglang_token_usage")),
        model_labels=("model_name", "name"),
        # every rank of one scheduler's tensor/pipeline/expert group reports its one queue;
        # data-parallel ranks and the workers behind a model gateway each have their own
        duplicate_labels=("tp_rank", "pp_rank", "moe_ep_rank"), additive_labels=("dp_rank", "worker_addr"),
        markers=("sglang:gen_throughput", "sglang:num_requests_total", "sglang_gen_throughput"),
    ),
    ServerAdapter(
        # The SGLang router / model gateway. Its own gauges count requests in flight per
        # worker (no waiting queue, no KV cache); a gateway that relays its workers' engine
        # gauges (sglang_* with worker_addr) gives their queues, batches and caches, which
        # come first: in-flight at the router includes what waits in the engine.
        "sglang-router",
        queue_depth=(_s("sglang_num_queue_reqs"),),
        running_requests=(_s("sglang_num_running_reqs"), _s("sgl_router_running_requests"),
                          _s("smg_worker_requests_active")),
        kv_cache_usage=(_s("sglang_token_usage"),),
        model_labels=("model_name",), duplicate_labels=("tp_rank", "pp_rank", "moe_ep_rank"),
        additive_labels=("worker", "worker_addr", "url", "dp_rank"),
        markers=("sgl_router_requests_total", "sgl_router_processed_requests_total",
                 "sgl_router_active_workers", "smg_http_requests_total", "smg_worker_pool_size"),
    ),
    ServerAdapter(
        "dynamo",
        queue_depth=(_s("dynamo_frontend_queued_requests"),),
        # the frontend's inflight includes its queued requests; a worker's generate endpoint
        # counts the requests it runs
        # (2026 frontends add dynamo_frontend_active_requests, the same window under a clearer name)
        running_requests=(Source("dynamo_frontend_inflight_requests", minus="dynamo_frontend_queued_requests"),
                          Source("dynamo_frontend_active_requests", minus="dynamo_frontend_queued_requests"),
                          _s("dynamo_component_inflight_requests", dynamo_endpoint="generate")),
        kv_cache_usage=(_s("dynamo_component_kvstats_gpu_cache_usage_percent"),),  # 0-1 despite the name
        model_labels=("model", "model_name"),
        additive_labels=("dynamo_component", "dynamo_namespace", "dynamo_endpoint", "worker_id", "instance_id"),
        markers=("dynamo_frontend_requests_total", "dynamo_component_requests_total",
                 "dynamo_component_kvstats_total_blocks"),
        model_hints=("dynamo_frontend_requests_total", "dynamo_component_requests_total",
                     "dynamo_frontend_model_total_kv_blocks", "dynamo_component_kvstats_active_blocks"),
    ),
    ServerAdapter(
        "ray-serve",
        queue_depth=(_s("ray_serve_deployment_queued_queries"),),
        running_requests=(_s("ray_serve_replica_processing_queries"),),
        model_labels=("application/deployment", "deployment"), additive_labels=_RAY_LABELS,
        markers=("ray_serve_num_router_requests_total", "ray_serve_deployment_request_counter_total"),
    ),
    ServerAdapter(
        "ray-serve-llm",
        queue_depth=_RAY_COLON[0] + _RAY_UNDERSCORE[0],
        running_requests=_RAY_COLON[1] + _RAY_UNDERSCORE[1],
        kv_cache_usage=_RAY_COLON[2] + _RAY_UNDERSCORE[2],
        model_labels=("model_name",), additive_labels=_RAY_WORKER_LABELS,
        markers=("ray_serve_deployment_queued_queries", "ray_serve_replica_processing_queries",
                 "ray_vllm:request_success_total", "ray_vllm_request_success_total"),
    ),
    ServerAdapter(
        "lmdeploy",
        queue_depth=(_s("lmdeploy:num_requests_waiting"),),
        running_requests=(_s("lmdeploy:num_requests_running"),),
        kv_cache_usage=(_s("lmdeploy:gpu_cache_usage_perc"),),
        model_labels=("model_name",),
    ),
    ServerAdapter(
        "llamacpp",  # llama.cpp server: deferred requests wait for a free slot
        queue_depth=(_s("llamacpp:requests_deferred"),),
        running_requests=(_s("llamacpp:requests_processing"),),
        kv_cache_usage=(_s("llamacpp:kv_cache_usage_ratio"),),
        markers=("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", "llamacpp:kv_cache_tokens"),
    ),
    ServerAdapter(
        "tei",  # Hugging Face text-embeddings-inference
        queue_depth=(_s("te_queue_size"),),
        running_requests=(_s("te_batch_current_size"),),
        markers=("te_request_count", "te_request_success"),
    ),
    ServerAdapter(
        "nim",  # NVIDIA NIM for LLMs: vLLM's names without the prefix
        *_vllm_like(""), model_labels=("model_name",),
        markers=("num_request_max",),
    ),
    ServerAdapter(
        "mindie",  # Huawei MindIE service: vLLM's names without the prefix, an NPU KV cache
        queue_depth=(_s("num_requests_waiting"),),
        running_requests=(_s("num_requests_running"),),
        kv_cache_usage=(_s("npu_cache_usage_perc"),),
        model_labels=("model_name",),
        markers=("request_received_total", "npu_cache_usage_perc"),
    ),
)

BY_SERVER = {a.server: a for a in ADAPTERS}
assert len(BY_SERVER) == len(ADAPTERS), "duplicate server in ADAPTERS"
# Every family some adapter reads, detects or takes a model from: the scrape parses only these.
ALL_METRICS: frozenset[str] = frozenset().union(*(a.wanted() for a in ADAPTERS))
