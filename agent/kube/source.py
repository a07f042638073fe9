"""Placeholder PodSource until the attribution issue lands.

Contract: PodSource(config) with start(), stop() and current() -> PodView, where PodView
has .allocations (tuple), .up (bool), .age_seconds (float|None), .error (str) and
resolve_pid(pid) -> pod ref or None. Refreshes run off the tick on their own thread.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PodView:
    allocations: tuple = ()
    up: bool = False
    age_seconds: float | None = None
    error: str = "pod attribution not built"

    def resolve_pid(self, pid):
        return None


class PodSource:
    def __init__(self, config):
        self.config = config

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def current(self) -> PodView:
        return PodView()
