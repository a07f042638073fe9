"""GETs the ready endpoint of inference pods that are still starting, off the tick.

A pod names its server's own readiness endpoint with annotations (discovery's prefix):
  gpulse.dev/ready-path: "/health"    vLLM, TGI, SGLang, trtllm-serve: on the metrics port
  gpulse.dev/ready-path: "/v2/health/ready" and gpulse.dev/ready-port: "8000"
                                       Triton: readiness on the HTTP port, metrics on 8002
Then "model ready" is that endpoint's first HTTP 200 rather than a signal in /metrics.
Only pods whose start is not complete are probed (gpulse.startup hands the list over each
tick), at the scrape interval, each GET bounded by the scrape timeout and 4 KiB, at most
MAX_PER_ROUND pods per round, the least recently probed first: a starting node costs a few
GETs a second, a serving one none.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .. import httpfetch
from ..refresh import Refresher
from .discovery import PORT, PREFIX

if TYPE_CHECKING:
    from ..kube.apiserver import PodInfo

log = logging.getLogger(__name__)

READY_PATH, READY_PORT = PREFIX + "ready-path", PREFIX + "ready-port"
MAX_PER_ROUND = 16
MAX_BODY = 4096


@dataclass(frozen=True)
class ReadyEndpoint:
    host: str
    port: int
    path: str


class InvalidReadyEndpoint(ValueError):  # noqa: N818 - named like discovery.InvalidAnnotation
    """One line naming the annotation that is wrong."""


def endpoint_for(pod: PodInfo) -> Optional[ReadyEndpoint]:
    """The pod's ready endpoint from its annotations (port: gpulse.dev/ready-port, else the
    metrics port gpulse.dev/port); None without gpulse.dev/ready-path or while the pod has
    no IP. Raises InvalidReadyEndpoint for a broken one (the server's metrics signal is
    used instead)."""
    path = pod.annotations.get(READY_PATH, "").strip()
    if not path:
        return None
    if not path.startswith("/") or any(c in path for c in " \t\r\n#"):
        raise InvalidReadyEndpoint(f"{READY_PATH}={path!r}: expected an absolute URL path like /health")
    port_text = pod.annotations.get(READY_PORT, "").strip() or pod.annotations.get(PORT, "").strip()
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise InvalidReadyEndpoint(f"{READY_PORT}={port_text!r}: expected a port number 1-65535")
    if not pod.ip:
        return None
    return ReadyEndpoint(pod.ip, port, path)


class ReadyProber:
    def __init__(self, interval: float, timeout: float) -> None:
        self.timeout = timeout
        self._targets: dict[str, ReadyEndpoint] = {}  # pod uid -> endpoint
        self._results: Mapping[str, tuple[bool, float]] = {}  # pod uid -> (HTTP 200, monotonic time)
        self._lock = threading.Lock()
        self.refresher = Refresher("ready-probe", self._round, interval)

    def start(self) -> None:
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()

    def set_targets(self, targets: Mapping[str, ReadyEndpoint]) -> None:
        with self._lock:
            changed = set(targets) - set(self._targets)
            self._targets = dict(targets)
        if changed:
            self.refresher.wake()

    def results(self) -> Mapping[str, tuple[bool, float]]:
        """Latest outcome per pod uid; lock-free (replaced whole)."""
        return self._results

    def _round(self) -> None:
        with self._lock:
            current = dict(self._targets)
        results = {uid: r for uid, r in self._results.items() if uid in current}
        # The least recently probed first (never probed before any): with more than
        # MAX_PER_ROUND pods starting, each is still probed every few rounds.
        due = sorted(current.items(), key=lambda kv: results[kv[0]][1] if kv[0] in results else -math.inf)
        for uid, ep in due[:MAX_PER_ROUND]:
            results[uid] = (probe(ep, self.timeout), time.monotonic())
            self._results = dict(results)


def probe(ep: ReadyEndpoint, timeout: float) -> bool:
    """True on HTTP 200 within the deadline."""
    try:
        httpfetch.get("http", ep.host, ep.port, ep.path, timeout, MAX_BODY)
        return True
    except httpfetch.FetchError as exc:
        log.debug("ready probe %s:%d%s: %s", ep.host, ep.port, ep.path, exc)
        return False
