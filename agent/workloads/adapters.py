"""Inference-server adapters: each server's metric names -> one vocabulary.

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

The servers themselves are data in gpulse.workloads.servers; this module detects which one
an endpoint is and folds its series into one state per model.

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

# the table, re-exported: callers read servers through this module
from .servers import ADAPTERS as ADAPTERS
from .servers import ALL_METRICS as ALL_METRICS
from .servers import BY_SERVER as BY_SERVER
from .servers import SIGNALS as SIGNALS
from .servers import ServerAdapter as ServerAdapter
from .servers import Source as Source

if TYPE_CHECKING:
    from .exposition import LabelPairs, Sample

KV_SIGNAL = "kv_cache_usage"
KV_EPSILON = 1e-6  # a ratio of 1.0000001 is float noise, clamped to 1
# Why a sample was dropped (the `reason` label of gpulse_workload_samples_dropped_total).
DROP_REASONS = ("not_finite", "negative", "too_large")




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
MAX_MODEL_CHARS = 256  # as gpulse.workloads.push accepts a model name
MAX_WARNING_CHARS = 2 * MAX_MODEL_CHARS
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
        _merge(other, per_model[m])
    kept[OTHER_MODELS] = other
    return kept


def _merge(into: dict[str, float], values: dict[str, float]) -> None:
    """Two models' values as one: counts summed, the KV ratio the fullest cache."""
    for signal, value in values.items():
        if signal == KV_SIGNAL:
            into[signal] = max(into.get(signal, value), value)
        else:
            into[signal] = into.get(signal, 0.0) + value


def printable(text: str, limit: Optional[int] = None) -> str:
    """A server's text for a log line or a terminal: cut to `limit` characters, a control
    character (a newline, an escape sequence) as '?'."""
    text = text[:limit]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _bound_names(per_model: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Model names as the push path accepts them: at most MAX_MODEL_CHARS, no control
    characters (a '?' for each); models whose names then agree are merged."""
    if all(len(m) <= MAX_MODEL_CHARS and m.isprintable() for m in per_model):
        return per_model
    out: dict[str, dict[str, float]] = {}
    for m, values in per_model.items():
        name = printable(m, MAX_MODEL_CHARS)
        _merge(out.setdefault(name, {}), values)
    return out


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
    per_model = _cap_models(_bound_names(per_model))
    states = tuple(WorkloadState(namespace=namespace, pod=pod, server=adapter.server, model=model,
                                 queue_depth=values.get("queue_depth"),
                                 running_requests=values.get("running_requests"),
                                 kv_cache_usage=values.get(KV_SIGNAL),
                                 scrape_up=True, scrape_duration_seconds=duration)
                   for model, values in sorted(per_model.items()))
    if len(warnings) > MAX_WARNINGS:
        warnings = warnings[:MAX_WARNINGS - 1] + [f"{len(warnings) - MAX_WARNINGS + 1} more warnings"]
    # one short line each (they name the server's models): for the log and `gpulse probe`
    return Extraction(states, tuple(printable(w, MAX_WARNING_CHARS) for w in warnings),
                      tuple(sorted(dropped.items())))


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
        # a label varies when its values differ or some series lack it; one pass, not a
        # pass over every series per label (10,000 series took 27 s of the scrape thread)
        seen_values: dict[str, set[str]] = {}
        carried: dict[str, int] = {}
        for lab in groups:
            for k, v in lab:
                seen_values.setdefault(k, set()).add(v)
                carried[k] = carried.get(k, 0) + 1
        varying = sorted(k for k, vs in seen_values.items() if len(vs) > 1 or carried[k] < len(groups))
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
