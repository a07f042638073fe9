"""What the agent refused from peers, counted and logged without flooding the log.

The HTTP server and the push service refuse hostile or oversized input cheaply; each
refusal is counted here by (component, reason), which the self collector exports as
gpulse_requests_refused_total, and logged as one line at most once a minute per
(component, reason), with the number of refusals the minute held. A peer that sends
a thousand bad requests a second costs one log line a minute, never a traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0


class Refusals:
    def __init__(self, clock: Callable[[], float] = time.monotonic, log_every: float = LOG_EVERY_SECONDS) -> None:
        self._clock = clock
        self._log_every = log_every
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._logged_at: dict[tuple[str, str], float] = {}
        self._unlogged: dict[tuple[str, str], int] = {}

    def refuse(self, component: str, reason: str, detail: str = "") -> None:
        """Count one refusal; log `detail` unless this (component, reason) was logged within
        the last minute. Reasons are a small fixed vocabulary (they become label values)."""
        key = (component, reason)
        now = self._clock()
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            last = self._logged_at.get(key)
            if last is not None and now - last < self._log_every:
                self._unlogged[key] = self._unlogged.get(key, 0) + 1
                return
            self._logged_at[key] = now
            more = self._unlogged.pop(key, 0)
        suffix = f" ({more} more refused since the last report)" if more else ""
        log.warning("%s: refused (%s)%s%s", component, reason, f": {detail}" if detail else "", suffix)

    def counts(self) -> Mapping[tuple[str, str], int]:
        with self._lock:
            return MappingProxyType(dict(self._counts))
