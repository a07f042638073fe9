"""Keeps this node's identity current and publishes it to NFD.

`NodeObject` fetches the Kubernetes Node (its labels and providerID) on a background
refresher, so a slow API server never stalls a tick. `IdentityPublisher.update(reading,
now)` resolves the identity at start, whenever the devices, their MIG layout or the Node
object change, and every few minutes; and rewrites the NFD feature file every minute so
its expiry keeps moving. A failed resolution keeps the last good identity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional

from ..errors import one_line
from ..nvml.reading import NvmlReading
from ..refresh import Refresher, SourceStatus
from .labels import write_nfd_features
from .resolver import IdentityResolver, IdentityView

log = logging.getLogger(__name__)
IDENTITY_REFRESH_SECONDS = 300.0
NFD_REWRITE_SECONDS = 60.0


class NodeObject:
    """The Node object by name, refreshed every 5 minutes (30 s after a failure)."""

    def __init__(self, fetch: Callable[[], Any], interval: float = 300.0, retry: float = 30.0):
        self._fetch = fetch
        self.node: Optional[dict[str, Any]] = None
        self.version = 0  # bumps on every successful fetch
        self.refresher = Refresher("node", self._refresh, interval, retry_base=retry, retry_ceiling=retry)

    def _refresh(self) -> None:
        self.node = self._fetch()
        self.version += 1

    def start(self) -> None:
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()

    def status(self) -> SourceStatus:
        return self.refresher.status()


class IdentityPublisher:
    def __init__(self, resolver: IdentityResolver, node: Optional[NodeObject], nfd_file: str):
        self.resolver = resolver
        self.node = node
        self.nfd_file = nfd_file
        self.current: Optional[IdentityView] = None
        self._key: Optional[tuple[Any, ...]] = None
        self._resolved_at = -1e18
        self._written_at = -1e18

    def update(self, reading: NvmlReading, now: float) -> Optional[IdentityView]:
        node, version = (self.node.node, self.node.version) if self.node is not None else (None, 0)
        key = (version,) + tuple((d.uuid, d.mig_enabled, d.facts.mig_profiles) for d in reading.devices)
        if key != self._key or now - self._resolved_at >= IDENTITY_REFRESH_SECONDS:
            try:
                self.current = self.resolver.resolve(reading, node)
            except Exception:
                log.exception("identity resolution failed")
                return self.current
            self._key, self._resolved_at, self._written_at = key, now, -1e18
        if self.nfd_file and self.current is not None and now - self._written_at >= NFD_REWRITE_SECONDS:
            self._written_at = now
            try:
                write_nfd_features(self.nfd_file, self.current.labels(), expiry_seconds=3 * NFD_REWRITE_SECONDS)
            except OSError as exc:
                log.warning("cannot write NFD feature file %s: %s", self.nfd_file, one_line(exc))
        return self.current
