"""Rolling time windows, pure-Python twin of ext/_window.pyx (identical results).

One ring buffer of (timestamp, value) per series key; aggregates cover samples with
timestamp > now - horizon. Empty windows answer None so callers omit the sample.
"""

from __future__ import annotations

from collections import deque


class WindowSet:
    def __init__(self, horizon: float, capacity: int = 1024):
        if horizon <= 0:
            raise ValueError("window horizon must be positive")
        self.horizon = float(horizon)
        self.capacity = int(capacity)
        self._rings: dict = {}

    def observe(self, key, t: float, value: float) -> None:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self.capacity)
        ring.append((float(t), float(value)))

    def _live(self, key, now: float):
        ring = self._rings.get(key)
        if not ring:
            return []
        cutoff = now - self.horizon
        while ring and ring[0][0] <= cutoff:
            ring.popleft()
        return [v for _, v in ring]

    def mean(self, key, now: float):
        vals = self._live(key, now)
        return sum(vals) / len(vals) if vals else None

    def max(self, key, now: float):
        vals = self._live(key, now)
        return max(vals) if vals else None

    def quantile(self, key, q: float, now: float):
        vals = sorted(self._live(key, now))
        if not vals:
            return None
        pos = q * (len(vals) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    def retain(self, keys) -> None:
        keep = set(keys)
        for key in [k for k in self._rings if k not in keep]:
            del self._rings[key]

    def __contains__(self, key) -> bool:
        return key in self._rings

    def __len__(self) -> int:
        return len(self._rings)
