"""Per-MIG-instance activity from a co-located dcgm-exporter (A100/A30 have no GPM).

DcgmSource(url) scrapes `sources.dcgm-exporter-url` on its own thread, off the tick,
and keeps DCGM_FI_PROF_GR_ENGINE_ACTIVE per (GPU UUID, GPU_I_ID): current() answers
{(gpu_uuid, gpu_instance): ratio}; gpu_instance is None on whole-GPU series. A failed
scrape keeps the last good values for `stale_after` seconds, then drops them (stale
activity is worse than none); status() says which.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Optional

from .. import httpfetch
from ..kernels import parse_exposition
from ..refresh import Refresher, SourceStatus

log = logging.getLogger(__name__)

GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
MAX_BODY_BYTES = 16 * 1024 * 1024
_EMPTY: Mapping[tuple[str, Optional[int]], float] = MappingProxyType({})


def engine_activity(body: bytes) -> dict[tuple[str, Optional[int]], float]:
    """dcgm-exporter /metrics text -> {(gpu uuid, GPU_I_ID or None): ratio}."""
    out: dict[tuple[str, Optional[int]], float] = {}
    for name, labels, value, _ in parse_exposition(body).samples:
        if name != GR_ENGINE_ACTIVE or value != value:  # NaN: DCGM had no value
            continue
        lab = dict(labels)
        uuid = lab.get("UUID") or lab.get("uuid")  # `uuid` under --use-old-namespace
        if not uuid:
            continue
        gi = lab.get("GPU_I_ID", "")
        try:
            key = (uuid, int(gi) if gi != "" else None)
        except ValueError:
            continue
        out[key] = min(1.0, max(0.0, float(value)))
    return out


def fetch(url: str, timeout: float, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    return httpfetch.fetch(url, timeout, max_bytes, accept="text/plain;version=0.0.4")


class DcgmSource:
    """Scrapes on a Refresher (source "dcgm"); values older than `stale_after` are dropped."""

    def __init__(self, url: str, interval: float = 5.0, timeout: float = 2.0, stale_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.interval, self.timeout, self.stale_after = interval, timeout, stale_after
        self._values: Mapping[tuple[str, Optional[int]], float] = _EMPTY
        self.refresher = Refresher("dcgm", self._refresh, interval, stale_after=stale_after, clock=clock)

    def start(self) -> None:
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop(timeout=self.timeout + 1.0)

    def refresh(self) -> bool:
        return self.refresher.run_once()

    def _refresh(self) -> None:
        try:
            self._values = MappingProxyType(engine_activity(fetch(self.url, self.timeout)))
        except httpfetch.FetchError as exc:
            raise httpfetch.FetchError(f"dcgm-exporter {self.url}: {exc}") from None

    def current(self) -> Mapping[tuple[str, Optional[int]], float]:
        age = self.refresher.status().age_seconds
        return self._values if age is not None and age <= self.stale_after else _EMPTY

    def status(self) -> SourceStatus:
        return self.refresher.status()
