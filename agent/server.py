"""HTTP: /metrics, /livez, /readyz, /identity, /debug/snapshot, with hard bounds.

/metrics returns the bytes the last tick rendered (gzip when the scraper accepts it,
OpenMetrics when it asks for it); nothing here touches NVML, the kubelet or the network.

One asyncio event loop on one thread serves every connection (bench/RESULTS.md compares it
with the standard library's thread-per-connection server under attack: a held connection
costs a few KiB instead of a thread, and only one thread competes with the tick for the GIL
however many clients there are). Every cost a peer can cause is bounded:

- connections: at most `max_connections`, and a quarter of them per client address; past
  that the oldest connection that is only waiting (idle keep-alive first, then one still
  sending its request head) is closed to make room, and a new connection is refused only
  when every slot is being answered;
- time: one deadline covers the TLS handshake, the request line and the headers
  (`header_timeout`); a kept-alive connection may idle `idle_timeout` before its next
  request; a response must be taken within `write_timeout`;
- bytes: the request head is at most `MAX_HEAD_BYTES` in at most `MAX_HEADERS` lines, no
  request body is accepted, at most one pipelined head is buffered, and a response is
  written 64 KiB at a time as the client reads it;
- work: Accept and Accept-Encoding are read for at most `MAX_MEDIA_RANGES` entries;
  /debug/snapshot is off unless enabled and is rendered at most once per tick, off the loop;
  bcrypt checks and Kubernetes reviews run on two worker threads, cached, with a bounded
  queue (past it: 503).

Peer mistakes are answered with a status and counted in gpulse_requests_refused_total;
they never log a traceback. TLS, basic auth and rate limits come from --web.config.file
(gpulse.webconfig); Kubernetes authorization of scrapers from gpulse.kube.authz.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional, Protocol

from . import __version__
from .httpconn import COMPONENT, TEXT, Connection, Limits, Request, loop_exception
from .kernels import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from .refusals import Refusals
from .webauth import DUMMY_HASH, AuthCache, TokenBucket, basic_credentials, check_password

if TYPE_CHECKING:
    from .sampler import Rendered
    from .webconfig import WebConfig, WebConfigSource

log = logging.getLogger(__name__)

MAX_MEDIA_RANGES = 32  # entries of Accept / Accept-Encoding read; Prometheus sends 5
MAX_PENDING_WORK = 8  # bcrypt checks, Kubernetes reviews and snapshot renders queued at once
PROTECTED = ("/metrics", "/identity", "/debug/snapshot")  # probes and the index stay open to the kubelet

INDEX = f"""<html><head><title>gpulse</title></head><body><h1>gpulse {__version__}</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/identity">/identity</a></li>
<li><a href="/livez">/livez</a></li><li><a href="/readyz">/readyz</a></li></ul></body></html>
""".encode()


class ScrapeSource(Protocol):
    """What the handler reads (gpulse.sampler.Sampler): the last tick's bytes and health."""

    @property
    def current(self) -> Optional[Rendered]: ...

    def liveness(self) -> tuple[bool, str]: ...

    def readiness(self) -> tuple[bool, str]: ...


class Authorizer(Protocol):
    """Kubernetes authorization of a bearer token for a path (gpulse.kube.authz.KubeAuthorizer)."""

    def review(self, token: str, path: str) -> tuple[int, str]:
        """(HTTP status: 200, 401 or 403, reason); blocking (called on a worker thread)."""
        ...

    def cached(self, token: str, path: str) -> Optional[tuple[int, str]]: ...


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
    """'a;q=0.5, b' -> {'a': 0.5, 'b': 1.0} (media ranges or codings, parameters other than q
    dropped); at most MAX_MEDIA_RANGES entries are read."""
    out: dict[str, float] = {}
    for part in header.split(",", MAX_MEDIA_RANGES)[:MAX_MEDIA_RANGES]:
        token, *params = [p.strip() for p in part.split(";", 8)[:8]]
        if not token:
            continue
        q = 1.0
        for p in params:
            if p[:2].lower() == "q=":
                try:
                    q = float(p[2:12])
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


