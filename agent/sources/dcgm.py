"""Per-MIG-instance activity from a co-located dcgm-exporter (A100/A30 have no GPM).

DcgmSource(config) scrapes `sources.dcgm-exporter-url` on its own thread, off the tick,
and keeps DCGM_FI_PROF_GR_ENGINE_ACTIVE per (GPU UUID, GPU_I_ID): current() answers
{(gpu_uuid, gpu_instance): ratio}; gpu_instance is None on whole-GPU series. A failed
scrape keeps the last good values for `stale_after` seconds, then drops them (stale
activity is worse than none); status() says which.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from ..kernels import parse_exposition
from ..snapshot import SourceStatus

log = logging.getLogger(__name__)

GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
MAX_BODY_BYTES = 16 * 1024 * 1024
_EMPTY: Mapping = MappingProxyType({})


def engine_activity(body: bytes) -> dict:
    """dcgm-exporter /metrics text -> {(gpu uuid, GPU_I_ID or None): ratio}."""
    out = {}
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


# A co-located exporter is reached directly: HTTP(S)_PROXY from the environment must not apply.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"})
    with _OPENER.open(req, timeout=timeout) as resp:  # noqa: S310 - configured URL
        body = resp.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"body larger than {max_bytes} bytes")
    return body


class DcgmSource:
    def __init__(self, config, interval: float = 5.0, timeout: float = 2.0, stale_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.url = config.sources_dcgm_exporter_url
        self.interval, self.timeout, self.stale_after = interval, timeout, stale_after
        self._clock = clock
        self._values: Mapping = _EMPTY
        self._last_success: Optional[float] = None
        self._error = "not yet scraped"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gpulse-dcgm", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def refresh(self) -> bool:
        try:
            values = engine_activity(fetch(self.url, self.timeout))
        except Exception as exc:  # noqa: BLE001 - any failure is reported; the thread lives on
            error = f"dcgm-exporter {self.url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            with self._lock:
                if error != self._error:
                    log.warning("%s", error)
                self._error = error
            return False
        with self._lock:
            self._values = MappingProxyType(values)
            self._last_success = self._clock()
            self._error = ""
        return True

    def current(self) -> Mapping:
        with self._lock:
            if self._last_success is None or self._clock() - self._last_success > self.stale_after:
                return _EMPTY
            return self._values

    def status(self) -> SourceStatus:
        with self._lock:
            age = None if self._last_success is None else self._clock() - self._last_success
            fresh = age is not None and age <= self.stale_after
            return SourceStatus(up=fresh and not self._error, age_seconds=age, error=self._error)
