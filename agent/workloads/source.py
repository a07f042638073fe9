"""Placeholder WorkloadSource until the queue-depth issue lands.

Contract: WorkloadSource(config) with start(), stop() and current() ->
(tuple[WorkloadState], SourceStatus). Scrapes run off the tick.
"""

from __future__ import annotations

from ..snapshot import SourceStatus


class WorkloadSource:
    def __init__(self, config):
        self.config = config

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def current(self):
        return (), SourceStatus(up=False, error="workload collection not built")
