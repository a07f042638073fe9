"""Scraping inference endpoints off the tick, each one bounded.

One thread (Scraper) starts a round every `interval` (drift-free): every target that has
no scrape in flight gets one, at most `concurrency` at once, all on non-blocking sockets
that the thread waits on together. Each scrape is bounded by `timeout` (connect, headers
and body share one deadline) and `max_body` bytes, so a hung, slow or garbage endpoint
holds only its own socket, for at most the timeout, and marks only its own result down.
Each target keeps one HTTP/1.1 connection open across rounds
(gpulse.workloads.keepalive; closed when the target goes away or changes, opened anew after
a failure or when the server closes it), and its body is parsed as it arrives, lines of
families no adapter reads skipped unread, at most exposition.MAX_SERIES samples kept.
Results are published as one immutable tuple that `states()` returns without locking:
the sampler reads it every tick and never waits on a scrape.

A failed scrape publishes scrape_up=0 and no values: a stale queue depth from a dead
server would mislead an autoscaler more than a gap does.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Optional

from .. import httpfetch
from ..errors import OneLineError, one_line
from ..snapshot import WorkloadState
from . import adapters, exposition, keepalive, signals
from .adapters import ServerAdapter
from .discovery import ScrapeTarget
from .signals import StartSignals

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"  # never OpenMetrics: one format to parse
WANTED = adapters.ALL_METRICS | signals.METRICS  # queue families, and the start signals' counters and gauges
PUBLISH_DELAY = 0.05  # a result waits at most this long for the rest of its round before it is published


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


def connect(target: ScrapeTarget, buffer: Optional[memoryview] = None) -> keepalive.Connection:
    """The target's connection, to pass to scrape() round after round (opened on first use);
    `buffer`: the read buffer of the thread that uses it, when it serves several."""
    return keepalive.Connection(target.host, target.port, target.path, ACCEPT, buffer)


Parsed = tuple[list[exposition.Sample], dict[str, str]]  # (samples, types), as exposition.parse() gives


def fetch_samples(target: ScrapeTarget, timeout: float, max_body: int,
                  conn: Optional[keepalive.Connection] = None) -> Parsed:
    """GET and parse as the body arrives: the samples and types of WANTED families, NaN dropped."""
    own = conn is None
    if conn is None:
        conn = connect(target)
    stream = exposition.Stream(WANTED)
    try:
        conn.get(timeout, max_body, stream.feed)
        return stream.finish()
    except (httpfetch.FetchError, exposition.ExpositionError) as exc:
        raise _scrape_error(exc) from None
    finally:
        if own:
            conn.close()


def _scrape_error(exc: Exception) -> Exception:
    """A fetch or parse failure as the ScrapeError line it is reported with."""
    if isinstance(exc, exposition.ExpositionError) and not isinstance(exc, exposition.TooManySeriesError):
        return ScrapeError(f"not Prometheus text: {exc}")
    if isinstance(exc, (httpfetch.FetchError, exposition.TooManySeriesError)):
        return ScrapeError(str(exc))
    return exc


def scrape(target: ScrapeTarget, timeout: float, max_body: int, last_server: str = "",
           conn: Optional[keepalive.Connection] = None, *,
           fetched: Optional[Callable[[], Parsed]] = None,
           started: Optional[float] = None) -> EndpointResult:
    """Fetch, parse and map one endpoint; never raises. `conn`: the target's kept connection;
    `fetched`: the samples of a fetch already made (the Scraper's loop), since `started`."""
    started = time.monotonic() if started is None else started
    server = target.server or last_server
    try:
        samples, types = fetched() if fetched is not None else fetch_samples(target, timeout, max_body, conn)
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


class _Flight:
    """One scrape in progress on the loop."""

    __slots__ = ("target", "conn", "stream", "started", "deadline", "last_server")

    def __init__(self, target: ScrapeTarget, conn: keepalive.Connection, started: float, timeout: float,
                 last_server: str) -> None:
        self.target, self.conn, self.last_server = target, conn, last_server
        self.stream = exposition.Stream(WANTED)
        self.started = started
        self.deadline = started + timeout


class Scraper:
    """Every target scraped each `interval` on one thread (gpulse-scrape) that waits on all
    their sockets at once: no thread hand-off per scrape, and a hung endpoint holds nothing
    but its own socket until its deadline. At most `concurrency` scrapes are in flight; the
    others of a round wait for a slot. Rounds are drift-free and start at once when the
    targets change."""

    def __init__(self, interval: float, timeout: float, max_body: int, concurrency: int,
                 on_result: Optional[Callable[[EndpointResult], object]] = None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.max_body = max_body
        self.concurrency = concurrency
        self.on_result = on_result
        self._targets: dict[tuple[str, str], ScrapeTarget] = {}  # by ScrapeTarget.key
        self._results: dict[tuple[str, str], EndpointResult] = {}
        self._lock = threading.Lock()
        self._published: tuple[WorkloadState, ...] = ()
        self._results_view: tuple[EndpointResult, ...] = ()
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._changed = True  # targets changed since the loop last looked
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # loop thread only:
        self._conns: dict[tuple[str, str], tuple[ScrapeTarget, keepalive.Connection]] = {}  # one per target
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._registered: dict[keepalive.Connection, tuple[socket.socket, int]] = {}
        self._keys: dict[keepalive.Connection, tuple[str, str]] = {}  # the target each connection is for
        self._sel: Optional[selectors.BaseSelector] = None
        self._unpublished = 0.0  # when the oldest result not yet published came (0: none)
        self._buffer = memoryview(bytearray(keepalive.READ_BYTES))  # every connection's reads land here
        self.rounds = 0

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
                self._changed = True
        if changed:
            self._wake()  # scrape new pods now, not at the next round

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="gpulse-scrape", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    # --- the loop ---

    def _run(self) -> None:
        sel = self._sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        waiting: collections.deque[ScrapeTarget] = collections.deque()
        next_round = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._changed:
                    waiting = self._reconcile(waiting)
                    next_round = now
                if now >= next_round:
                    self.rounds += 1
                    with self._lock:
                        due = [t for k, t in sorted(self._targets.items()) if k not in self._flights]
                    queued = {t.key for t in waiting}
                    waiting.extend(t for t in due if t.key not in queued)
                    next_round += self.interval
                    if next_round <= now:  # overran (or suspended): skip, do not burst
                        next_round = now + self.interval
                while waiting and len(self._flights) < self.concurrency:
                    self._begin(waiting.popleft(), now)
                wait = next_round - now
                for f in list(self._flights.values()):
                    if f.deadline <= now:
                        f.conn.close()
                        self._done(f, ScrapeError(f"timed out after {self.timeout:g}s"))
                    else:
                        wait = min(wait, f.deadline - now)
                if self._unpublished:
                    wait = min(wait, self._unpublished + PUBLISH_DELAY - now)
                for key, _mask in sel.select(max(0.0, wait)):
                    conn = key.data
                    if conn is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            self._wake_r.recv(4096)
                        continue
                    self._event(conn)
                if self._unpublished and (not self._flights or time.monotonic() - self._unpublished >= PUBLISH_DELAY):
                    with self._lock:
                        self._unpublished = 0.0
                        self._republish()
        except Exception:
            log.exception("workloads: the scrape loop failed; workload scrapes stop")
        finally:
            for _t, conn in self._conns.values():
                conn.close()
            self._conns.clear()
            self._flights.clear()
            self._registered.clear()
            self._keys.clear()
            sel.close()

    def _reconcile(self, waiting: collections.deque[ScrapeTarget]) -> collections.deque[ScrapeTarget]:
        """Closes the connections (and drops the scrapes) of targets gone or changed."""
        with self._lock:
            self._changed = False
            targets = dict(self._targets)
        for key, (target, conn) in list(self._conns.items()):
            if targets.get(key) != target:
                del self._conns[key]
                self._flights.pop(key, None)
                conn.close()
                self._watch(conn)
                self._keys.pop(conn, None)
        return collections.deque(t for t in waiting if targets.get(t.key) == t)

    def _begin(self, target: ScrapeTarget, now: float) -> None:
        kept = self._conns.get(target.key)
        with self._lock:
            last = self._results.get(target.key)
        if kept is None:
            try:
                kept = (target, connect(target, self._buffer))
            except Exception as exc:  # noqa: BLE001 - this target's scrape fails, never the loop
                self._record(target, now, last.server if last is not None else "", exc, None)
                return
            self._conns[target.key] = kept
            self._keys[kept[1]] = target.key
        conn = kept[1]
        flight = _Flight(target, conn, now, self.timeout, last.server if last is not None else "")
        self._flights[target.key] = flight
        self._step(flight, lambda: conn.begin(self.max_body, flight.stream.feed))

    def _event(self, conn: keepalive.Connection) -> None:
        key = self._keys.get(conn)
        flight = self._flights.get(key) if key is not None else None
        if flight is None or flight.conn is not conn:  # idle: the server closed it (or spoke out of turn)
            with contextlib.suppress(Exception):
                conn.on_readable()
            self._watch(conn)
            return
        if conn.wants == keepalive.WANT_WRITE:
            self._step(flight, conn.on_writable)
        else:
            self._step(flight, conn.on_readable)

    def _step(self, flight: _Flight, run: Callable[[], bool]) -> None:
        try:
            done = flight.conn.finish(run)
        except Exception as exc:  # noqa: BLE001 - scrape() reports it (and logs what is unexpected)
            self._done(flight, exc)
            return
        self._watch(flight.conn)
        if done:
            self._done(flight, None)

    def _watch(self, conn: keepalive.Connection) -> None:
        """Keeps the selector in step with the connection: its socket watched for what it
        wants (an idle kept one for reading: the server closing it), a closed one not."""
        assert self._sel is not None
        sock = conn.sock
        events = (conn.wants or selectors.EVENT_READ) if sock is not None else 0
        old = self._registered.get(conn)
        if old is not None and (old[0] is not sock or not events):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(old[0])
            del self._registered[conn]
            old = None
        if sock is None or not events:
            return
        if old is None:
            self._sel.register(sock, events, conn)
        elif old[1] != events:
            self._sel.modify(sock, events, conn)
        self._registered[conn] = (sock, events)

    def _done(self, flight: _Flight, error: Optional[Exception]) -> None:
        target = flight.target
        if self._flights.get(target.key) is flight:
            del self._flights[target.key]
        self._watch(flight.conn)
        self._record(target, flight.started, flight.last_server, error, flight.stream)

    def _record(self, target: ScrapeTarget, started: float, last_server: str, error: Optional[Exception],
                stream: Optional[exposition.Stream]) -> None:
        """Maps what one scrape got (its parsed stream, or the error) and publishes the result."""
        def fetched() -> Parsed:
            if error is not None or stream is None:
                raise _scrape_error(error or ScrapeError("no answer"))
            try:
                return stream.finish()
            except exposition.ExpositionError as exc:
                raise _scrape_error(exc) from None

        result = scrape(target, self.timeout, self.max_body, last_server, fetched=fetched, started=started)
        with self._lock:
            if self._targets.get(target.key) != target:
                return  # the pod went away or changed while we scraped
            previous = self._results.get(target.key)
            self._results[target.key] = result
            if not self._unpublished:  # published when the round's scrapes are done, not per result
                self._unpublished = time.monotonic()
        if not result.up and (previous is None or previous.up or previous.error != result.error):
            log.warning("workloads: scrape of %s/%s at %s failed: %s",
                        target.namespace, target.pod, target.url, result.error)
        if self.on_result:
            self.on_result(result)

    def _republish(self) -> None:
        results = tuple(self._results[k] for k in sorted(self._results))
        self._results_view = results
        self._published = tuple(s for r in results for s in r.states)