def parse_listen_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class WebServer:
    """The listening socket is bound in the constructor (errors surface there); start()
    runs the event loop on the thread gpulse-http."""

    def __init__(self, listen_address: str, sampler: Optional[ScrapeSource], *,
                 web_config: Optional[WebConfigSource] = None, authorizer: Optional[Authorizer] = None,
                 debug_snapshot: bool = False, limits: Optional[Limits] = None,
                 refusals: Optional[Refusals] = None) -> None:
        self.sampler = sampler
        self.web_config = web_config
        self.authorizer = authorizer
        self.debug_snapshot = debug_snapshot
        self.limits = limits or Limits()
        self.refusals = refusals or Refusals()
        host, port = parse_listen_address(listen_address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(256)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.server_address: tuple[Any, ...] = sock.getsockname()
        self.loop = asyncio.new_event_loop()
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._connections: dict[Connection, None] = {}  # insertion-ordered: oldest first
        self._per_client: collections.Counter[str] = collections.Counter()
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpulse-http-work")
        # bcrypt is meant to be slow (~70 ms at cost 10): one check at a time, as exporter-toolkit
        # does, so that guessing floods cost at most one core
        self._bcrypt = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpulse-http-bcrypt")
        self._pending_work = 0
        self._auth_cache = AuthCache()
        self._bucket: Optional[TokenBucket] = None  # for the rate_limit in force; a new one when it changes
        self._json_cache: dict[str, tuple[Optional[Rendered], asyncio.Future[bytes]]] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.set_exception_handler(loop_exception)

            async def listen() -> None:
                self._server = await self.loop.create_server(lambda: Connection(self), sock=self.socket)

            self.loop.run_until_complete(listen())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="gpulse-http", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self._thread

    def shutdown(self) -> None:
        if self._thread is None:
            self.server_close()
            return

        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                conn.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self._thread.join(5)
        self._thread = None
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._bcrypt.shutdown(wait=False, cancel_futures=True)
        self.server_close()

    def server_close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()

    # --- connection accounting (loop thread) ----------------------------------------------------
    def admit(self, conn: Connection) -> bool:
        """Make room for a new connection: past a cap, the oldest connection that is only
        waiting (kept alive idle, or still sending its request head) is closed first, so that
        slow or stalled clients give way to new ones; refused when every slot is answering."""
        client = conn.client
        if self._per_client[client] >= self.limits.per_client:
            if not self._evict(lambda c: c.client == client):
                self.refusals.refuse(COMPONENT, "client_connections",
                                     f"{client} holds {self._per_client[client]} connections that are all being "
                                     f"answered (at most {self.limits.per_client} per client)")
                return False
        if len(self._connections) >= self.limits.max_connections and not self._evict(lambda c: True):
            self.refusals.refuse(COMPONENT, "connections",
                                 f"{len(self._connections)} connections are all being answered (at most "
                                 f"{self.limits.max_connections})")
            return False
        self._connections[conn] = None
        self._per_client[client] += 1
        return True

    def _evict(self, which: Callable[[Connection], bool]) -> bool:
        for state in ("idle", "head"):
            victim = next((c for c in self._connections if c.state == state and which(c)), None)
            if victim is not None:
                if state == "head":
                    self.refusals.refuse(COMPONENT, "evicted", f"{victim.client}: an unfinished request head gave "
                                                              "way to a new connection")
                victim.abort()
                return True
        return False

    def release(self, conn: Connection) -> None:
        if self._connections.pop(conn, 0) is None:
            self._per_client[conn.client] -= 1
            if self._per_client[conn.client] <= 0:
                del self._per_client[conn.client]

    @property
    def connections(self) -> int:
        return len(self._connections)

    def settings(self) -> Optional[WebConfig]:
        return self.web_config.get() if self.web_config is not None else None

    # --- requests (loop thread) ---------------------------------------------------------------
    def rate_limited(self, cfg: Optional[WebConfig]) -> bool:
        rate = cfg.rate_limit if cfg is not None else None
        if rate is None:
            return False
        if self._bucket is None or (self._bucket.interval, self._bucket.burst) != (rate.interval, rate.burst):
            self._bucket = TokenBucket(rate.interval, rate.burst)
        return not self._bucket.take()

    def respond(self, conn: Connection, req: Request) -> None:
        """Answer `req` on `conn`, now or (authorization, snapshot) from a worker."""
        if req.method not in ("GET", "HEAD"):
            conn.send(405, b"GET and HEAD only\n", TEXT, extra=(("Allow", "GET, HEAD"),))
            return
        cfg = self.settings()
        if self.rate_limited(cfg):
            self.refusals.refuse(COMPONENT, "rate_limited", "rate_limit of --web.config.file exceeded")
            conn.send(429, b"too many requests\n", TEXT)
            return
        if req.path in PROTECTED:
            if cfg is not None and cfg.users:
                self._basic_auth(conn, req, cfg)
                return
            if self.authorizer is not None:
                self._kube_auth(conn, req, self.authorizer)
                return
        self.serve(conn, req)

    def serve(self, conn: Connection, req: Request) -> None:
        path, sampler = req.path, self.sampler
        if path == "/metrics":
            rendered = sampler.current if sampler is not None else None
            if rendered is None:
                return conn.send(503, b"no tick completed yet\n", TEXT)
            gzip = accepts_gzip(req.headers.get("accept-encoding", ""))
            if wants_openmetrics(req.headers.get("accept", "")):
                body = rendered.openmetrics_gzip if gzip else rendered.openmetrics
                return conn.send(200, body, OPENMETRICS_CONTENT_TYPE, "gzip" if gzip else "")
            if gzip:
                return conn.send(200, rendered.text_gzip, TEXT_CONTENT_TYPE, "gzip")
            return conn.send(200, rendered.text, TEXT_CONTENT_TYPE)
        if path == "/livez" or path == "/readyz":
            if sampler is None:
                return conn.send(503, b"not started\n", TEXT)
            ok, reason = sampler.liveness() if path == "/livez" else sampler.readiness()
            if ok:
                return conn.send(200, b"ok\n" if path == "/livez" else b"ready\n", TEXT)
            word = "alive" if path == "/livez" else "ready"
            return conn.send(503, f"not {word}: {reason}\n".encode(), TEXT)
        if path == "/identity":
            return self._json(conn, "identity", _identity_json)
        if path == "/debug/snapshot":
            if not self.debug_snapshot:
                return conn.send(404, b"not found (/debug/snapshot is off; start with --web.debug-snapshot)\n",
                                 TEXT)
            return self._json(conn, "snapshot", _snapshot_json)
        if path == "/":
            return conn.send(200, INDEX, "text/html; charset=utf-8")
        return conn.send(404, b"not found\n", TEXT)

    def _json(self, conn: Connection, name: str, render: Callable[[Optional[Rendered]], tuple[int, bytes]]) -> None:
        """A JSON view of the last tick, rendered once per tick on a worker; requests in the
        same tick share the rendering."""
        rendered = self.sampler.current if self.sampler is not None else None
        cached = self._json_cache.get(name)
        if cached is None or cached[0] is not rendered:
            future = self._submit(lambda: _encode(render(rendered)))
            if future is None:
                return self._busy(conn)
            self._json_cache[name] = (rendered, future)
        else:
            future = cached[1]

        def done(f: asyncio.Future[bytes]) -> None:
            if f.cancelled() or f.exception() is not None:
                conn.send(503, b'{"error": "not available"}\n', "application/json")
                return
            data = f.result()
            conn.send(int(data[:3]), data[3:], "application/json")
        conn.wait(future, done)

    def _submit(self, fn: Callable[[], Any],
                executor: Optional[concurrent.futures.Executor] = None) -> Optional[asyncio.Future[Any]]:
        """fn() on a worker thread, or None when MAX_PENDING_WORK are already queued."""
        if self._pending_work >= MAX_PENDING_WORK:
            return None
        self._pending_work += 1
        future = self.loop.run_in_executor(executor or self._workers, fn)

        def finished(_f: asyncio.Future[Any]) -> None:
            self._pending_work -= 1
        future.add_done_callback(finished)
        return future

    def _busy(self, conn: Connection) -> None:
        self.refusals.refuse(COMPONENT, "busy", f"more than {MAX_PENDING_WORK} checks or renders queued")
        conn.send(503, b"busy, retry\n", TEXT, extra=(("Retry-After", "1"),))

    def _basic_auth(self, conn: Connection, req: Request, cfg: WebConfig) -> None:
        challenge = (("WWW-Authenticate", 'Basic realm="gpulse"'),)
        user, password = basic_credentials(req.headers.get("authorization", ""))
        if user is None:
            self.refusals.refuse(COMPONENT, "unauthorized", f"{conn.client}: no basic auth credentials")
            return conn.send(401, b"unauthorized\n", TEXT, extra=challenge)
        hashed = cfg.users.get(user, DUMMY_HASH)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed))).digest()
        known = self._auth_cache.get(key)

        def finish(ok: bool) -> None:
            if ok and user in cfg.users:
                self.serve(conn, req)
            else:
                self.refusals.refuse(COMPONENT, "unauthorized", f"{conn.client}: wrong user or password")
                conn.send(401, b"unauthorized\n", TEXT, extra=challenge)

        if known is not None:
            return finish(known)

        def check() -> bool:
            ok = check_password(password, hashed)
            self._auth_cache.put(key, ok)
            return ok
        future = self._submit(check, self._bcrypt)
        if future is None:
            return self._busy(conn)
        conn.wait(future, lambda f: finish(not f.cancelled() and f.exception() is None and bool(f.result())))

    def _kube_auth(self, conn: Connection, req: Request, authorizer: Authorizer) -> None:
        header = req.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""

        def finish(status: int, reason: str) -> None:
            if status == 200:
                self.serve(conn, req)
                return
            self.refusals.refuse(COMPONENT, "unauthorized" if status == 401 else "forbidden",
                                 f"{conn.client}: {reason}")
            conn.send(status, (reason + "\n").encode(), TEXT,
                      extra=(("WWW-Authenticate", "Bearer"),) if status == 401 else ())

        if not token:
            return finish(401, "a bearer token is required")
        cached = authorizer.cached(token, req.path)
        if cached is not None:
            return finish(*cached)
        future = self._submit(lambda: authorizer.review(token, req.path))
        if future is None:
            return self._busy(conn)

        def done(f: asyncio.Future[tuple[int, str]]) -> None:
            if f.cancelled() or f.exception() is not None:
                finish(503, "authorization unavailable")
            else:
                finish(*f.result())
        conn.wait(future, done)


def _encode(result: tuple[int, bytes]) -> bytes:
    status, body = result
    return b"%03d" % status + body


def _identity_json(rendered: Optional[Rendered]) -> tuple[int, bytes]:
    snapshot = rendered.snapshot if rendered is not None else None
    identity = snapshot.identity if snapshot is not None else None
    if identity is None:
        return 503, b'{"error": "identity not resolved yet"}\n'
    return 200, json.dumps(to_jsonable(identity), indent=2).encode() + b"\n"


def _snapshot_json(rendered: Optional[Rendered]) -> tuple[int, bytes]:
    if rendered is None:
        return 503, b'{"error": "no tick completed yet"}\n'
    return 200, json.dumps(to_jsonable(rendered.snapshot)).encode() + b"\n"


def make_server(listen_address: str, sampler: Optional[ScrapeSource], **options: Any) -> WebServer:
    return WebServer(listen_address, sampler, **options)


def serve_in_thread(server: WebServer) -> threading.Thread:
    return server.start()
