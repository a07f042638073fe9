"""WorkloadSource: discovery + scraping + push, read by the sampler once per tick.

Contract: WorkloadSource(config) with start(), stop(), current() -> tuple[WorkloadState]
and status() -> SourceStatus (gpulse_source_up{source="workloads"}: scraping and push run;
age is the oldest endpoint result). current() only reads references the background threads
publish; it never waits on the network. The pod watch it may own reports on its own
(source "apiserver").

Pieces, each on its own thread(s):
  PodWatcher  (gpulse.kube.apiserver) list+watch of this node's pods -> PodIndex
  Discovery   PodIndex changes -> scrape targets (gpulse.dev/ annotations)
  Scraper     targets -> per-endpoint results every workloads.scrape-interval
  PushServer  gRPC on workloads.push-socket -> PushStore with a TTL

The PodIndex can be shared with pod attribution: pass `pod_watcher=` (already started
or not) to use one watch for both; otherwise the source creates its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Optional

from ..config import Config
from ..kube.apiserver import KubeClient, KubeConfig, KubeError, PodIndex, PodWatcher
from ..refresh import SourceStatus
from ..refusals import Refusals
from ..snapshot import WorkloadState
from .discovery import Discovery
from .drops import DropLedger
from .push import PushServer, PushStore
from .scrape import EndpointResult, Scraper

log = logging.getLogger(__name__)

STALE_FLOOR_SECONDS = 5.0


class WorkloadSource:
    def __init__(self, config: Config, pod_watcher: Optional[PodWatcher] = None,
                 refusals: Optional[Refusals] = None) -> None:
        self.config = config
        self.refusals = refusals or Refusals()
        self.enabled = config.workloads_enabled
        self.pod_watcher = pod_watcher
        self._own_watcher = False
        self.discovery = Discovery()
        self.drops = DropLedger()  # scraped samples out of range, per endpoint
        self.scraper = Scraper(config.workloads_scrape_interval, config.workloads_scrape_timeout,
                               config.workloads_max_body_bytes, config.workloads_concurrency,
                               on_result=self.drops.record)
        self.push_store = PushStore(config.workloads_push_ttl)
        self.push_server: Optional[PushServer] = None
        self._error = ""
        self._started_at: Optional[float] = None

    def start(self) -> None:
        self._started_at = time.monotonic()
        if not self.enabled:
            return
        if self.pod_watcher is None and self.config.kube_enabled:
            try:
                client = KubeClient(KubeConfig.load(self.config))
                self.pod_watcher = PodWatcher(client, self.config.node_name)
                self._own_watcher = True
            except KubeError as exc:
                self._error = str(exc)
                log.warning("workloads: discovery off: %s", exc)
        if self.pod_watcher is not None:
            self.pod_watcher.index.subscribe(self._on_pods)
            if self.pod_watcher.index.synced:
                self._on_pods(self.pod_watcher.index)
        self.scraper.start()
        if self._own_watcher and self.pod_watcher is not None:  # _own_watcher implies a watcher
            self.pod_watcher.start()
        if self.config.workloads_push_socket:
            server = PushServer(self.config.workloads_push_socket, self.push_store,
                                self.pod_watcher.index if self.pod_watcher else None,
                                auth=self.config.workloads_push_auth, procfs=self.config.path_procfs,
                                refusals=self.refusals)
            try:
                server.start()
                self.push_server = server
            except (OSError, RuntimeError) as exc:
                self._error = str(exc)
                log.warning("workloads: push off: %s", exc)

    def stop(self) -> None:
        if self.push_server:
            self.push_server.stop()
        if self._own_watcher and self.pod_watcher:
            self.pod_watcher.stop()
        self.scraper.stop()

    def _on_pods(self, index: PodIndex) -> None:
        targets = self.discovery.targets(index.pods())
        self.scraper.set_targets(targets)
        self.drops.retain(t.key for t in targets)

    @property
    def stale_after(self) -> float:
        """An endpoint result older than this is stale: its scrapes are not completing (the
        workers are held, or the round is starved), so its last values are not reported."""
        return max(STALE_FLOOR_SECONDS, 3 * self.scraper.interval + self.scraper.timeout)

    def _scraped(self, now: float) -> tuple[WorkloadState, ...]:
        out: list[WorkloadState] = []
        stale_after = self.stale_after
        for r in self.scraper.results():
            if now - r.finished_at <= stale_after:
                dropped = self.drops.counts(r.target.namespace, r.target.pod, r.server) if r.up else ()
                if dropped and r.states:
                    out.append(replace(r.states[0], samples_dropped=dropped))
                    out.extend(r.states[1:])
                else:
                    out.extend(r.states)
            else:
                out.append(WorkloadState(r.target.namespace, r.target.pod, r.server or r.target.server or "unknown",
                                         scrape_up=False, scrape_duration_seconds=r.duration))
        return tuple(out)

    def current(self) -> tuple[WorkloadState, ...]:
        if not self.enabled:
            return ()
        scraped = self._scraped(time.monotonic())
        seen = {(s.namespace, s.pod, s.server, s.model) for s in scraped}
        pushed = tuple(s for s in self.push_store.states()
                       if (s.namespace, s.pod, s.server, s.model) not in seen)
        return tuple(scraped) + pushed

    def endpoint_results(self) -> tuple[EndpointResult, ...]:
        """The last scrape result of each endpoint (start signals included); lock-free."""
        return self.scraper.results()

    def pushed(self) -> tuple[WorkloadState, ...]:
        """What pushing workloads reported and has not expired."""
        return self.push_store.states() if self.enabled else ()

    def status(self) -> SourceStatus:
        if not self.enabled:
            return SourceStatus(up=False, error="workloads.enabled is false")
        results = self.scraper.results()
        age = max(0.0, time.monotonic() - min(r.finished_at for r in results)) if results else None
        if not self._error and age is not None and age > self.stale_after:
            stale = sum(1 for r in results if time.monotonic() - r.finished_at > self.stale_after)
            return SourceStatus(up=False, age_seconds=age,
                                error=f"{stale} endpoint(s) without a finished scrape for over {self.stale_after:g}s")
        return SourceStatus(up=not self._error, age_seconds=age, error=self._error)
