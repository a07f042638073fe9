"""Rolling time windows, pure-Python twin of ext/_window.pyx (identical results).

One ring buffer of (timestamp, value) per series key; aggregates cover samples with
timestamp > now - horizon, summed oldest first. Empty windows answer None so callers
omit the sample.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Optional, Protocol


class ProcessSample(Protocol):
    """One NVML per-process utilization sample (pynvml's c_nvmlProcessUtilizationSample_t)."""

    @property
    def pid(self) -> int: ...

    @property
    def timeStamp(self) -> int: ...  # noqa: N802 - NVML's field name

    @property
    def smUtil(self) -> float: ...  # noqa: N802 - NVML's field name


Folded = dict[int, tuple[float, int, int]]  # pid -> (sum of smUtil, samples, last timeStamp)


class WindowSet:
    """Per-key rings of timestamped samples with mean, max and quantile over the last
    `horizon` seconds (samples with t > now - horizon).

    observe() drops non-finite values (a NaN is not a measurement) and refuses a timestamp
    older than the key's last one. A full ring forgets its oldest sample. Aggregates of an
    empty window are None, so callers omit the sample.
    """

    def __init__(self, horizon: float, capacity: int = 1024) -> None:
        if not horizon > 0:
            raise ValueError(f"window horizon must be positive, got {horizon!r}")
        if capacity < 1:
            raise ValueError(f"window capacity must be at least 1, got {capacity!r}")
        self.horizon = float(horizon)
        self.capacity = int(capacity)
        self._rings: dict[Hashable, deque[tuple[float, float]]] = {}

    def observe(self, key: Hashable, t: float, value: float) -> None:
        t, value = float(t), float(value)
        if not math.isfinite(value):
            return
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self.capacity)
        elif ring and t < ring[-1][0]:
            raise ValueError(f"window {key!r}: sample at t={t!r} is older than the last one at t={ring[-1][0]!r}")
        ring.append((t, value))

    def _live(self, key: Hashable, now: float) -> Optional[list[float]]:
        ring = self._rings.get(key)
        if not ring:
            return None
        cutoff = float(now) - self.horizon
        while ring and ring[0][0] <= cutoff:
            ring.popleft()
        return [v for _, v in ring] or None

    def mean(self, key: Hashable, now: float) -> Optional[float]:
        vals = self._live(key, now)
        if vals is None:
            return None
        total = 0.0
        for v in vals:  # plain left-to-right sum, as the compiled twin does
            total += v
        return total / len(vals)

    def max(self, key: Hashable, now: float) -> Optional[float]:
        vals = self._live(key, now)
        return None if vals is None else max(vals)

    def quantile(self, key: Hashable, q: float, now: float) -> Optional[float]:
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q!r}")
        vals = self._live(key, now)
        if vals is None:
            return None
        vals.sort()
        pos = q * (len(vals) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    def count(self, key: Hashable, now: float) -> int:
        """Number of samples in the window (0 when empty or unknown)."""
        vals = self._live(key, now)
        return 0 if vals is None else len(vals)

    def retain(self, keys: Iterable[Hashable]) -> None:
        keep = set(keys)
        for key in [k for k in self._rings if k not in keep]:
            del self._rings[key]

    def __contains__(self, key: object) -> bool:
        return key in self._rings

    def __len__(self) -> int:
        return len(self._rings)


def fold_process_samples(samples: Iterable[ProcessSample], since_us: int) -> Folded:
    """Folds NVML per-process utilization samples newer than `since_us` by PID.

    `samples` are what nvmlDeviceGetProcessUtilization (or GetProcessesUtilizationInfo)
    returns: objects with .pid, .timeStamp (µs, the driver's clock) and .smUtil (percent).
    Samples with timeStamp <= since_us were folded by an earlier call and are skipped.
    Returns {pid: (sum_sm, count, last_ts)}: mean SM utilization over the interval is
    sum_sm / count, and max(last_ts) is the `since_us` (lastSeenTimeStamp) of the next call.
    """
    since = int(since_us)
    if since < 0:
        raise OverflowError(f"since_us must not be negative, got {since_us!r}")
    out: Folded = {}
    for s in samples:
        ts = int(s.timeStamp)
        if ts <= since:
            continue
        pid = s.pid
        sm = float(s.smUtil)
        prev = out.get(pid)
        if prev is None:
            out[pid] = (sm, 1, ts)
        else:
            out[pid] = (prev[0] + sm, prev[1] + 1, ts if ts > prev[2] else prev[2])
    return out
