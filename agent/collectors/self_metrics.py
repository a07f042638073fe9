"""The agent's own health: build, collectors, ticks, sources, NVML calls and errors, process.

Rendered last, by the sampler, with the other collectors' outcome of this tick.
"""

from __future__ import annotations

import platform

import psutil

from .. import __version__, catalog, kernels

NAME = "self"
_PROCESS = psutil.Process()
_START = _PROCESS.create_time()


def collect(snapshot, config, stats=None, dropped=None, backend="real"):
    fam = catalog.family
    build = fam("gpulse_build_info")
    build.add((__version__, platform.python_version(), "compiled" if kernels.EXTENSIONS_LOADED else "pure", backend), 1)
    yield build
    success, duration = fam("gpulse_collector_success"), fam("gpulse_collector_duration_seconds")
    for name, (ok, seconds) in sorted((stats or {}).items()):
        success.add((name,), 1.0 if ok else 0.0)
        duration.add((name,), seconds)
    yield success
    yield duration
    tick = snapshot.tick
    for name, value in (("gpulse_tick_duration_seconds", tick.get("duration")), ("gpulse_ticks_total", tick.get("ticks")),
                        ("gpulse_ticks_missed_total", tick.get("missed")),
                        ("gpulse_last_tick_timestamp_seconds", snapshot.timestamp)):
        f = fam(name)
        f.add((), value)
        yield f
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
    for name, n in sorted((dropped or {}).items()):
        drops.add((name,), n)
    yield drops
    with _PROCESS.oneshot():
        cpu = _PROCESS.cpu_times()
        mem = _PROCESS.memory_info()
        fds = _PROCESS.num_fds()
    for name, value in (("process_cpu_seconds_total", cpu.user + cpu.system), ("process_resident_memory_bytes", mem.rss),
                        ("process_start_time_seconds", _START), ("process_open_fds", fds)):
        f = fam(name)
        f.add((), value)
        yield f
