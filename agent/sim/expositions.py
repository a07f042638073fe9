"""The simulated servers' /metrics texts, per server and version, and the truth they carry.

`render(server, version, model, values, t, ...)` returns (body, truth): the text a server
of that version serves for the given queue, running and KV values, and what that text
means by the server's documented semantics ({model: {signal: value}}) — the values an
adapter that reads it right must give back. The truth is worked out here, from the text
this module wrote, not from gpulse's adapters: a test compares gpulse's reading to it.

Formats are modelled on the real texts in tests/fixtures/exposition/ (which servers
published them and where is in each manifest):
  vllm          < 0.9: model_name only, vllm:gpu_cache_usage_perc; 0.9: an `engine` label
                per engine core (data-parallel ranks add up); >= 0.10: vllm:kv_cache_usage_perc
  sglang        < 0.4.4: model_name only; later: every tensor-parallel rank (tp_rank)
                reports the same queue, data-parallel ranks (dp_rank, >= 0.5) add up
  trtllm        < 0.7: nv_trt_llm_*_statistics; 0.7-0.17: *_metrics without request_type
                "waiting" and kv_cache_block_type "fraction" (usage = used / max);
                >= 0.18: both rows present
  dynamo        frontend: inflight INCLUDES queued (running = inflight - queued); the
                "-worker" variant: the backend component's generate endpoint, no model label
  ray-serve     queued per handle, processing per replica, keyed by application+deployment
  ray-serve-llm vLLM's names prefixed ray_vllm:, one set per replica (they add up)
  nim           vLLM's names without a prefix, model_name
  mindie        the same unprefixed names, npu_cache_usage_perc for the NPU's KV cache
  lmdeploy      lmdeploy:num_requests_waiting / _running / gpu_cache_usage_perc, engine label
  sglang-router requests in flight per worker (sgl_router_running_requests{worker}), the
                router has no waiting queue or KV cache of its own
  llamacpp      llamacpp:requests_deferred / requests_processing, no model label;
                llamacpp:kv_cache_usage_ratio until it was removed (b5600)
  tei           te_queue_size / te_batch_current_size, no model label, no KV cache
A version is "1.2.3" (a leading "v" and a llama.cpp build "b4567" too), optionally with a
"-variant" (dynamo "-worker"); "" means the current format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

# Sample labels in order, ((name, value), ...); one sample is (suffix, labels, value).
_Labels = tuple[tuple[str, str], ...]
_Sample = tuple[str, _Labels, float]
Truth = dict[str, dict[str, float]]  # model -> {signal: value}

SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")
MAX_RANKS = 16  # tensor- or data-parallel ranks one simulated server reports


@dataclass(frozen=True)
class Format:
    since: str  # first version with this format
    note: str  # what changed, for `gpulse scenarios` and errors
    signals: tuple[str, ...]  # what a text of this format carries
    variants: tuple[str, ...] = ("",)


# server -> formats, oldest first; the last is the current one (version "").
FORMATS: dict[str, tuple[Format, ...]] = {
    "vllm": (Format("0.4.0", "V0: model_name only, gpu_cache_usage_perc", SIGNALS),
             Format("0.9.0", "V1: engine label per engine core, gpu_cache_usage_perc", SIGNALS),
             Format("0.10.0", "kv_cache_usage_perc", SIGNALS)),
    "tgi": (Format("2.0.0", "unlabelled queue and batch gauges", ("queue_depth", "running_requests")),),
    "triton": (Format("2.40.0", "nv_inference_pending_request_count per model version", ("queue_depth",)),),
    "trtllm": (Format("0.6.0", "nv_trt_llm_*_statistics families, no waiting, no fraction",
                      ("running_requests", "kv_cache_usage")),
               Format("0.7.0", "nv_trt_llm_*_metrics families, no waiting, no fraction",
                      ("running_requests", "kv_cache_usage")),
               Format("0.18.0", "request_type waiting and kv_cache_block_type fraction", SIGNALS)),
    "trtllm-serve": (Format("0.20.0", "trtllm_* gauges per model_name", SIGNALS),),
    "sglang": (Format("0.3.0", "model_name only", SIGNALS),
               Format("0.4.4", "tp_rank on every series: each rank reports the same values", SIGNALS),
               Format("0.5.0", "tp_rank and dp_rank: data-parallel ranks add up", SIGNALS)),
    "dynamo": (Format("0.4.0", "frontend inflight includes queued; -worker: the backend component, no model label",
                      SIGNALS, ("", "worker")),
               # the worker text of 2026-01 in the corpus (its release is not stated)
               Format("0.8.0", "-worker: model label on the generate endpoint's series, KV stats per component",
                      SIGNALS, ("", "worker"))),
    "ray-serve": (Format("2.30.0", "queued per handle, processing per replica, application+deployment",
                         ("queue_depth", "running_requests")),),
    "ray-serve-llm": (Format("2.44.0", "vLLM names prefixed ray_vllm:, one set per replica", SIGNALS),),
    "nim": (Format("1.0.0", "vLLM names without a prefix", SIGNALS),),
    "mindie": (Format("2.0.0", "vLLM names without a prefix, npu_cache_usage_perc", SIGNALS),),
    "lmdeploy": (Format("0.10.0", "lmdeploy: prefixed vLLM-style gauges with an engine label", SIGNALS),),
    "sglang-router": (Format("0.1.4", "sgl_router_running_requests per worker", ("running_requests",)),),
    "llamacpp": (Format("b3000", "requests_deferred / requests_processing, kv_cache_usage_ratio", SIGNALS),
                 Format("b5600", "kv_cache_usage_ratio removed", ("queue_depth", "running_requests"))),
    "tei": (Format("1.2.0", "te_queue_size / te_batch_current_size", ("queue_depth", "running_requests")),),
}

_VERSION = re.compile(r"^[vb]?(\d{1,6}(?:\.\d{1,6}){0,3})(?:-([a-z][a-z0-9]{0,15}))?$")


class VersionError(ValueError):
    pass


def _key(version: str) -> tuple[int, ...]:
    m = _VERSION.match(version)
    assert m, version
    return tuple(int(p) for p in m.group(1).split("."))


def resolve(server: str, version: str) -> tuple[int, Format, str]:
    """(format index, Format, variant) of `version` ("" = current); VersionError (one line)."""
    formats = FORMATS.get(server)
    if formats is None:
        raise VersionError(f"no simulated exposition for server {server!r}")
    if not version:
        return len(formats) - 1, formats[-1], ""
    m = _VERSION.match(version)
    if m is None:
        raise VersionError(f"version {version!r}: expected a release like 0.6.3 (a -variant may follow)")
    variant = m.group(2) or ""
    key = _key(version)
    if key < _key(formats[0].since):
        raise VersionError(f"version {version!r}: the simulator's oldest {server} format is {formats[0].since}")
    index = max(i for i, f in enumerate(formats) if _key(f.since) <= key)
    fmt = formats[index]
    if variant not in fmt.variants:
        known = ", ".join(repr(v) for v in fmt.variants if v) or "none"
        raise VersionError(f"version {version!r}: unknown {server} variant {variant!r} (known: {known})")
    return index, fmt, variant


def carried(server: str, version: str = "") -> tuple[str, ...]:
    return resolve(server, version)[1].signals


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """Integers as servers print counts; other floats exactly (repr round-trips)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def family(lines: list[str], name: str, type_: str, help_: str, samples: Iterable[_Sample]) -> None:
    lines.append(f"# HELP {name} {help_}")
    lines.append(f"# TYPE {name} {type_}")
    for suffix, labels, value in samples:
        body = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
        text = number(value)
        lines.append(f"{name}{suffix}{{{body}}} {text}" if body else f"{name}{suffix} {text}")


