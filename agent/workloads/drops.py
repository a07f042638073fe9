"""Scraped samples dropped for being out of range, counted per endpoint and logged sparingly.

The adapters drop a scraped value the push path would refuse (gpulse.workloads.adapters.check)
and say so in each EndpointResult (`dropped`, `warnings`). This ledger adds those up per
(namespace, pod, server, reason) for gpulse_workload_samples_dropped_total, and logs one
warning per pod at most every LOG_EVERY_SECONDS, naming the pod, with the first warning of
the scrape and the number of drops since the pod's last line. A server that reports a
negative queue every second costs one log line per pod every five minutes. Pods that are no
longer scraped are forgotten (`retain`), so their series go with them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from .scrape import EndpointResult

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 300.0

_Pod = tuple[str, str]  # (namespace, pod)


class DropLedger:
    def __init__(self, clock: Callable[[], float] = time.monotonic, log_every: float = LOG_EVERY_SECONDS) -> None:
        self._clock = clock
        self._log_every = log_every
        self._lock = threading.Lock()
        self._counts: dict[_Pod, dict[tuple[str, str], int]] = {}  # pod -> (server, reason) -> n
        self._logged_at: dict[_Pod, float] = {}
        self._unlogged: dict[_Pod, int] = {}

    def record(self, result: EndpointResult) -> None:
        """Add one scrape's drops (a Scraper on_result callback; any thread)."""
        if not result.dropped:
            return
        pod = (result.target.namespace, result.target.pod)
        n = sum(count for _reason, count in result.dropped)
        now = self._clock()
        with self._lock:
            counts = self._counts.setdefault(pod, {})
            for reason, count in result.dropped:
                key = (result.server, reason)
                counts[key] = counts.get(key, 0) + count
            last = self._logged_at.get(pod)
            if last is not None and now - last < self._log_every:
                self._unlogged[pod] = self._unlogged.get(pod, 0) + n
                return
            self._logged_at[pod] = now
            earlier = self._unlogged.pop(pod, 0)
        first = next((w for w in result.warnings if w.endswith("dropped")), "")
        since = f" ({earlier} more since the last report)" if earlier else ""
        log.warning("workloads: %s/%s (%s): %d scraped sample(s) out of range, not exported%s%s",
                    pod[0], pod[1], result.server, n, f": {first}" if first else "", since)

    def counts(self, namespace: str, pod: str, server: str) -> tuple[tuple[str, int], ...]:
        """(reason, samples dropped) of one endpoint so far, by reason."""
        with self._lock:
            counts = self._counts.get((namespace, pod))
            if not counts:
                return ()
            return tuple(sorted((reason, n) for (srv, reason), n in counts.items() if srv == server))

    def retain(self, pods: Iterable[_Pod]) -> None:
        """Forget every pod not in `pods` (they are no longer scraped)."""
        keep = set(pods)
        with self._lock:
            for pod in [p for p in self._counts if p not in keep]:
                del self._counts[pod]
                self._logged_at.pop(pod, None)
                self._unlogged.pop(pod, None)
