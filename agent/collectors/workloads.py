"""Workload queue depth in one vocabulary, whatever the inference server.

Per model: queue depth, running requests, KV-cache ratio (each only where known).
Per endpoint (namespace, pod, server): scrape_up and scrape duration, once even when the
server serves several models, and the scraped samples dropped as out of range, by reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..catalog import family
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector

_VALUES = (
    ("gpulse_workload_queue_depth", "queue_depth"),
    ("gpulse_workload_running_requests", "running_requests"),
    ("gpulse_workload_kv_cache_usage_ratio", "kv_cache_usage"),
)


def collect(snapshot: Snapshot) -> Iterable[Family]:
    value_families = [(family(name), attr) for name, attr in _VALUES]
    up = family("gpulse_workload_scrape_up")
    duration = family("gpulse_workload_scrape_duration_seconds")
    dropped = family("gpulse_workload_samples_dropped_total")
    seen_series, seen_endpoints = set(), set()
    for w in snapshot.workloads:
        series = (w.namespace, w.pod, w.server, w.model)
        if series in seen_series:
            continue  # a pushed and a scraped report of the same series: the first wins
        seen_series.add(series)
        for fam, attr in value_families:
            fam.add(series, getattr(w, attr))
        endpoint = (w.namespace, w.pod, w.server)
        if endpoint not in seen_endpoints:
            seen_endpoints.add(endpoint)
            up.add(endpoint, 1.0 if w.scrape_up else 0.0)
            duration.add(endpoint, w.scrape_duration_seconds)
        for reason, n in w.samples_dropped:
            dropped.add(endpoint + (reason,), float(n))
    return tuple(fam for fam, _ in value_families) + (up, duration, dropped)


COLLECTOR = FunctionCollector("workloads", tuple(name for name, _ in _VALUES) + (
    "gpulse_workload_scrape_up", "gpulse_workload_scrape_duration_seconds",
    "gpulse_workload_samples_dropped_total"), collect)
