"""Scraping inference endpoints off the tick, each one bounded.

One scheduler thread wakes every `interval` (drift-free) and hands every target that has
no scrape in flight to a pool of `concurrency` workers. Each scrape is bounded by
`timeout` (connect, headers and body share one deadline) and `max_body` bytes, so a hung,
slow or garbage endpoint costs one worker for at most the timeout and marks only its own
result down. Results are published as one immutable tuple that `states()` returns without
locking: the sampler reads it every tick and never waits on a scrape.

A failed scrape publishes scrape_up=0 and no values: a stale queue depth from a dead
server would mislead an autoscaler more than a gap does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from .. import httpfetch
from ..errors import OneLineError, one_line
from ..refresh import Refresher
from ..snapshot import WorkloadState
from . import adapters, exposition, signals
from .adapters import ServerAdapter
from .discovery import ScrapeTarget
from .signals import StartSignals

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"  # never OpenMetrics: one format to parse
WANTED = adapters.ALL_METRICS | signals.METRICS  # queue families, and the start signals' counters and gauges


class ScrapeError(OneLineError):
    """One line: why this endpoint's scrape failed."""


@dataclass(frozen=True)
class EndpointResult:
    target: ScrapeTarget
    up: bool
    server: str
    states: tuple[WorkloadState, ...]  # one per model; one scrape_up=0 state when down
    duration: float
    error: str = ""
    finished_at: float = 0.0  # monotonic
    signals: Optional[StartSignals] = None  # ready and requests served (gpulse.startup reads them)
    warnings: tuple[str, ...] = ()  # short lines on how the body was read (adapters.Extraction)
    dropped: tuple[tuple[str, int], ...] = ()  # (reason, samples) out of range in this body


def fetch(target: ScrapeTarget, timeout: float, max_body: int) -> bytes:
    """GET the endpoint's body within one deadline and a byte limit."""
    try:
        return httpfetch.get("http", target.host, target.port, target.path, timeout, max_body, ACCEPT)
    except httpfetch.FetchError as exc:
        raise ScrapeError(str(exc)) from None


def scrape(target: ScrapeTarget, timeout: float, max_body: int,
           last_server: str = "") -> EndpointResult:
    """Fetch, parse and map one endpoint; never raises."""
    started = time.monotonic()
    server = target.server or last_server
    try:
        body = fetch(target, timeout, max_body)
        try:
            samples, types = exposition.parse(body, WANTED)
        except exposition.ExpositionError as exc:
            raise ScrapeError(f"not Prometheus text: {exc}") from None
        adapter: Optional[ServerAdapter]
        if target.server:
            adapter = adapters.BY_SERVER[target.server]
        else:
            # declared families count too: a server with no sample yet is still itself
            adapter = adapters.detect({s[0] for s in samples} | types.keys())
            if adapter is None:
                raise ScrapeError("no known inference-server metric in the body "
                                  "(set gpulse.dev/server or check gpulse.dev/port and path)")
        duration = time.monotonic() - started
        got = adapters.extract(adapter, samples, target.namespace, target.pod, duration)
        return EndpointResult(target, True, adapter.server, got.states, duration, finished_at=time.monotonic(),
                              signals=signals.extract(adapter, samples), warnings=got.warnings,
                              dropped=got.dropped)
    except Exception as exc:
        if not isinstance(exc, ScrapeError):
            exc = ScrapeError(one_line(exc))
            log.debug("workloads: unexpected scrape failure", exc_info=True)
        duration = time.monotonic() - started
        down = WorkloadState(target.namespace, target.pod, server or "unknown",
                             scrape_up=False, scrape_duration_seconds=duration)
        return EndpointResult(target, False, server, (down,), duration, str(exc), time.monotonic())


class Scraper:
    def __init__(self, interval: float, timeout: float, max_body: int, concurrency: int,
                 on_result: Optional[Callable[[EndpointResult], object]] = None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.max_body = max_body
        self.concurrency = concurrency
        self.on_result = on_result
        self._targets: dict[tuple[str, str], ScrapeTarget] = {}  # by ScrapeTarget.key
        self._results: dict[tuple[str, str], EndpointResult] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._published: tuple[WorkloadState, ...] = ()
        self._results_view: tuple[EndpointResult, ...] = ()
        self._pool: Optional[ThreadPoolExecutor] = None
        # The round scheduler: drift-free, woken early when the targets change.
        self.refresher = Refresher("scrape-sched", self._submit_round, interval)

    # --- readers (any thread, lock-free) ---

    def states(self) -> tuple[WorkloadState, ...]:
        return self._published

    def results(self) -> tuple[EndpointResult, ...]:
        return self._results_view

    # --- control ---

    def set_targets(self, targets: Iterable[ScrapeTarget]) -> None:
        with self._lock:
            new = {t.key: t for t in targets}
            changed = new != self._targets
            self._targets = new
            for key in list(self._results):
                if key not in new or self._results[key].target != new[key]:
                    del self._results[key]
            self._republish()
        if changed:
            self.refresher.wake()  # scrape new pods now, not at the next round

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="gpulse-scrape")
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # --- internals ---

    def _submit_round(self) -> None:
        with self._lock:
            due = [t for k, t in self._targets.items() if k not in self._in_flight]
            self._in_flight.update(t.key for t in due)
            last = {k: r.server for k, r in self._results.items()}
        pool = self._pool
        for target in due:
            try:
                if pool is not None:
                    pool.submit(self._scrape_one, target, last.get(target.key, ""))
            except RuntimeError:  # pool shut down while stopping
                return

    def _scrape_one(self, target: ScrapeTarget, last_server: str) -> None:
        result = scrape(target, self.timeout, self.max_body, last_server)
        with self._lock:
            self._in_flight.discard(target.key)
            if self._targets.get(target.key) != target:
                return  # the pod went away or changed while we scraped
            previous = self._results.get(target.key)
            self._results[target.key] = result
            self._republish()
        if not result.up and (previous is None or previous.up or previous.error != result.error):
            log.warning("workloads: scrape of %s/%s at %s failed: %s",
                        target.namespace, target.pod, target.url, result.error)
        if self.on_result:
            self.on_result(result)

    def _republish(self) -> None:
        results = tuple(self._results[k] for k in sorted(self._results))
        self._results_view = results
        self._published = tuple(s for r in results for s in r.states)
