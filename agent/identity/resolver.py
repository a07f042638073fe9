"""Placeholder IdentityResolver until the identity issue lands.

Contract: IdentityResolver(config).resolve(reading: NvmlReading, node: dict | None) -> view,
called at start and whenever the set of devices changes; node is the Kubernetes Node
object (dict) or None. The view is what Snapshot.identity holds and /identity serves
(view.as_json() -> dict).
"""

from __future__ import annotations


class IdentityView:
    def as_json(self) -> dict:
        return {"gpus": [], "node": {}, "conflicts": []}


class IdentityResolver:
    def __init__(self, config):
        self.config = config

    def resolve(self, reading, node=None) -> IdentityView:
        return IdentityView()
