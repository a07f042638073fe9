"""The agent's own health: build, collectors, ticks, sources, NVML calls and errors, process.

Runs last, after the runner has put this tick's collector outcomes and dropped series into
the snapshot, so gpulse_collector_success reports the scrape it is part of.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Optional

import psutil

from .. import __version__, catalog, kernels
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector

_PROCESS = psutil.Process()
_START = _PROCESS.create_time()


def _single(name: str, value: Optional[float]) -> Family:
    f = catalog.family(name)
    f.add((), value)
    return f


def collect(snapshot: Snapshot) -> Iterator[Family]:
    fam = catalog.family
    build = fam("gpulse_build_info")
    build.add((__version__, platform.python_version(), "true" if kernels.EXTENSIONS_LOADED else "false",
               snapshot.nvml_backend), 1)
    yield build
    success, duration = fam("gpulse_collector_success"), fam("gpulse_collector_duration_seconds")
    for name, stat in sorted(snapshot.collectors.items()):
        success.add((name,), 1.0 if stat.ok else 0.0)
        duration.add((name,), stat.seconds)
    yield success
    yield duration
    tick = snapshot.tick
    yield _single("gpulse_tick_duration_seconds", tick.duration)
    yield _single("gpulse_ticks_total", tick.ticks)
    yield _single("gpulse_ticks_missed_total", tick.missed)
    yield _single("gpulse_last_tick_timestamp_seconds", snapshot.timestamp)
    age, up = fam("gpulse_snapshot_age_seconds"), fam("gpulse_source_up")
    for source, status in sorted(snapshot.sources.items()):
        up.add((source,), 1.0 if status.up else 0.0)
        age.add((source,), status.age_seconds)
    yield age
    yield up
    errors = fam("gpulse_nvml_errors_total")
    for (function, reason), n in sorted(snapshot.nvml_errors.items()):
        errors.add((function, reason), n)
    yield errors
    calls = fam("gpulse_nvml_calls_total")
    for function, n in sorted(snapshot.nvml_calls.items()):
        calls.add((function,), n)
    yield calls
    drops = fam("gpulse_series_dropped_total")
    for name, n in sorted(snapshot.dropped.items()):
        drops.add((name,), n)
    yield drops
    refused = fam("gpulse_requests_refused_total")
    for (component, reason), n in sorted(snapshot.refused.items()):
        refused.add((component, reason), n)
    yield refused
    with _PROCESS.oneshot():
        cpu = _PROCESS.cpu_times()
        mem = _PROCESS.memory_info()
        fds = _PROCESS.num_fds()
    yield _single("process_cpu_seconds_total", cpu.user + cpu.system)
    yield _single("process_resident_memory_bytes", mem.rss)
    yield _single("process_start_time_seconds", _START)
    yield _single("process_open_fds", fds)


COLLECTOR = FunctionCollector(catalog.SELF, tuple(s.name for s in catalog.for_collector(catalog.SELF)), collect)
