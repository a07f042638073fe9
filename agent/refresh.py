"""Background inputs: one helper that runs a source's refresh on its own thread.

Every input the tick must not wait on (the kubelet, the API server's pod watch, the Node
object, workload scrapes, a co-located dcgm-exporter) is a `Refresher`: start/stop, a
drift-free interval, exponential backoff with jitter after a failure, and one status shape
(`SourceStatus`) that the sampler publishes as gpulse_source_up and
gpulse_snapshot_age_seconds. The refresh function keeps its own last good data; a failure
(an exception) never discards it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Protocol

from .errors import one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    up: bool
    age_seconds: Optional[float] = None  # how old the data is at snapshot time
    error: str = ""


class Source(Protocol):
    """Anything the sampler reports under gpulse_source_up{source}."""

    def status(self) -> SourceStatus: ...


class Backoff:
    """Exponential backoff with jitter between failed refreshes, capped at `ceiling`."""

    def __init__(self, base: float = 0.5, ceiling: float = 30.0, rng: Optional[random.Random] = None):
        self.base, self.ceiling = base, ceiling
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.ceiling, self.base * 2 ** (self.failures - 1))
        return float(delay * (0.8 + 0.4 * self._rng.random()))

    def reset(self) -> None:
        self.failures = 0


class Refresher:
    """Calls `refresh()` every `interval` seconds on a daemon thread named gpulse-<name>.

    A refresh that raises is logged once per distinct error, reported in status() and
    retried with backoff (up to `interval`, or `retry_ceiling`). A refresh that blocks for
    a long time (a watch) may call mark_up() when it has data, and `interrupt` is called
    by stop() to unblock it. `stale_after` turns an old success into up=False."""

    def __init__(self, name: str, refresh: Callable[[], None], interval: float, *,
                 retry_base: float = 0.5, retry_ceiling: Optional[float] = None,
                 stale_after: Optional[float] = None, interrupt: Optional[Callable[[], None]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.interval = float(interval)
        self._refresh = refresh
        self._interrupt = interrupt
        self._clock = clock
        self.stale_after = stale_after
        ceiling = retry_ceiling if retry_ceiling is not None else max(self.interval, retry_base)
        self.backoff = Backoff(base=min(retry_base, ceiling), ceiling=ceiling)
        self._lock = threading.Lock()
        self._last_success: Optional[float] = None
        self._up = False
        self._error = "not yet refreshed"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.refreshes = 0

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"gpulse-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._interrupt is not None:
            try:
                self._interrupt()
            except Exception:
                log.debug("%s: interrupt failed", self.name, exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Refresh now rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        next_at = self._clock()
        while not self._stop.is_set():
            ok = self.run_once()
            if ok:
                next_at += self.interval
                now = self._clock()
                if next_at < now:  # overran (or suspended): skip, do not burst
                    next_at = now + self.interval
                delay = next_at - now
            else:
                delay = self.backoff.next_delay()
                next_at = self._clock() + delay
            self._wake.wait(max(0.0, delay))
            if self._wake.is_set() and not self._stop.is_set():
                self._wake.clear()
                next_at = self._clock()

    # --- one refresh -------------------------------------------------------------------
    def run_once(self) -> bool:
        """One refresh, on the caller's thread (tests call it directly); True on success."""
        self.refreshes += 1
        try:
            self._refresh()
        except Exception as exc:  # noqa: BLE001 - any failure is reported; the thread lives on
            if self._stop.is_set():
                return False
            self.mark_down(one_line(exc))
            return False
        self.mark_up()
        return True

    def mark_up(self) -> None:
        with self._lock:
            if not self._up and self._error != "not yet refreshed":
                log.info("%s: answers again", self.name)
            self._up, self._error, self._last_success = True, "", self._clock()
        self.backoff.reset()

    def mark_down(self, error: str) -> None:
        with self._lock:
            if self._up or error != self._error:
                log.warning("%s: %s (keeping the last good data; retrying)", self.name, error)
            self._up, self._error = False, error

    def status(self) -> SourceStatus:
        with self._lock:
            age = None if self._last_success is None else max(0.0, self._clock() - self._last_success)
            up = self._up and (self.stale_after is None or age is None or age <= self.stale_after)
            error = self._error or ("" if up else f"no refresh for {age:.0f}s")
            return SourceStatus(up, age, error)
