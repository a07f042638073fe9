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
import base64
import binascii
import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional, Protocol

from . import __version__
from .kernels import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from .refusals import Refusals

if TYPE_CHECKING:
    from .sampler import Rendered
    from .webconfig import WebConfig, WebConfigSource

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024  # request line and headers; Prometheus sends ~300 bytes
MAX_HEADERS = 64
MAX_BUFFERED_BYTES = 64 * 1024  # pipelined requests waiting for their turn (asyncio reads 256 KiB at most)
MAX_MEDIA_RANGES = 32  # entries of Accept / Accept-Encoding read; Prometheus sends 5
WRITE_CHUNK = 64 * 1024
LINGER_SECONDS = 1.0  # after a last answer, input is drained this long (and LINGER_BYTES at most)
LINGER_BYTES = 1024 * 1024
AUTH_CACHE_ENTRIES = 256
MAX_PENDING_WORK = 8  # bcrypt checks, Kubernetes reviews and snapshot renders queued at once
PROTECTED = ("/metrics", "/identity", "/debug/snapshot")  # probes and the index stay open to the kubelet
COMPONENT = "http"

INDEX = f"""<html><head><title>gpulse</title></head><body><h1>gpulse {__version__}</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/identity">/identity</a></li>
<li><a href="/livez">/livez</a></li><li><a href="/readyz">/readyz</a></li></ul></body></html>
""".encode()
_TEXT = "text/plain; charset=utf-8"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


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


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    write_timeout: float = 30.0

    @property
    def per_client(self) -> int:
        return max(2, self.max_connections // 4)


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


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]  # lower-case names; only the first of repeated headers

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class BadRequestError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line); BadRequestError otherwise."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes any byte; kept for clarity
        raise BadRequestError(400, "undecodable head") from None
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequestError(431, f"more than {MAX_HEADERS} header lines")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequestError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequestError(505, "HTTP/1.0 and HTTP/1.1 only")
    if target.startswith(("http://", "https://")):  # absolute-form, which HTTP/1.1 servers must take
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if not target.startswith("/"):
        raise BadRequestError(400, "request target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequestError(400, "malformed header line")
        headers.setdefault(name.lower(), value.strip())
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
        raise BadRequestError(413, "request bodies are not accepted")
    return Request(method, target.split("?", 1)[0], version, headers)


class _AuthCache:
    """Outcomes of password checks by a digest of (user, password, hash): bounded LRU."""

    def __init__(self, entries: int = AUTH_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._data: collections.OrderedDict[bytes, bool] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Optional[bool]:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, ok: bool) -> None:
        with self._lock:
            self._data[key] = ok
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)


# A hash (cost 10) to check unknown users against, so that a wrong user costs what a wrong
# password does and user names cannot be told apart by timing.
_DUMMY_HASH = b"$2b$10$V4LqGED8SLKUPp78840ygO9rYRq8hdgGp1CB/yxR9jVYU1cIhKBuW"


