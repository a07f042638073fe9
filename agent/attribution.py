"""Placeholder attribution until its issue lands.

Contract: Attributor(window_seconds).update(reading: NvmlReading, view: PodView, now)
-> (pods: tuple[PodShare], unattributed: dict[gpu index, ratio]).
"""

from __future__ import annotations


class Attributor:
    def __init__(self, window_seconds: float):
        self.window_seconds = window_seconds

    def update(self, reading, view, now):
        return (), {}
