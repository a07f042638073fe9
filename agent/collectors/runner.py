"""Runs the enabled collectors once per tick: isolated, timed, capped.

A collector that raises (or renders a family it did not declare) yields nothing this tick
and gpulse_collector_success{collector} 0; the rest of the scrape still renders. Each
family keeps at most --limits.max-series samples; what is cut is counted per family in
gpulse_series_dropped_total. The self collector runs last with this tick's outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from types import MappingProxyType

from ..family import Family
from ..snapshot import CollectorStat, Snapshot
from .base import Collector

log = logging.getLogger(__name__)


class CollectorRunner:
    def __init__(self, collectors: Sequence[Collector], self_collector: Collector, max_series: int):
        self.collectors = tuple(collectors)
        self.self_collector = self_collector
        self.max_series = max_series
        self.dropped: dict[str, int] = {}  # family -> series cut since start (a counter)
        self._warned: set[str] = set()

    def run(self, snapshot: Snapshot) -> list[Family]:
        families: list[Family] = []
        stats: dict[str, CollectorStat] = {}
        for c in self.collectors:
            t0 = time.perf_counter()
            try:
                produced = list(c.collect(snapshot))
                undeclared = [f.name for f in produced if f.name not in c.families]
                if undeclared:
                    raise ValueError(f"rendered undeclared families {undeclared}")
                ok = True
            except Exception:
                if c.name not in self._warned:
                    self._warned.add(c.name)
                    log.exception("collector %s failed", c.name)
                produced, ok = [], False
            stats[c.name] = CollectorStat(ok, time.perf_counter() - t0)
            for fam in produced:
                self._cap(fam)
                families.append(fam)
        snapshot = dataclasses.replace(snapshot, collectors=MappingProxyType(stats),
                                       dropped=MappingProxyType(dict(self.dropped)))
        families.extend(self.self_collector.collect(snapshot))
        return families

    def _cap(self, fam: Family) -> None:
        over = len(fam.samples) - self.max_series
        if over > 0:
            self.dropped[fam.name] = self.dropped.get(fam.name, 0) + over
            del fam.samples[self.max_series:]
