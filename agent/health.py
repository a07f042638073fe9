"""Liveness and readiness from the tick loop's progress (/livez and /readyz).

Alive unless the loop has hung (e.g. inside a stuck NVML call) long enough that restarting
the container is the cure; ready once NVML is up and a tick is done, and not while ticks
are stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Health:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self.ticks = 0
        self.last_tick_at = 0.0
        self.nvml_up = False
        self.reason = "first tick not done"

    def tick_done(self, nvml_up: bool, reason: str = "") -> None:
        self.ticks += 1
        self.last_tick_at = self._clock()
        self.nvml_up = nvml_up
        self.reason = reason

    def liveness(self) -> tuple[bool, str]:
        if not self.ticks:
            return True, ""
        hung_after = max(10 * self.interval, 30.0)
        age = self._clock() - self.last_tick_at
        if age > hung_after:
            return False, f"no tick for {age:.0f}s (hung after {hung_after:g}s)"
        return True, ""

    def readiness(self) -> tuple[bool, str]:
        if not self.ticks or not self.nvml_up:
            return False, self.reason or "first tick not done"
        stale_after = max(3 * self.interval, 5.0)
        age = self._clock() - self.last_tick_at
        if age > stale_after:
            return False, f"last tick {age:.1f}s ago (stale after {stale_after:g}s)"
        return True, ""
