"""One HTTP/1.1 connection on the event loop, with its bounds (gpulse.server says which
and why): the request head read within one deadline and MAX_HEAD_BYTES, pipelined requests
answered in turn, answers written WRITE_CHUNK at a time as the client reads them, a
lingering close after a last answer, TLS started here so that the connection cap and the
deadline cover the handshake. What to answer is the owner's (gpulse.server.WebServer).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol

from . import __version__
from .refusals import Refusals

if TYPE_CHECKING:
    from .webconfig import WebConfig

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024  # request line and headers; Prometheus sends ~300 bytes
MAX_HEADERS = 64
MAX_BUFFERED_BYTES = 64 * 1024  # pipelined requests waiting for their turn (asyncio reads 256 KiB at most)
WRITE_CHUNK = 64 * 1024
LINGER_SECONDS = 1.0  # after a last answer, input is drained this long (and LINGER_BYTES at most)
LINGER_BYTES = 1024 * 1024
COMPONENT = "http"
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    write_timeout: float = 30.0

    @property
    def per_client(self) -> int:
        return max(2, self.max_connections // 4)


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
    lines = head.decode("latin-1").split("\r\n")  # latin-1 decodes any byte
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


class Owner(Protocol):
    """What a connection asks of its server."""
    loop: asyncio.AbstractEventLoop
    limits: Limits
    refusals: Refusals

    def admit(self, conn: Connection) -> bool: ...

    def release(self, conn: Connection) -> None: ...

    def settings(self) -> Optional[WebConfig]: ...

    def respond(self, conn: Connection, req: Request) -> None: ...


class Connection(asyncio.Protocol):
    """One client connection: states "head" (reading a request head), "busy" (answering),
    "idle" (kept alive, waiting for the next request)."""

    def __init__(self, server: Owner) -> None:
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
                transport.write(BUSY)
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
            self.server.refusals.refuse(COMPONENT, "tls_handshake", f"{self.client}: {short(exc)}")
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
        if end > MAX_HEAD_BYTES or (end < 0 and len(self.buffer) > MAX_HEAD_BYTES):
            self._refuse(431, "headers_too_large", f"request head over {MAX_HEAD_BYTES} bytes")
            return
        if end < 0:
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
        self.send(status, (detail + "\n").encode(), TEXT)

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
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}", f"Content-Type: {content_type}",
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


def loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio reports a peer's broken TLS record or reset connection with a traceback by
    default: one line here (debug for what peers cause, warning for anything else)."""
    exc = context.get("exception")
    message = context.get("message", "")
    if isinstance(exc, (OSError, ssl.SSLError, ConnectionError, asyncio.TimeoutError)):
        log.debug("http: %s: %s", message, short(exc))
    else:
        log.warning("http: %s%s", message, f": {type(exc).__name__}: {short(exc)}" if exc is not None else "")


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
