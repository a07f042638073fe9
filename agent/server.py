"""HTTP: /metrics, /livez, /readyz, /identity, /debug/snapshot.

/metrics returns the bytes the last tick rendered (gzip when the scraper accepts it,
OpenMetrics when it asks for it); nothing here touches NVML, the kubelet or the network.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Protocol

from . import __version__
from .kernels import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE

if TYPE_CHECKING:
    from .sampler import Rendered

log = logging.getLogger(__name__)

INDEX = f"""<html><head><title>gpulse</title></head><body><h1>gpulse {__version__}</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/identity">/identity</a></li>
<li><a href="/debug/snapshot">/debug/snapshot</a></li><li><a href="/livez">/livez</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>
""".encode()


class ScrapeSource(Protocol):
    """What the handler reads (gpulse.sampler.Sampler): the last tick's bytes and health."""

    @property
    def current(self) -> Optional[Rendered]: ...

    def liveness(self) -> tuple[bool, str]: ...

    def readiness(self) -> tuple[bool, str]: ...


def to_jsonable(obj: object) -> object:
    """Snapshots and identity views as plain JSON data."""
    if hasattr(obj, "as_json"):
        return obj.as_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (dict, MappingProxyType)):
        return {(",".join(map(str, k)) if isinstance(k, tuple) else str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def _qualities(header: str) -> dict[str, float]:
    """'a;q=0.5, b' -> {'a': 0.5, 'b': 1.0} (media ranges or codings, parameters other than q dropped)."""
    out: dict[str, float] = {}
    for part in header.split(","):
        token, *params = [p.strip() for p in part.split(";")]
        if not token:
            continue
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        out[token.lower()] = max(q, out.get(token.lower(), 0.0))
    return out


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip: named with q > 0, or covered by * and not refused."""
    q = _qualities(header)
    if "gzip" in q:
        return q["gzip"] > 0
    return q.get("*", 0.0) > 0


def wants_openmetrics(header: str) -> bool:
    """True when the scraper prefers OpenMetrics (Prometheus lists it first) over text 0.0.4."""
    q = _qualities(header)
    om = max((v for k, v in q.items() if k.startswith("application/openmetrics-text")), default=0.0)
    text = max((v for k, v in q.items() if k in ("text/plain", "text/*", "*/*")), default=0.0)
    return om > 0 and om >= text


class _Handler(BaseHTTPRequestHandler):
    server_version = f"gpulse/{__version__}"
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY, Nagle meets the scraper's
    # delayed ACK on kept-alive connections and adds ~40 ms to every scrape.
    disable_nagle_algorithm = True
    # An idle keep-alive or half-open client must not hold a thread and an fd forever.
    timeout = 30
    sampler: ClassVar[Optional[ScrapeSource]] = None  # set by make_server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: Prometheus scrapes every second
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, content_type: str, encoding: str = "") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Vary", "Accept, Accept-Encoding")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        sampler = self.sampler
        assert sampler is not None, "make_server sets the sampler"
        if path == "/metrics":
            rendered = sampler.current
            if rendered is None:
                return self._send(503, b"no tick completed yet\n", "text/plain; charset=utf-8")
            gzip = accepts_gzip(self.headers.get("Accept-Encoding", ""))
            if wants_openmetrics(self.headers.get("Accept", "")):
                body = rendered.openmetrics_gzip if gzip else rendered.openmetrics
                return self._send(200, body, OPENMETRICS_CONTENT_TYPE, "gzip" if gzip else "")
            if gzip:
                return self._send(200, rendered.text_gzip, TEXT_CONTENT_TYPE, "gzip")
            return self._send(200, rendered.text, TEXT_CONTENT_TYPE)
        if path == "/livez":
            alive, reason = sampler.liveness()
            if alive:
                return self._send(200, b"ok\n", "text/plain; charset=utf-8")
            return self._send(503, f"not alive: {reason}\n".encode(), "text/plain; charset=utf-8")
        if path == "/readyz":
            ready, reason = sampler.readiness()
            if ready:
                return self._send(200, b"ready\n", "text/plain; charset=utf-8")
            return self._send(503, f"not ready: {reason}\n".encode(), "text/plain; charset=utf-8")
        if path == "/identity":
            rendered = sampler.current
            snapshot = rendered.snapshot if rendered is not None else None
            identity = snapshot.identity if snapshot is not None else None
            doc = to_jsonable(identity) if identity is not None else {"error": "identity not resolved yet"}
            return self._send(200 if identity is not None else 503, json.dumps(doc, indent=2).encode() + b"\n",
                              "application/json")
        if path == "/debug/snapshot":
            rendered = sampler.current
            if rendered is None:
                return self._send(503, b'{"error": "no tick completed yet"}\n', "application/json")
            return self._send(200, json.dumps(to_jsonable(rendered.snapshot)).encode() + b"\n", "application/json")
        if path == "/":
            return self._send(200, INDEX, "text/html; charset=utf-8")
        return self._send(404, b"not found\n", "text/plain; charset=utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default listen backlog of 5 drops simultaneous connects (20 scrapers at once),
    # and each dropped one waits the 1 s TCP retry.
    request_queue_size = 128


class _Server6(_Server):
    address_family = socket.AF_INET6


def parse_listen_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def make_server(listen_address: str, sampler: ScrapeSource) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"sampler": sampler})
    host, port = parse_listen_address(listen_address)
    server_cls = _Server6 if ":" in host else _Server
    return server_cls((host, port), handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="gpulse-http", daemon=True)
    t.start()
    return t
