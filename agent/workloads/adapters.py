"""Inference-server adapters, as data: each server's metric names -> one vocabulary.

Adding a server is adding a `ServerAdapter` to ADAPTERS. For each signal an adapter lists
`Source`s in order of preference (the first whose metric is present wins, e.g. vLLM's
current KV-cache name before its pre-0.9 one). Names and types are the servers' own, as
their documentation and the expositions in tests/fixtures/ show:

  queue_depth       requests waiting for the server (the HPA signal)
  running_requests  requests being processed (the batch)
  kv_cache_usage    fraction of the KV cache in use, 0-1

Several series of one model (vLLM `engine`, Triton `version`, Ray `handle`, SGLang
`tp_rank`...) are folded: counts are summed; the KV ratio takes the maximum, because the
fullest cache is the one that preempts the next request. Every source has a `scale` for
servers that report percent (0-100); all servers listed here document 0-1 even where the
name says "perc".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..snapshot import WorkloadState

if TYPE_CHECKING:
    from .exposition import LabelPairs, Sample

SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")


@dataclass(frozen=True)
class Source:
    metric: str
    match: LabelPairs = ()  # (label, value) pairs a sample must carry, e.g. request_type=waiting
    scale: float = 1.0  # multiply into the gpulse unit (0.01 for a percent KV cache)


@dataclass(frozen=True)
class ServerAdapter:
    server: str  # the `server` label value and the gpulse.dev/server annotation value
    queue_depth: tuple[Source, ...] = ()
    running_requests: tuple[Source, ...] = ()
    kv_cache_usage: tuple[Source, ...] = ()
    model_labels: tuple[str, ...] = ()  # first label present on a sample names its model

    def sources(self, signal: str) -> tuple[Source, ...]:
        """The sources of one of SIGNALS, in order of preference."""
        found: tuple[Source, ...] = getattr(self, signal)
        return found

    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for sig in SIGNALS for s in self.sources(sig))


def _s(metric: str, scale: float = 1.0, **match: str) -> Source:
    return Source(metric, tuple(sorted(match.items())), scale)


ADAPTERS: tuple[ServerAdapter, ...] = (
    ServerAdapter(
        "vllm",
        queue_depth=(_s("vllm:num_requests_waiting"),),
        running_requests=(_s("vllm:num_requests_running"),),
        # vllm:gpu_cache_usage_perc was renamed in 0.9; both are 0-1 despite "perc"
        kv_cache_usage=(_s("vllm:kv_cache_usage_perc"), _s("vllm:gpu_cache_usage_perc")),
        model_labels=("model_name",),
    ),
    ServerAdapter(
        "tgi",
        queue_depth=(_s("tgi_queue_size"),),
        running_requests=(_s("tgi_batch_current_size"),),
    ),
    ServerAdapter(
        "triton",
        # "pending request count and queue size can be used interchangeably" (Triton docs)
        queue_depth=(_s("nv_inference_pending_request_count"),),
        model_labels=("model",),
    ),
    ServerAdapter(
        "trtllm",  # Triton with the TensorRT-LLM backend
        queue_depth=(_s("nv_trt_llm_request_metrics", request_type="waiting"),),
        running_requests=(_s("nv_trt_llm_request_metrics", request_type="scheduled"),),
        kv_cache_usage=(_s("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="fraction"),),
        model_labels=("model",),
    ),
    ServerAdapter(
        "trtllm-serve",
        queue_depth=(_s("trtllm_num_requests_waiting"),),
        running_requests=(_s("trtllm_num_requests_running"),),
        kv_cache_usage=(_s("trtllm_kv_cache_utilization"),),
        model_labels=("model_name", "model"),
    ),
    ServerAdapter(
        "sglang",
        queue_depth=(_s("sglang:num_queue_reqs"),),
        running_requests=(_s("sglang:num_running_reqs"),),
        kv_cache_usage=(_s("sglang:token_usage"),),
        model_labels=("model_name",),
    ),
    ServerAdapter(
        "dynamo",
        queue_depth=(_s("dynamo_frontend_queued_requests"),),
        running_requests=(_s("dynamo_frontend_inflight_requests"),),
        kv_cache_usage=(_s("dynamo_component_kvstats_gpu_cache_usage_percent"),),  # 0-1
        model_labels=("model",),
    ),
    ServerAdapter(
        "ray-serve",
        queue_depth=(_s("ray_serve_deployment_queued_queries"),),
        running_requests=(_s("ray_serve_replica_processing_queries"),),
        model_labels=("deployment",),
    ),
)

BY_SERVER = {a.server: a for a in ADAPTERS}
assert len(BY_SERVER) == len(ADAPTERS), "duplicate server in ADAPTERS"
ALL_METRICS: frozenset[str] = frozenset().union(*(a.metrics() for a in ADAPTERS))


def detect(names: Iterable[str]) -> Optional[ServerAdapter]:
    """The adapter whose metrics are most present in `names`; ties go to table order.

    Counting hits, not taking the first hit, keeps Triton+TensorRT-LLM (which also has
    Triton's pending count) on "trtllm" and a Dynamo worker that re-exports vLLM on "vllm".
    """
    present = set(names)
    best: Optional[ServerAdapter] = None
    best_hits = 0
    for adapter in ADAPTERS:
        hits = len(adapter.metrics() & present)
        if hits > best_hits:
            best, best_hits = adapter, hits
    return best


def _model_of(labels: LabelPairs, model_labels: Sequence[str]) -> str:
    for wanted in model_labels:
        for k, v in labels:
            if k == wanted:
                return v
    return ""


def _matches(labels: LabelPairs, match: LabelPairs) -> bool:
    return all(pair in labels for pair in match)


# A server names its models (LoRA adapters too): bound the series one endpoint can add.
MAX_MODELS_PER_ENDPOINT = 32
OTHER_MODELS = "_other"


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
            if signal == "kv_cache_usage":
                other[signal] = max(other.get(signal, value), value)
            else:
                other[signal] = other.get(signal, 0.0) + value
    kept[OTHER_MODELS] = other
    return kept


def extract(adapter: ServerAdapter, samples: Iterable[Sample], namespace: str, pod: str,
            duration: Optional[float] = None) -> tuple[WorkloadState, ...]:
    """Parsed samples of one endpoint -> one WorkloadState per model (at least one)."""
    by_metric: dict[str, list[tuple[LabelPairs, float]]] = {}
    for name, labels, value, _ts in samples:
        if math.isfinite(value):
            by_metric.setdefault(name, []).append((labels, value))
    per_model: dict[str, dict[str, float]] = {}
    for signal in SIGNALS:
        for source in adapter.sources(signal):
            rows = [(lab, v) for lab, v in by_metric.get(source.metric, ()) if _matches(lab, source.match)]
            if not rows:
                continue
            for labels, value in rows:
                model = _model_of(labels, adapter.model_labels)
                slot = per_model.setdefault(model, {})
                value *= source.scale
                if signal == "kv_cache_usage":
                    slot[signal] = max(slot.get(signal, value), value)
                else:
                    slot[signal] = slot.get(signal, 0.0) + value
            break  # first present source wins
    if "" in per_model and len(per_model) == 2:
        # a server-wide value (e.g. Dynamo's KV stats have no model label) belongs to the
        # one model the server names
        shared = per_model.pop("")
        only = next(iter(per_model.values()))
        for signal, value in shared.items():
            only.setdefault(signal, value)
    if not per_model:
        per_model[""] = {}
    per_model = _cap_models(per_model)
    return tuple(WorkloadState(namespace=namespace, pod=pod, server=adapter.server, model=model,
                               scrape_up=True, scrape_duration_seconds=duration, **values)
                 for model, values in sorted(per_model.items()))
