"""Which pods on this node to scrape: the gpulse.dev/ annotations, validated.

A pod opts in with
  gpulse.dev/scrape: "true"      required
  gpulse.dev/port:   "8000"      required, 1-65535
  gpulse.dev/path:   "/metrics"  optional, default /metrics
  gpulse.dev/server: "vllm"      optional; one of adapters.BY_SERVER, else detected from names
A pod that opts in with a missing or invalid annotation gets one warning naming the pod
and the annotation (once per pod version, not every scrape) and is skipped. Pods that are
not running or have no IP yet are skipped quietly: that is a normal moment in their life.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .adapters import BY_SERVER

if TYPE_CHECKING:
    from ..kube.apiserver import PodInfo

log = logging.getLogger(__name__)

PREFIX = "gpulse.dev/"
SCRAPE, PORT, PATH, SERVER = PREFIX + "scrape", PREFIX + "port", PREFIX + "path", PREFIX + "server"
DEFAULT_PATH = "/metrics"


@dataclass(frozen=True)
class ScrapeTarget:
    namespace: str
    pod: str
    uid: str
    host: str
    port: int
    path: str = DEFAULT_PATH
    server: str = ""  # empty: detect from the metric names

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.pod)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


class InvalidAnnotation(ValueError):  # noqa: N818 - public name, tests import it
    pass


def target_for(pod: PodInfo) -> ScrapeTarget | None:
    """PodInfo -> ScrapeTarget, None when the pod did not opt in or cannot be scraped yet.

    Raises InvalidAnnotation (one line, naming the annotation) for a broken opt-in.
    """
    ann = pod.annotations
    scrape = ann.get(SCRAPE)
    if scrape is None:
        return None
    if scrape.strip().lower() != "true":
        if scrape.strip().lower() == "false":
            return None
        raise InvalidAnnotation(f"{SCRAPE}={scrape!r}: expected \"true\" or \"false\"")
    port_text = ann.get(PORT)
    if port_text is None:
        raise InvalidAnnotation(f"{PORT} is missing (needed with {SCRAPE}=\"true\")")
    try:
        port = int(port_text.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise InvalidAnnotation(f"{PORT}={port_text!r}: expected a port number 1-65535")
    path = ann.get(PATH, DEFAULT_PATH).strip()
    if not path.startswith("/") or any(c in path for c in " \t\r\n#"):
        raise InvalidAnnotation(f"{PATH}={path!r}: expected an absolute URL path like /metrics")
    server = ann.get(SERVER, "").strip().lower()
    if server and server not in BY_SERVER:
        raise InvalidAnnotation(f"{SERVER}={server!r}: unknown server (one of {', '.join(BY_SERVER)})")
    if pod.phase not in ("Running", "") or not pod.ip:
        return None
    return ScrapeTarget(pod.namespace, pod.name, pod.uid, pod.ip, port, path, server)


class Discovery:
    """Turns pod lists into scrape targets, logging each broken opt-in once."""

    def __init__(self) -> None:
        self._warned: dict[str, str] = {}  # uid -> message last warned about

    def targets(self, pods: Iterable[PodInfo]) -> tuple[ScrapeTarget, ...]:
        out: list[ScrapeTarget] = []
        seen: set[str] = set()
        for pod in pods:
            seen.add(pod.uid)
            try:
                target = target_for(pod)
            except InvalidAnnotation as exc:
                msg = str(exc)
                if self._warned.get(pod.uid) != msg:
                    log.warning("workloads: skipping pod %s/%s: %s", pod.namespace, pod.name, msg)
                    self._warned[pod.uid] = msg
                continue
            self._warned.pop(pod.uid, None)
            if target is not None:
                out.append(target)
        for uid in list(self._warned):
            if uid not in seen:
                del self._warned[uid]
        return tuple(sorted(out, key=lambda t: t.key))
