"""Scraping inference endpoints off the tick, each one bounded.

One scheduler thread wakes every `interval` (drift-free) and hands every target that has
no scrape in flight to a pool of `concurrency` workers. Each scrape is bounded by
`timeout` (connect, headers and body share one deadline) and `max_body` bytes, so a hung,
slow or garbage endpoint costs one worker for at most the timeout and marks only its own
result down. Each target keeps one HTTP/1.1 connection open across rounds
(gpulse.workloads.keepalive; closed when the target goes away or changes, opened anew after
a failure or when the server closes it), and its body is parsed as it arrives, lines of
families no adapter reads skipped unread, at most exposition.MAX_SERIES samples kept.
Results are published as one immutable tuple that `states()` returns without locking:
the sampler reads it every tick and never waits on a scrape.

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
from . import adapters, exposition, keepalive, signals
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


def fetch(target: ScrapeTarget, timeout: float, max_body: int) -> bytes:
    """GET the endpoint's body within one deadline and a byte limit."""
    try:
        return httpfetch.get("http", target.host, target.port, target.path, timeout, max_body, ACCEPT)
    except httpfetch.FetchError as exc:
        raise ScrapeError(str(exc)) from None


def connect(target: ScrapeTarget) -> keepalive.Connection:
    """The target's connection, to pass to scrape() round after round (opened on first use)."""
    return keepalive.Connection(target.host, target.port, target.path, ACCEPT)


def fetch_samples(target: ScrapeTarget, timeout: float, max_body: int,
                  conn: Optional[keepalive.Connection] = None) -> list[exposition.Sample]:
    """GET and parse as the body arrives: the samples of WANTED families, NaN dropped."""
    own = conn is None
    if conn is None:
        conn = connect(target)
    stream = exposition.Stream(WANTED)
    try:
        conn.get(timeout, max_body, stream.feed)
        return stream.finish()[0]
    except httpfetch.FetchError as exc:
        raise ScrapeError(str(exc)) from None
    except exposition.TooManySeriesError as exc:
        raise ScrapeError(str(exc)) from None
    except exposition.ExpositionError as exc:
        raise ScrapeError(f"not Prometheus text: {exc}") from None
    finally:
        if own:
            conn.close()


def scrape(target: ScrapeTarget, timeout: float, max_body: int,
           last_server: str = "", conn: Optional[keepalive.Connection] = None) -> EndpointResult:
    """Fetch, parse and map one endpoint; never raises. `conn`: the target's kept connection."""
    started = time.monotonic()
    server = target.server or last_server
    try:
        samples = fetch_samples(target, timeout, max_body, conn)
        adapter: Optional[ServerAdapter]
        if target.server:
            adapter = adapters.BY_SERVER[target.server]
        else:
            adapter = adapters.detect(s[0] for s in samples)
            if adapter is None:
                raise ScrapeError("no known inference-server metric in the body "
                                  "(set gpulse.dev/server or check gpulse.dev/port and path)")
        duration = time.monotonic() - started
        states = adapters.extract(adapter, samples, target.namespace, target.pod, duration)
        return EndpointResult(target, True, adapter.server, states, duration, finished_at=time.monotonic(),
                              signals=signals.extract(adapter, samples))
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
        self._conns: dict[tuple[str, str], tuple[ScrapeTarget, keepalive.Connection]] = {}  # one per target
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
            gone = [key for key, (t, _c) in self._conns.items()
                    if new.get(key) != t and key not in self._in_flight]  # in flight: closed when done
            closing = [self._conns.pop(key)[1] for key in gone]
            self._republish()
        for conn in closing:
            conn.close()
        if changed:
            self.refresher.wake()  # scrape new pods now, not at the next round

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="gpulse-scrape")
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            closing = [c for _t, c in self._conns.values()]
            self._conns.clear()
        for conn in closing:
            conn.close()

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
        with self._lock:
            kept = self._conns.get(target.key)
            stale = kept[1] if kept is not None and kept[0] != target else None
            if kept is None or stale is not None:
                kept = (target, connect(target))
                self._conns[target.key] = kept
        if stale is not None:
            stale.close()
        conn = kept[1]
        result = scrape(target, self.timeout, self.max_body, last_server, conn)
        with self._lock:
            self._in_flight.discard(target.key)
            if self._targets.get(target.key) != target:
                if self._conns.get(target.key) is kept:
                    del self._conns[target.key]
                conn.close()
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