def _check_password(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # only with basic_auth_users: the one optional dependency of the server

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a malformed stored hash: refuse (the config check makes this rare)
        return False


class _TokenBucket:
    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.burst, self._clock = interval, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WebServer:
    """The listening socket is bound in the constructor (errors surface there); start()
    runs the event loop on the thread gpulse-http."""

    def __init__(self, listen_address: str, sampler: Optional[ScrapeSource], *,
                 web_config: Optional[WebConfigSource] = None, authorizer: Optional[Authorizer] = None,
                 debug_snapshot: bool = False, limits: Limits = Limits(),
                 refusals: Optional[Refusals] = None) -> None:
        self.sampler = sampler
        self.web_config = web_config
        self.authorizer = authorizer
        self.debug_snapshot = debug_snapshot
        self.limits = limits
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
        self._connections: dict[_Connection, None] = {}  # insertion-ordered: oldest first
        self._per_client: collections.Counter[str] = collections.Counter()
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpulse-http-work")
        # bcrypt is meant to be slow (~70 ms at cost 10): one check at a time, as exporter-toolkit
        # does, so that guessing floods cost at most one core
        self._bcrypt = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpulse-http-bcrypt")
        self._pending_work = 0
        self._auth_cache = _AuthCache()
        self._bucket: Optional[_TokenBucket] = None
        self._bucket_for: Any = None
        self._json_cache: dict[str, tuple[Optional[Rendered], asyncio.Future[bytes]]] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.set_exception_handler(_loop_exception)

            async def listen() -> None:
                self._server = await self.loop.create_server(lambda: _Connection(self), sock=self.socket)

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
    def admit(self, conn: _Connection) -> bool:
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

    def _evict(self, which: Callable[[_Connection], bool]) -> bool:
        for state in ("idle", "head"):
            victim = next((c for c in self._connections if c.state == state and which(c)), None)
            if victim is not None:
                if state == "head":
                    self.refusals.refuse(COMPONENT, "evicted", f"{victim.client}: an unfinished request head gave "
                                                              "way to a new connection")
                victim.abort()
                return True
        return False

    def release(self, conn: _Connection) -> None:
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
        if self._bucket is None or self._bucket_for != rate:
            self._bucket, self._bucket_for = _TokenBucket(rate.interval, rate.burst), rate
        return not self._bucket.take()

    def respond(self, conn: _Connection, req: Request) -> None:
        """Answer `req` on `conn`, now or (authorization, snapshot) from a worker."""
        if req.method not in ("GET", "HEAD"):
            conn.send(405, b"GET and HEAD only\n", _TEXT, extra=(("Allow", "GET, HEAD"),))
            return
        cfg = self.settings()
        if self.rate_limited(cfg):
            self.refusals.refuse(COMPONENT, "rate_limited", "rate_limit of --web.config.file exceeded")
            conn.send(429, b"too many requests\n", _TEXT)
            return
        if req.path in PROTECTED:
            if cfg is not None and cfg.users:
                self._basic_auth(conn, req, cfg)
                return
            if self.authorizer is not None:
                self._kube_auth(conn, req, self.authorizer)
                return
        self.serve(conn, req)

    def serve(self, conn: _Connection, req: Request) -> None:
        path, sampler = req.path, self.sampler
        if path == "/metrics":
            rendered = sampler.current if sampler is not None else None
            if rendered is None:
                return conn.send(503, b"no tick completed yet\n", _TEXT)
            gzip = accepts_gzip(req.headers.get("accept-encoding", ""))
            if wants_openmetrics(req.headers.get("accept", "")):
                body = rendered.openmetrics_gzip if gzip else rendered.openmetrics
                return conn.send(200, body, OPENMETRICS_CONTENT_TYPE, "gzip" if gzip else "")
            if gzip:
                return conn.send(200, rendered.text_gzip, TEXT_CONTENT_TYPE, "gzip")
            return conn.send(200, rendered.text, TEXT_CONTENT_TYPE)
        if path == "/livez" or path == "/readyz":
            if sampler is None:
                return conn.send(503, b"not started\n", _TEXT)
            ok, reason = sampler.liveness() if path == "/livez" else sampler.readiness()
            if ok:
                return conn.send(200, b"ok\n" if path == "/livez" else b"ready\n", _TEXT)
            word = "alive" if path == "/livez" else "ready"
            return conn.send(503, f"not {word}: {reason}\n".encode(), _TEXT)
        if path == "/identity":
            return self._json(conn, "identity", _identity_json)
        if path == "/debug/snapshot":
            if not self.debug_snapshot:
                return conn.send(404, b"not found (/debug/snapshot is off; start with --web.debug-snapshot)\n",
                                 _TEXT)
            return self._json(conn, "snapshot", _snapshot_json)
        if path == "/":
            return conn.send(200, INDEX, "text/html; charset=utf-8")
        return conn.send(404, b"not found\n", _TEXT)

    def _json(self, conn: _Connection, name: str, render: Callable[[Optional[Rendered]], tuple[int, bytes]]) -> None:
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

    def _busy(self, conn: _Connection) -> None:
        self.refusals.refuse(COMPONENT, "busy", f"more than {MAX_PENDING_WORK} checks or renders queued")
        conn.send(503, b"busy, retry\n", _TEXT, extra=(("Retry-After", "1"),))

    def _basic_auth(self, conn: _Connection, req: Request, cfg: WebConfig) -> None:
        challenge = (("WWW-Authenticate", 'Basic realm="gpulse"'),)
        user, password = _basic_credentials(req.headers.get("authorization", ""))
        if user is None:
            self.refusals.refuse(COMPONENT, "unauthorized", f"{conn.client}: no basic auth credentials")
            return conn.send(401, b"unauthorized\n", _TEXT, extra=challenge)
        hashed = cfg.users.get(user, _DUMMY_HASH)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed))).digest()
        known = self._auth_cache.get(key)

        def finish(ok: bool) -> None:
            if ok and user in cfg.users:
                self.serve(conn, req)
            else:
                self.refusals.refuse(COMPONENT, "unauthorized", f"{conn.client}: wrong user or password")
                conn.send(401, b"unauthorized\n", _TEXT, extra=challenge)

        if known is not None:
            return finish(known)

        def check() -> bool:
            ok = _check_password(password, hashed)
            self._auth_cache.put(key, ok)
            return ok
        future = self._submit(check, self._bcrypt)
        if future is None:
            return self._busy(conn)
        conn.wait(future, lambda f: finish(not f.cancelled() and f.exception() is None and bool(f.result())))

    def _kube_auth(self, conn: _Connection, req: Request, authorizer: Authorizer) -> None:
        header = req.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""

        def finish(status: int, reason: str) -> None:
            if status == 200:
                self.serve(conn, req)
                return
            self.refusals.refuse(COMPONENT, "unauthorized" if status == 401 else "forbidden",
                                 f"{conn.client}: {reason}")
            conn.send(status, (reason + "\n").encode(), _TEXT,
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


def _basic_credentials(header: str) -> tuple[Optional[str], bytes]:
    if header[:6].lower() != "basic ":
        return None, b""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, b""
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, b""
    return user.decode("utf-8", "replace"), password


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


class _Connection(asyncio.Protocol):
    """One client connection: states "head" (reading a request head), "busy" (answering),
    "idle" (kept alive, waiting for the next request)."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.client = ""
        self.state = "head"
        self.buffer = bytearray()
        self.timer: Optional[asyncio.TimerHandle] = None
        self.keep_alive = False
        self.closed = False
        self.admitted = False
        self.handshaking = False
        self._out: collections.deque[memoryview] = collections.deque()
        self._paused = False
        self._head_only = False
        self._discarded = 0
        self._extra_headers: tuple[tuple[str, str], ...] = ()

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        cfg = self.server.settings()
        tls = cfg.tls if cfg is not None else None
        if not self.server.admit(self):
            if tls is None:
                transport.write(_BUSY)
                transport.close()
            else:
                transport.abort()
            self.closed = True
            return
        self.admitted = True
        self._extra_headers = cfg.headers if cfg is not None else ()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # headers and body go out as separate writes: no Nagle delay on kept-alive connections
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=WRITE_CHUNK)
        self._arm(self.server.limits.header_timeout, "header_timeout")
        if tls is not None and cfg is not None:
            transport.pause_reading()  # the ClientHello is for the TLS layer, not for us
            self.handshaking = True
            self.server.loop.create_task(self._start_tls(tls, cfg))

    async def _start_tls(self, ctx: ssl.SSLContext, cfg: WebConfig) -> None:
        transport = self.transport
        assert transport is not None
        try:
            tls = await self.server.loop.start_tls(transport, self, ctx, server_side=True,
                                                   ssl_handshake_timeout=self.server.limits.header_timeout)
        except Exception as exc:  # noqa: BLE001 - whatever a peer's handshake does, it is refused in one line
            self.server.refusals.refuse(COMPONENT, "tls_handshake", f"{self.client}: {_short(exc)}")
            self.abort()
            return
        if tls is None or self.closed:
            self.abort()
            return
        self.transport = tls
        tls.set_write_buffer_limits(high=WRITE_CHUNK)
        if not cfg.san_allowed(tls.get_extra_info("peercert")):
            self.server.refusals.refuse(COMPONENT, "forbidden", f"{self.client}: client certificate SAN not allowed")
            self.abort()
            return
        self.handshaking = False
        if self.buffer:  # a request that came with the handshake's last flight
            self._try_request()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.state == "closing":  # answered and closing: drain what the client still sends, for a while
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.abort()
            return
        self.buffer += data
        if self.state == "busy" and len(self.buffer) > MAX_BUFFERED_BYTES:  # pipelined far ahead of the answers
            self.server.refusals.refuse(COMPONENT, "headers_too_large", f"{self.client}: {len(self.buffer)} bytes "
                                                                        "of requests waiting")
            self.abort()
            return
        if self.handshaking:  # decrypted before start_tls returned: held until the peer is checked
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.abort()
            return
        if self.state == "idle":
            self.state = "head"
            self._arm(self.server.limits.header_timeout, "header_timeout")
        if self.state == "head":
            self._try_request()

    def eof_received(self) -> Optional[bool]:
        if self.state == "closing":
            self._finish()
            return None
        if self.state != "busy":
            self.abort()
            return None
        self.keep_alive = False
        return True  # half-closed after its request: still answer it, then close

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self._disarm()
        self._out.clear()
        if self.admitted:
            self.admitted = False
            self.server.release(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    # --- requests -----------------------------------------------------------------------------
    def _try_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._refuse(431, "headers_too_large", f"request head over {MAX_HEAD_BYTES} bytes")
            return
        if end > MAX_HEAD_BYTES:
            self._refuse(431, "headers_too_large", f"request head over {MAX_HEAD_BYTES} bytes")
            return
        head = bytes(self.buffer[:end])
        del self.buffer[:end + 4]
        try:
            req = parse_head(head)
        except BadRequestError as exc:
            self._refuse(exc.status, "bad_request" if exc.status != 431 else "headers_too_large", exc.reason)
            return
        self.state = "busy"
        self.keep_alive = req.keep_alive
        self._head_only = req.method == "HEAD"
        self._disarm()
        self._arm(self.server.limits.write_timeout, "write_timeout")
        self.server.respond(self, req)

    def _next_request(self) -> None:
        if not self.closed and self.state == "head":
            self._try_request()

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self.server.refusals.refuse(COMPONENT, reason, f"{self.client}: {detail}")
        self.state = "busy"
        self.keep_alive = False
        self._head_only = False
        self._disarm()
        self._arm(self.server.limits.write_timeout, "write_timeout")
        self.send(status, (detail + "\n").encode(), _TEXT)

    def wait(self, future: asyncio.Future[Any], then: Callable[[asyncio.Future[Any]], None]) -> None:
        """Answer when `future` is done (the write deadline still applies)."""
        def done(f: asyncio.Future[Any]) -> None:
            if not self.closed:
                then(f)
        future.add_done_callback(done)

    def send(self, status: int, body: bytes, content_type: str, encoding: str = "",
             extra: tuple[tuple[str, str], ...] = ()) -> None:
        if self.closed or self.transport is None:
            return
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", "Vary: Accept, Accept-Encoding",
                 f"Server: gpulse/{__version__}"]
        if encoding:
            lines.append(f"Content-Encoding: {encoding}")
        lines += [f"{k}: {v}" for k, v in self._extra_headers + extra]
        if not self.keep_alive:
            lines.append("Connection: close")
        self._out.append(memoryview(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")))
        if not self._head_only:
            view = memoryview(body)
            for i in range(0, len(view), WRITE_CHUNK):
                self._out.append(view[i:i + WRITE_CHUNK])
        self._pump()

    def _pump(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        while self._out and not self._paused:
            transport.write(self._out.popleft())
        if self._out or self._paused or self.state != "busy":
            return
        # the whole response is in the transport's buffer (at most WRITE_CHUNK more than sent)
        if not self.keep_alive:
            self.state = "closing"
            self.buffer.clear()
            if transport.can_write_eof():
                # a lingering close: closing with unread input would reset the connection and
                # could lose the answer (a 431 to an oversized head), so the write side is shut
                # and input is drained until the client closes, LINGER_SECONDS at most
                transport.write_eof()
                self._arm(LINGER_SECONDS, "")
            else:
                self._finish()
            return
        self.state = "idle"
        self._disarm()
        if self.buffer:  # a pipelined request: next loop turn, not deeper in this stack
            self.state = "head"
            self._arm(self.server.limits.header_timeout, "header_timeout")
            self.server.loop.call_soon(self._next_request)
        else:
            self._arm(self.server.limits.idle_timeout, "")

    # --- deadlines ----------------------------------------------------------------------------
    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self.timer = self.server.loop.call_later(seconds, self._expired, reason)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, reason: str) -> None:
        self.timer = None
        if reason:
            self.server.refusals.refuse(COMPONENT, reason, f"{self.client}: deadline passed in state {self.state}")
        self.abort()

    def _finish(self) -> None:
        """Close after what is buffered is sent (the write deadline still applies)."""
        self._disarm()
        self._arm(self.server.limits.write_timeout, "write_timeout")
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._disarm()
        self.closed = True
        if self.admitted:  # its slot is free now, not when the loop reports the close
            self.admitted = False
            self.server.release(self)
        if self.transport is not None:
            self.transport.abort()


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio reports a peer's broken TLS record or reset connection with a traceback by
    default: one line here (debug for what peers cause, warning for anything else)."""
    exc = context.get("exception")
    message = context.get("message", "")
    if isinstance(exc, (OSError, ssl.SSLError, ConnectionError, asyncio.TimeoutError)):
        log.debug("http: %s: %s", message, _short(exc))
    else:
        log.warning("http: %s%s", message, f": {type(exc).__name__}: {_short(exc)}" if exc is not None else "")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def make_server(listen_address: str, sampler: Optional[ScrapeSource], **options: Any) -> WebServer:
    return WebServer(listen_address, sampler, **options)


def serve_in_thread(server: WebServer) -> threading.Thread:
    return server.start()
