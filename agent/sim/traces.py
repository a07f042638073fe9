"""Value traces for simulated utilization and queue depth: a value as a function of time.

Forms (YAML): a number (constant), or a mapping with exactly one key:
  {step: {before: 0.1, after: 0.9, at: 30s}}
  {ramp: {from: 0, to: 1, over: 60s, start: 0s}}
  {sine: {mean: 0.5, amplitude: 0.3, period: 60s, phase: 0s}}
  {pulse: {low: 0, high: 0.9, period: 20s, duty: 0.25, phase: 0s}}  # bursts: high for duty x period
  {replay: path.csv, loop: true}   # rows "seconds,value", relative to the scenario file
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union, cast

from ..config import parse_duration

# Trace.params by kind: constant (value,), step (before, after, at), ramp (from, to, over,
# start), sine (mean, amplitude, period, phase), pulse (low, high, period, duty, phase),
# replay (times, values, loop).
_ReplayParams = tuple[tuple[float, ...], tuple[float, ...], bool]
TraceParams = Union[tuple[float, ...], _ReplayParams]


class TraceError(ValueError):
    pass


@dataclass(frozen=True)
class Trace:
    kind: str
    params: TraceParams  # kind-specific, immutable

    def at(self, t: float) -> float:
        if self.kind == "replay":
            times, values, loop = cast(_ReplayParams, self.params)
            if loop and times[-1] > 0:
                t = t % (times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0))
            i = bisect.bisect_right(times, t) - 1
            return values[max(i, 0)]
        p = cast("tuple[float, ...]", self.params)  # every other kind holds numbers only
        if self.kind == "constant":
            return p[0]
        if self.kind == "step":
            before, after, when = p
            return after if t >= when else before
        if self.kind == "ramp":
            start_v, end_v, over, start = p
            if t <= start:
                return start_v
            frac = min(1.0, (t - start) / over)
            return start_v + (end_v - start_v) * frac
        if self.kind == "sine":
            mean, amp, period, phase = p
            return mean + amp * math.sin(2 * math.pi * (t - phase) / period)
        if self.kind == "pulse":
            low, high, period, duty, phase = p
            return high if ((t - phase) % period) < duty * period else low
        raise AssertionError(self.kind)


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TraceError(f"{what} must be a number, got {v!r}")
    return float(v)


def _dur(v: Any, what: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_duration(str(v))
    except ValueError as exc:
        raise TraceError(f"{what}: {exc}") from None


def _keys(spec: Any, allowed: set[str], required: set[str], what: str) -> None:
    if not isinstance(spec, dict):
        raise TraceError(f"{what} must be a mapping")
    for k in spec:
        if k not in allowed:
            raise TraceError(f"{what}: unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
    for k in required:
        if k not in spec:
            raise TraceError(f"{what}: missing key {k!r}")


def _fraction(v: Any, what: str) -> float:
    x = _num(v, what)
    if not 0.0 < x < 1.0:
        raise TraceError(f"{what} must be between 0 and 1, exclusive")
    return x


def _positive_dur(v: Any, what: str) -> float:
    seconds = _dur(v, what)
    if seconds <= 0:
        raise TraceError(f"{what} must be positive")
    return seconds


# Parameterised shapes as data: (key, parser, default; None = required), in Trace.params order.
_Field = tuple[str, Callable[[Any, str], float], Optional[float]]
_SHAPES: dict[str, tuple[_Field, ...]] = {
    "step": (("before", _num, None), ("after", _num, None), ("at", _dur, None)),
    "ramp": (("from", _num, None), ("to", _num, None), ("over", _positive_dur, None), ("start", _dur, 0)),
    "sine": (("mean", _num, None), ("amplitude", _num, None), ("period", _positive_dur, None), ("phase", _dur, 0)),
    "pulse": (("low", _num, None), ("high", _num, None), ("period", _positive_dur, None), ("duty", _fraction, None),
              ("phase", _dur, 0)),
}


def parse_trace(spec: Any, base_dir: str = ".") -> Trace:
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Trace("constant", (float(spec),))
    if not isinstance(spec, dict) or len(spec) not in (1, 2):
        raise TraceError(f"a trace is a number or one of step/ramp/sine/pulse/replay, got {spec!r}")
    kind = next(k for k in spec if k != "loop")
    body = spec[kind]
    if kind == "constant":
        return Trace("constant", (_num(body, "constant"),))
    if kind in _SHAPES:
        fields = _SHAPES[kind]
        names = {name for name, _, _ in fields}
        _keys(body, names, {name for name, _, default in fields if default is None}, kind)
        return Trace(kind, tuple(parse(body.get(name, default), f"{kind}.{name}") for name, parse, default in fields))
    if kind == "replay":
        path = os.path.join(base_dir, str(body))
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise TraceError(f"replay: cannot read {path}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise TraceError(f"replay: {path}:{line}: not UTF-8 text (byte {exc.start})") from None
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r and not r[0].startswith("#")]
        points: list[tuple[float, float]] = []
        for n, row in enumerate(rows, 1):
            try:
                points.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):
                raise TraceError(f"replay: {path}:{n}: expected 'seconds,value'") from None
        if not points:
            raise TraceError(f"replay: {path} has no rows")
        points.sort()
        loop = spec.get("loop", False)
        if not isinstance(loop, bool):
            raise TraceError("replay.loop must be true or false")
        return Trace("replay", (tuple(p[0] for p in points), tuple(p[1] for p in points), loop))
    raise TraceError(f"unknown trace kind {kind!r} (one of constant, step, ramp, sine, pulse, replay)")
