"""Inference-server adapters, as data: each server's metric names -> one vocabulary.

  queue_depth       requests waiting for the engine, not yet running (the HPA signal)
  running_requests  requests in the running batch
  kv_cache_usage    fraction of the KV cache in use, 0-1

The reference vocabulary is the Gateway API Inference Extension's model-server protocol
(kubernetes-sigs/gateway-api-inference-extension, docs/proposals/003-model-server-protocol):
TotalQueuedRequests, TotalRunningRequests and KVCacheUtilization, named there as
vllm:num_requests_waiting / vllm:num_requests_running / vllm:kv_cache_usage_perc,
nv_trt_llm_request_metrics{request_type="waiting"|"scheduled"} /
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"} (Triton + TensorRT-LLM),
sglang:num_queue_reqs / sglang:num_running_reqs / sglang:token_usage. The other servers'
names map onto the same three meanings.

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

Values are checked as pushed ones are (gpulse.workloads.push): counts finite, 0 to
push.MAX_VALUE; the KV ratio 0 to 1 (within KV_EPSILON, clamped). A series out of range is
dropped and counted by reason (gpulse_workload_samples_dropped_total), and its model's value
for that signal is not reported: a partial sum would under-report.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..snapshot import WorkloadState
from .push import MAX_VALUE

if TYPE_CHECKING:
    from .exposition import LabelPairs, Sample

SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")
KV_SIGNAL = "kv_cache_usage"
KV_EPSILON = 1e-6  # a ratio of 1.0000001 is float noise, clamped to 1
# Why a sample was dropped (the `reason` label of gpulse_workload_samples_dropped_total).
DROP_REASONS = ("not_finite", "negative", "too_large")


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


# Per adapter, per signal: the family sets of its sources (a source needs all of its families).
_SIGNAL_FAMILIES = {a.server: tuple(tuple(frozenset(s.families()) for s in a.sources(sig)) for sig in SIGNALS)
                    for a in ADAPTERS}
_WANTED = {a.server: a.wanted() for a in ADAPTERS}
# An endpoint shows the same families scrape after scrape: detection is remembered per set.
DETECT_CACHE_SIZE = 512


def _resolvable(adapter: ServerAdapter, present: frozenset[str]) -> int:
    return sum(1 for sources in _SIGNAL_FAMILIES[adapter.server]
               if any(families <= present for families in sources))


def detect(names: Iterable[str]) -> Optional[ServerAdapter]:
    """The adapter that can fill the most signals from the families in `names`; ties go to
    the one with more of its families (markers included) present, then to table order.

    So Triton + TensorRT-LLM (which also has Triton's pending count) is "trtllm", a Dynamo
    worker that re-exports vLLM's gauges is "vllm", Ray Serve LLM (ray_serve_* too) is
    "ray-serve-llm", and NIM and MindIE (the same unprefixed counts) part on their KV gauge
    and markers. None when no signal family is present.
    """
    return _detect(frozenset(names) & ALL_METRICS)


@functools.lru_cache(maxsize=DETECT_CACHE_SIZE)
def _detect(present: frozenset[str]) -> Optional[ServerAdapter]:
    best: Optional[ServerAdapter] = None
    best_score = (0, 0)
    for adapter in ADAPTERS:
        signals = _resolvable(adapter, present)
        if not signals:
            continue
        score = (signals, len(_WANTED[adapter.server] & present))
        if score > best_score:
            best, best_score = adapter, score
    return best


def _model_of(labels: LabelPairs, model_labels: Sequence[str]) -> str:
    for wanted in model_labels:
        if "/" in wanted:
            parts = [next((v for k, v in labels if k == part), None) for part in wanted.split("/")]
            if all(p is not None for p in parts):
                return "/".join(p for p in parts if p is not None)
            continue
        for k, v in labels:
            if k == wanted:
                return v
    return ""


def _matches(labels: LabelPairs, match: LabelPairs) -> bool:
    return all(pair in labels for pair in match)


def _without(labels: LabelPairs, drop: Iterable[str]) -> LabelPairs:
    gone = frozenset(drop)
    return tuple(pair for pair in labels if pair[0] not in gone)


# A server names its models (LoRA adapters too): bound the series one endpoint can add.
MAX_MODELS_PER_ENDPOINT = 32
OTHER_MODELS = "_other"
MAX_WARNINGS = 16  # per scrape: a body with a thousand bad series gives a bounded list


def _cap_models(per_model: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Past the cap, the rest of the models fold into one `_other` state; sums (queue,
    running) stay exact for the pod, the KV ratio is the fullest cache."""
    if len(per_model) <= MAX_MODELS_PER_ENDPOINT:
        return per_model
    names = sorted(per_model)
    kept = {m: per_model[m] for m in names[:MAX_MODELS_PER_ENDPOINT - 1]}
    other: dict[str, float] = {}
    for m in names[MAX_MODELS_PER_ENDPOINT - 1:]:
        for signal, value in per_model[m].items():
            if signal == KV_SIGNAL:
                other[signal] = max(other.get(signal, value), value)
            else:
                other[signal] = other.get(signal, 0.0) + value
    kept[OTHER_MODELS] = other
    return kept


def check(signal: str, value: float) -> tuple[Optional[float], str]:
    """-> (value to export or None, drop reason or ""): counts finite and 0 to
    push.MAX_VALUE, the KV ratio 0 to 1 (float noise within KV_EPSILON clamped)."""
    if not math.isfinite(value):
        return None, "not_finite"
    top = 1.0 if signal == KV_SIGNAL else MAX_VALUE
    if signal == KV_SIGNAL and -KV_EPSILON <= value <= 1.0 + KV_EPSILON:
        return min(1.0, max(0.0, value)), ""
    if value < 0:
        return None, "negative"
    if value > top:
        return None, "too_large"
    return value, ""


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _span(values: Sequence[str]) -> str:
    """'0..7' for consecutive integers, else a short comma list."""
    try:
        ints = sorted(int(v) for v in values)
    except ValueError:
        ints = []
    if ints and len(ints) == len(values) and ints == list(range(ints[0], ints[0] + len(ints))) and len(ints) > 2:
        return f"{ints[0]}..{ints[-1]}"
    shown = sorted(values)[:4]
    return ",".join(shown) + (",..." if len(values) > 4 else "")


@dataclass(frozen=True)
class Extraction:
    """What one scrape body gives: one state per model (at least one), warnings for a person
    (short lines, `gpulse probe` prints them), and dropped samples as (reason, count)."""
    states: tuple[WorkloadState, ...]
    warnings: tuple[str, ...] = ()
    dropped: tuple[tuple[str, int], ...] = ()


def _source_rows(source: Source, by_metric: dict[str, list[tuple[LabelPairs, float]]],
                 warn: list[str]) -> list[tuple[LabelPairs, float]]:
    rows = [(lab, v) for lab, v in by_metric.get(source.metric, ()) if _matches(lab, source.match)]
    if not rows:
        return []
    if source.per:
        # used / max of the same series: key by the labels without the type label
        type_labels = [k for k, _ in source.match] + [k for k, _ in source.per]
        dens: dict[LabelPairs, float] = {}
        for lab, v in by_metric.get(source.metric, ()):
            if _matches(lab, source.per):
                key = _without(lab, type_labels)
                dens[key] = dens.get(key, 0.0) + v
        out = []
        for lab, v in rows:
            key = _without(lab, type_labels)
            den = dens.get(key)
            if den is None or not math.isfinite(den) or den <= 0 or not math.isfinite(v):
                continue
            out.append((key, v / den))
        return out
    if source.minus:
        subtrahend = {lab: v for lab, v in by_metric.get(source.minus, ())}
        out = []
        for lab, v in rows:
            sub = subtrahend.get(lab)
            if sub is None:
                continue
            diff = v - sub
            if math.isfinite(diff) and diff < 0:
                warn.append(f"{source.metric} {_fmt(v)} < {source.minus} {_fmt(sub)}: running taken as 0")
                diff = 0.0
            out.append((lab, diff))
        return out
    return rows


def extract(adapter: ServerAdapter, samples: Iterable[Sample], namespace: str, pod: str,
            duration: Optional[float] = None) -> Extraction:
    """Parsed samples of one endpoint -> one WorkloadState per model (at least one), with
    the warnings and the dropped samples of this body."""
    by_metric: dict[str, list[tuple[LabelPairs, float]]] = {}
    for name, labels, value, _ts in samples:
        by_metric.setdefault(name, []).append((labels, value))
    warnings: list[str] = []
    dropped: dict[str, int] = {}
    per_model: dict[str, dict[str, float]] = {}
    model_labels = adapter.model_labels
    drop_dup = adapter.duplicate_labels
    for signal in SIGNALS:
        rows: list[tuple[LabelPairs, float]] = []
        for source in adapter.sources(signal):
            rows = _source_rows(source, by_metric, warnings)
            if rows:
                rows = [(lab, v * source.scale) for lab, v in rows]
                break
        if not rows:
            continue
        # check every series; a model with one bad series reports nothing for this signal
        by_model: dict[str, list[tuple[LabelPairs, float]]] = {}
        bad: set[str] = set()
        for labels, value in rows:
            model = _model_of(labels, model_labels)
            checked, reason = check(signal, value)
            if checked is None:
                dropped[reason] = dropped.get(reason, 0) + 1
                bad.add(model)
                warnings.append(f"{signal} {_fmt(value)} out of range ({reason})"
                                f"{f' for model {model}' if model else ''}: dropped")
                continue
            by_model.setdefault(model, []).append((labels, checked))
        for model in bad:
            per_model.setdefault(model, {})  # the model is there; this value is not
        for model, series in by_model.items():
            if model in bad:
                continue
            folded = _fold(adapter, signal, series, drop_dup, warnings)
            if folded is None:
                per_model.setdefault(model, {})
                dropped["too_large"] = dropped.get("too_large", 0) + 1
                warnings.append(f"{signal} of {len(series)} series sums past {MAX_VALUE:g}: dropped")
                continue
            per_model.setdefault(model, {})[signal] = folded
    _name_the_model(adapter, per_model, by_metric, warnings)
    if not per_model:
        per_model[""] = {}
    per_model = _cap_models(per_model)
    states = tuple(WorkloadState(namespace=namespace, pod=pod, server=adapter.server, model=model,
                                 queue_depth=values.get("queue_depth"),
                                 running_requests=values.get("running_requests"),
                                 kv_cache_usage=values.get(KV_SIGNAL),
                                 scrape_up=True, scrape_duration_seconds=duration)
                   for model, values in sorted(per_model.items()))
    if len(warnings) > MAX_WARNINGS:
        warnings = warnings[:MAX_WARNINGS - 1] + [f"{len(warnings) - MAX_WARNINGS + 1} more warnings"]
    return Extraction(states, tuple(warnings), tuple(sorted(dropped.items())))


def _fold(adapter: ServerAdapter, signal: str, series: list[tuple[LabelPairs, float]],
          duplicate_labels: tuple[str, ...], warnings: list[str]) -> Optional[float]:
    """One model's series of one signal -> one value: duplicates once (max), the rest summed
    (the KV ratio: max). None when the sum leaves the range."""
    groups: dict[LabelPairs, list[tuple[LabelPairs, float]]] = {}
    for labels, value in series:
        groups.setdefault(_without(labels, duplicate_labels), []).append((labels, value))
    values: list[float] = []
    for rows in groups.values():
        values.append(max(v for _l, v in rows))
        if len(rows) > 1:
            for label in duplicate_labels:
                seen = [v for lab, _ in rows for k, v in lab if k == label]
                if len(seen) > 1:
                    warnings.append(f"{label} {_span(seen)} report the same {signal}: counted once")
    if len(groups) > 1:
        keys = list(groups)
        varying = sorted({k for lab in keys for k, _ in lab
                          if len({dict(other).get(k) for other in keys}) > 1})
        unknown = [k for k in varying if k not in adapter.additive_labels and k not in adapter.model_labels]
        if unknown and signal != KV_SIGNAL:
            warnings.append(f"series differ in {', '.join(unknown)}: {signal} summed")
    if signal == KV_SIGNAL:
        return max(values)
    total = math.fsum(values)
    return total if total <= MAX_VALUE else None


def _name_the_model(adapter: ServerAdapter, per_model: dict[str, dict[str, float]],
                    by_metric: dict[str, list[tuple[LabelPairs, float]]], warnings: list[str]) -> None:
    """Server-wide values (no model label) belong to the one model the body names."""
    if "" not in per_model or not adapter.model_labels:
        return
    named = [m for m in per_model if m]
    if len(named) == 1:
        # e.g. Dynamo's KV stats next to its frontend's per-model gauges
        shared = per_model.pop("")
        only = per_model[named[0]]
        for signal, value in shared.items():
            only.setdefault(signal, value)
        return
    if named:
        warnings.append("some series name no model: reported under model \"\"")
        return
    hinted = {_model_of(lab, adapter.model_labels)
              for fam in adapter.wanted() for lab, _v in by_metric.get(fam, ())}
    hinted.discard("")
    if len(hinted) == 1:
        per_model[hinted.pop()] = per_model.pop("")
    elif hinted:
        warnings.append(f"no model label on the signal series and {len(hinted)} models named: model is empty")
    else:
        warnings.append("no model label: model is empty")