def histogram(lines: list[str], name: str, help_: str, labels: _Labels, count: int, total: float,
              buckets: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0)) -> None:
    samples: list[_Sample] = []
    seen = 0
    for i, le in enumerate(buckets):
        seen = min(count, int(count * (i + 1) / (len(buckets) + 1)))
        samples.append(("_bucket", labels + (("le", f"{le:g}"),), seen))
    samples.append(("_bucket", labels + (("le", "+Inf"),), count))
    samples += [("_sum", labels, total), ("_count", labels, count)]
    family(lines, name, "histogram", help_, samples)


def shares(total: float, n: int) -> list[float]:
    """A count shared by n ranks that add up (whole numbers; rank 0 takes the remainder first)."""
    whole = int(total)
    return [float(whole // n + (1 if i < whole % n else 0)) for i in range(n)]


def split(total: Optional[float], n: int) -> list[Optional[float]]:
    """shares() of a count the server may not report (None on every rank)."""
    out: list[Optional[float]] = [None] * n if total is None else list(shares(total, n))
    return out


def kv_ranks(kv: Optional[float], n: int) -> list[Optional[float]]:
    """KV ratios of n caches whose fullest is `kv` (the others a little less full)."""
    out: list[Optional[float]] = [None] * n
    if kv is not None:
        out = [kv]
        out += [round(kv * (0.9 - 0.1 * (i % 5)), 6) for i in range(1, n)]
    return out


def _gauges(lines: list[str], rows: Iterable[tuple[str, str, Iterable[tuple[_Labels, Optional[float]]]]]) -> None:
    for name, help_, samples in rows:
        present = [("", labels, v) for labels, v in samples if v is not None]
        if present:
            family(lines, name, "gauge", help_, present)


def render(server: str, version: str, model: str, values: Mapping[str, float], t: float,
           served: Optional[int] = None, tensor_parallel: int = 1, data_parallel: int = 1) -> tuple[str, Truth]:
    """(body, truth) of one scrape of `server` at `version` serving `values` (whole counts,
    KV 0-1) for `model`; its request counters are `served` (by default growing with t)."""
    index, fmt, variant = resolve(server, version)
    tp = max(1, min(MAX_RANKS, tensor_parallel))
    dp = max(1, min(MAX_RANKS, data_parallel))
    q = values.get("queue_depth") if "queue_depth" in fmt.signals else None
    r = values.get("running_requests") if "running_requests" in fmt.signals else None
    kv = values.get("kv_cache_usage") if "kv_cache_usage" in fmt.signals else None
    served = int(t * 3) if served is None else served
    lines: list[str] = []
    name_of = model
    labels: list[_Labels]
    ml: list[_Labels]
    if server in ("vllm", "nim", "ray-serve-llm", "lmdeploy", "mindie"):
        prefix = {"vllm": "vllm:", "ray-serve-llm": "ray_vllm:", "lmdeploy": "lmdeploy:"}.get(server, "")
        # data-parallel engines each report (vLLM V1's engine label; Ray Serve LLM replicas)
        engines = dp if server == "ray-serve-llm" or (server == "vllm" and index >= 1) else 1
        if server == "ray-serve-llm":  # one vLLM engine per replica, each with Ray's own labels
            labels = [(("ReplicaId", f"{i:08x}"), ("WorkerId", f"w{i}"), ("engine", "0"), ("model_name", model))
                      for i in range(engines)]
        elif (server == "vllm" and index >= 1) or server == "lmdeploy":
            labels = [(("engine", str(i)), ("model_name", model)) for i in range(engines)]
        else:
            labels = [(("model_name", model),)]
        kv_name = {"mindie": "npu_cache_usage_perc"}.get(
            server, "kv_cache_usage_perc" if server == "vllm" and index >= 2 else "gpu_cache_usage_perc")
        if server == "mindie":
            family(lines, "request_received_total", "counter", "Count of received requests.",
                   [("", labels[0], served + int(q or 0) + int(r or 0))])
        _gauges(lines, [
            (f"{prefix}num_requests_running", "Number of requests in model execution batches.",
             zip(labels, split(r, engines), strict=True)),
            (f"{prefix}num_requests_waiting", "Number of requests waiting to be processed.",
             zip(labels, split(q, engines), strict=True)),
            (f"{prefix}{kv_name}", "KV-cache usage. 1 means 100 percent usage.",
             zip(labels, kv_ranks(kv, engines), strict=True))])
        if (server == "vllm" and index == 0) or server == "mindie":
            _gauges(lines, [("vllm:num_requests_swapped", "Number of requests swapped to CPU.", [(labels[0], 0)]),
                            ("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.",
                             [(labels[0], 0.0)])])
        family(lines, f"{prefix}request_success_total", "counter", "Count of successfully processed requests.",
               [("", lab + (("finished_reason", "stop"),), n) for lab, n in zip(labels, shares(served, engines),
                                                                                strict=True)])
        histogram(lines, f"{prefix}request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                  labels[0], served, served * 0.2)
    elif server == "tgi":
        name_of = ""  # TGI serves one model and names none
        _gauges(lines, [("tgi_queue_size", "Current queue size", [((), q)]),
                        ("tgi_batch_current_size", "Current batch size", [((), r)]),
                        ("tgi_batch_current_max_tokens", "Maximum tokens for the current batch", [((), 4096)])])
        family(lines, "tgi_request_count", "counter", "Total number of requests", [("", (), served)])
        family(lines, "tgi_request_success", "counter", "Number of successful requests", [("", (), served)])
    elif server == "sglang-router":  # requests in flight per worker; no queue, no KV cache
        name_of = ""
        workers = [(("worker", f"http://10.0.0.{10 + i}:30000"),) for i in range(dp)]
        _gauges(lines, [("sgl_router_running_requests", "Number of running requests per worker",
                         zip(workers, split(r, dp), strict=True)),
                        ("sgl_router_active_workers", "Number of active workers", [((), dp)])])
        family(lines, "sgl_router_processed_requests_total", "counter", "Total requests processed per worker",
               [("", lab, n) for lab, n in zip(workers, shares(served, dp), strict=True)])
    elif server == "tei":
        name_of = ""
        _gauges(lines, [("te_queue_size", "Queue size", [((), q)]),
                        ("te_batch_current_size", "Current batch size", [((), r)]),
                        ("te_batch_current_max_tokens", "Maximum tokens for the current batch", [((), 16384)])])
        family(lines, "te_request_count", "counter", "Total number of requests",
               [("", (("method", "single"),), served)])
        family(lines, "te_request_success", "counter", "Number of successful requests",
               [("", (("method", "single"),), served)])
    elif server == "llamacpp":
        name_of = ""
        family(lines, "llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.",
               [("", (), served * 40)])
        family(lines, "llamacpp:n_decode_total", "counter", "Total number of llama_decode() calls",
               [("", (), served * 90)])
        _gauges(lines, [("llamacpp:n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
                         [((), 1.5)]),
                        ("llamacpp:kv_cache_usage_ratio", "KV-cache usage. 1 means 100 percent usage.", [((), kv)]),
                        ("llamacpp:requests_processing", "Number of requests processing.", [((), r)]),
                        ("llamacpp:requests_deferred", "Number of requests deferred.", [((), q)])])
    elif server in ("triton", "trtllm"):
        versions = dp if server == "triton" else 1  # Triton model versions add up
        ml = [(("model", model), ("version", str(v + 1))) for v in range(versions)]
        if server == "trtllm":
            kind = "statistics" if index == 0 else "metrics"
            tl = (("model", model),)
            max_blocks = 6239
            used = round(max_blocks * (kv or 0.0))
            requests = [("waiting", q), ("context", 1), ("scheduled", r), ("max", 512),
                        ("active", None if r is None else r + (values.get("queue_depth") or 0))]
            if index < 2:
                requests = requests[1:]
                kv = used / max_blocks if kv is not None else None  # what used / max gives
            family(lines, f"nv_trt_llm_request_{kind}", "gauge", "TRT LLM request metrics",
                   [("", tl[:1] + (("request_type", rt),) + (("version", "1"),), v) for rt, v in requests
                    if v is not None])
            blocks: list[tuple[str, Optional[float]]] = [("tokens_per", 64), ("used", used),
                                                         ("free", max_blocks - used), ("max", max_blocks)]
            if index >= 2:
                blocks.insert(0, ("fraction", kv))
            family(lines, f"nv_trt_llm_kv_cache_block_{kind}", "gauge", "TRT LLM KV cache block metrics",
                   [("", (("kv_cache_block_type", bt),) + tl + (("version", "1"),), v) for bt, v in blocks
                    if v is not None])
        for name, help_, per in (
                ("nv_inference_request_success", "Number of successful inference requests, all batch sizes", 1),
                ("nv_inference_count", "Number of inferences performed (does not include cached requests)", 4),
                ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)",
                 1)):
            family(lines, name, "counter", help_, [("", lab, s * per) for lab, s in zip(ml, shares(served, versions),
                                                                                        strict=True)])
        family(lines, "nv_inference_queue_duration_us", "counter",
               "Cumulative inference queuing duration in microseconds (includes cached requests)",
               [("", lab, s * 1500) for lab, s in zip(ml, shares(served, versions), strict=True)])
        pending = split(q, versions) if server == "triton" else [0.0]  # TRT-LLM queues in its batcher
        if server == "triton" and q is None:
            pending = []
        if pending:
            family(lines, "nv_inference_pending_request_count", "gauge",
                   "Instantaneous number of pending requests awaiting execution per-model.",
                   [("", lab, v) for lab, v in zip(ml, pending, strict=False) if v is not None])
    elif server == "trtllm-serve":
        one: _Labels = (("model_name", model),)
        _gauges(lines, [("trtllm_num_requests_running", "Number of requests running.", [(one, r)]),
                        ("trtllm_num_requests_waiting", "Number of requests waiting.", [(one, q)]),
                        ("trtllm_kv_cache_utilization", "KV cache utilization (0-1).", [(one, kv)])])
        family(lines, "trtllm_request_success_total", "counter", "Requests finished.", [("", one, served)])
    elif server == "sglang":
        ranks: list[_Labels] = []
        dps = dp if index >= 2 else 1
        for d in range(dps):
            for p in range(tp if index >= 1 else 1):
                lab: _Labels = (("model_name", model),)
                if index >= 2 and dps > 1:
                    lab += (("dp_rank", str(d)),)
                if index >= 1:
                    lab += (("tp_rank", str(d * tp + p)),)
                ranks.append(lab)
        per_dp_q, per_dp_r, per_dp_kv = split(q, dps), split(r, dps), kv_ranks(kv, dps)
        tp_n = len(ranks) // dps

        def each(per: list[Optional[float]]) -> list[tuple[_Labels, Optional[float]]]:
            return [(lab, per[i // tp_n]) for i, lab in enumerate(ranks)]  # tensor ranks repeat their dp rank
        _gauges(lines, [("sglang:num_running_reqs", "The number of running requests.", each(per_dp_r)),
                        ("sglang:num_queue_reqs", "The number of requests in the waiting queue.", each(per_dp_q)),
                        ("sglang:token_usage", "The token usage.", each(per_dp_kv)),
                        ("sglang:gen_throughput", "The generation throughput (token/s).", each([850.0] * dps))])
        family(lines, "sglang:num_requests_total", "counter", "Number of requests processed.",
               [("", ranks[0], served)])
    elif server == "dynamo":
        component = (("dynamo_component", "backend"), ("dynamo_endpoint", "generate"), ("dynamo_namespace", "dynamo"))
        if variant == "worker":  # a worker pod: the engine's component endpoint
            # from 0.8 the endpoint's series name the model; the KV stats never do
            endpoint = component + ((("model", model),) if index >= 1 else ())
            name_of = model if index >= 1 else ""
            stats = component[:1] + component[2:] if index >= 1 else component
            _gauges(lines, [("dynamo_component_inflight_requests",
                             "Number of requests currently being processed by work handler", [(endpoint, r)]),
                            ("dynamo_component_kvstats_gpu_cache_usage_percent",
                             "GPU cache usage as a percentage (0.0-1.0)", [(stats, kv)]),
                            ("dynamo_component_kvstats_total_blocks", "Total number of KV cache blocks",
                             [(stats, 2048)])])
            family(lines, "dynamo_component_requests_total", "counter", "Total number of requests processed by work "
                   "handler", [("", endpoint, served)])
            q = None  # a worker does not report its queue
        else:
            fl: _Labels = (("model", model),)
            inflight = None if r is None else r + (q or 0)  # the frontend counts queued requests as inflight
            _gauges(lines, [("dynamo_frontend_inflight_requests", "Number of inflight requests", [(fl, inflight)]),
                            ("dynamo_frontend_queued_requests", "Number of requests in HTTP processing queue",
                             [(fl, q)]),
                            ("dynamo_component_kvstats_gpu_cache_usage_percent",
                             "GPU cache usage as a percentage (0.0-1.0)", [(component, kv)])])
            family(lines, "dynamo_frontend_requests_total", "counter", "Total number of LLM requests processed",
                   [("", fl, served)])
    elif server == "ray-serve":
        deployment = model or "LLMServer"
        app = (("application", "default"), ("deployment", deployment))
        _gauges(lines, [("ray_serve_deployment_queued_queries",
                         "The current number of queries to this deployment waiting to be assigned to a replica.",
                         [(app + (("handle", f"h{i}"), ("actor_id", f"a{i}")), v) for i, v in enumerate(split(q, dp))]),
                        ("ray_serve_replica_processing_queries", "The current number of queries being processed.",
                         [(app + (("replica", f"{deployment}#r{i}"),), v) for i, v in enumerate(split(r, dp))])])
        family(lines, "ray_serve_num_router_requests_total", "counter", "The number of requests processed by the "
               "router.", [("", app, served)])
        family(lines, "ray_serve_deployment_replica_healthy", "gauge", "Tracks whether this deployment replica is "
               "healthy. 1 means healthy, 0 means unhealthy.", [("", app + (("replica", f"{deployment}#r{i}"),), 1)
                                                                for i in range(dp)])
        name_of = ray_serve_model("default", deployment)
    else:  # pragma: no cover - resolve() refused it
        raise VersionError(f"no simulated exposition for server {server!r}")
    truth = {sig: v for sig, v in (("queue_depth", q), ("running_requests", r), ("kv_cache_usage", kv))
             if v is not None}
    return "\n".join(lines) + "\n", {name_of: truth}


def ray_serve_model(application: str, deployment: str) -> str:
    """The model a Ray Serve deployment is reported as: its dashboards key on both."""
    return f"{application}/{deployment}"
