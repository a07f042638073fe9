"""One workload endpoint's HTTP/1.1 connection, kept open from one scrape to the next.

A scrape on a fresh connection costs a TCP handshake, a socket and http.client's header
machinery; on a kept one it is one send and the reads of the answer. `Connection.get`
has the bounds of gpulse.httpfetch: one deadline covers connect, request, headers and
body (every read waits at most for what is left of it, so a trickling peer holds a worker
for the timeout at most), the head is refused past MAX_HEAD_BYTES and the body past
`max_body` (Content-Length checked before reading, and the bytes as they arrive). The
body is framed by Content-Length, by chunked transfer coding, or by the server closing;
it goes to `sink` piece by piece as it arrives (the streaming parser), never joined.

The connection is kept only after a whole 200 answer that the server does not close;
anything else (an error, a timeout, a refusal by size, `Connection: close`, HTTP/1.0)
closes it and the next get() connects anew. A kept connection that the server closed
while idle (its keep-alive timeout) fails before any byte of the answer: that get() is
retried once on a fresh connection, within the same deadline. Every failure is an
httpfetch.FetchError whose str() is one line; what `sink` raises passes through as is.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Optional

from ..errors import one_line
from ..httpfetch import USER_AGENT, FetchError

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of the answer
MAX_HEADERS = 100
READ_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line


class _StaleError(Exception):
    """A kept connection that the server had closed: nothing of the answer arrived."""


class Connection:
    """GETs `path` from host:port; one caller at a time (the scraper's in-flight set)."""

    def __init__(self, host: str, port: int, path: str, accept: str = "*/*") -> None:
        self.host, self.port, self.path = host, port, path
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._request = (f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: {accept}\r\n"
                         f"Accept-Encoding: identity\r\nUser-Agent: {USER_AGENT}\r\n\r\n").encode("latin-1")
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray(READ_BYTES)
        self._view = memoryview(self._buf)
        self.connects = 0  # connections opened, for tests and the bench

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def get(self, timeout: float, max_body: int, sink: Callable[[bytes], object]) -> None:
        """The body of a 200 answer to `sink`, within `timeout` seconds and `max_body` bytes."""
        deadline = time.monotonic() + timeout
        try:
            try:
                self._exchange(deadline, timeout, max_body, sink)
            except _StaleError:
                self.close()
                self._exchange(deadline, timeout, max_body, sink)  # a fresh connection: not stale
        except _StaleError:
            self.close()
            raise FetchError("connection closed before the answer") from None
        except TimeoutError:
            self.close()
            raise FetchError(f"timed out after {timeout:g}s") from None
        except FetchError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise FetchError(one_line(exc)) from None
        except BaseException:
            self.close()  # the sink refused the body: the rest of the answer is unread
            raise

    # --- one request and its answer ---

    def _left(self, deadline: float, timeout: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {timeout:g}s")
        return left

    def _exchange(self, deadline: float, timeout: float, max_body: int, sink: Callable[[bytes], object]) -> None:
        reused = self._sock is not None
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self._left(deadline, timeout))
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        sock = self._sock
        try:
            sock.settimeout(self._left(deadline, timeout))
            sock.sendall(self._request)
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                raise _StaleError() from None
            raise
        reader = _Reader(sock, self._view, deadline, timeout, self._left)
        head = reader.head(reused)
        keep, length, chunked = _parse_head(head)
        if length is not None and length > max_body:
            raise FetchError(f"body of {length} bytes exceeds the {max_body}-byte limit")
        if chunked:
            _read_chunked(reader, max_body, sink)
        elif length is not None:
            _read_length(reader, length, sink)
        else:
            keep = False
            _read_to_close(reader, max_body, sink)
        if not keep or reader.pending:  # bytes past the answer: a server out of step
            self.close()


class _Reader:
    """Buffered reads of one answer, each bounded by the deadline."""

    def __init__(self, sock: socket.socket, view: memoryview, deadline: float, timeout: float,
                 left: Callable[[float, float], float]) -> None:
        self.sock, self.view, self.deadline, self.timeout, self.left = sock, view, deadline, timeout, left
        self.pending = b""  # read but not yet consumed

    def recv(self) -> bytes:
        """The next bytes of the answer (what is pending first); b"" when the server closed."""
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        self.sock.settimeout(self.left(self.deadline, self.timeout))
        n = self.sock.recv_into(self.view)
        return bytes(self.view[:n])

    def head(self, reused: bool) -> bytes:
        data = b""
        while True:
            try:
                more = self.recv()
            except ConnectionResetError:
                if reused and not data:
                    raise _StaleError() from None
                raise
            if not more:
                if reused and not data:
                    raise _StaleError()
                raise FetchError("connection closed in the answer's head")
            start = max(0, len(data) - 3)
            data += more
            end = data.find(b"\r\n\r\n", start)
            if end >= 0:
                self.pending = data[end + 4:]
                return data[:end]
            if len(data) > MAX_HEAD_BYTES:
                raise FetchError(f"answer head longer than {MAX_HEAD_BYTES} bytes")

    def line(self) -> bytes:
        """One CRLF-ended line of the chunked framing (without the CRLF)."""
        data = b""
        while True:
            more = self.recv()
            if not more:
                raise FetchError("connection closed inside a chunked body")
            start = max(0, len(data) - 1)
            data += more
            end = data.find(b"\r\n", start)
            if end >= 0:
                self.pending = data[end + 2:]
                return data[:end]
            if len(data) > MAX_CHUNK_LINE:
                raise FetchError("chunked body: a size or trailer line is too long")


def _parse_head(head: bytes) -> tuple[bool, Optional[int], bool]:
    """-> (keep-alive, Content-Length or None, chunked) of a 200 answer; FetchError otherwise."""
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise FetchError(f"more than {MAX_HEADERS} headers in the answer")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise FetchError(f"not an HTTP/1.x answer: {lines[0][:60].decode('latin-1')!r}")
    version, code = parts[0], int(parts[1])
    keep = version == b"HTTP/1.1"
    length: Optional[int] = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise FetchError(f"malformed header line in the answer: {line[:60].decode('latin-1')!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise FetchError(f"invalid Content-Length {value[:30].decode('latin-1')!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            codings = [c.strip() for c in value.lower().split(b",")]
            if codings[-1] != b"chunked" or any(c not in (b"chunked", b"identity") for c in codings):
                raise FetchError(f"unsupported Transfer-Encoding {value[:30].decode('latin-1')!r}")
            chunked = True
        elif name == b"connection":
            tokens = [t.strip() for t in value.lower().split(b",")]
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = keep or version == b"HTTP/1.0"
    if code != 200:
        reason = parts[2].decode("latin-1", "replace") if len(parts) > 2 else ""
        raise FetchError(f"HTTP {code} {reason}".strip())
    if chunked:
        length = None  # chunked framing wins over a Content-Length (RFC 9112 6.3)
    return keep, length, chunked


def _read_length(reader: _Reader, length: int, sink: Callable[[bytes], object]) -> None:
    left = length
    while left > 0:
        data = reader.recv()
        if not data:
            raise FetchError(f"connection closed after {length - left} of {length} body bytes")
        if len(data) > left:
            reader.pending = data[left:]
            data = data[:left]
        left -= len(data)
        sink(data)


def _read_to_close(reader: _Reader, max_body: int, sink: Callable[[bytes], object]) -> None:
    size = 0
    while True:
        data = reader.recv()
        if not data:
            return
        size += len(data)
        if size > max_body:
            raise FetchError(f"body exceeds the {max_body}-byte limit")
        sink(data)


def _read_chunked(reader: _Reader, max_body: int, sink: Callable[[bytes], object]) -> None:
    size = 0
    while True:
        line = reader.line()
        digits = line.split(b";", 1)[0].strip()
        try:
            n = int(digits, 16) if digits and all(c in b"0123456789abcdefABCDEF" for c in digits) else -1
        except ValueError:
            n = -1
        if n < 0:
            raise FetchError(f"chunked body: invalid chunk size {digits[:20].decode('latin-1')!r}")
        if n == 0:
            while reader.line():  # trailers, up to the empty line
                pass
            return
        size += n
        if size > max_body:
            raise FetchError(f"body exceeds the {max_body}-byte limit")
        left = n
        while left > 0:
            data = reader.recv()
            if not data:
                raise FetchError("connection closed inside a chunked body")
            if len(data) > left:
                reader.pending = data[left:]
                data = data[:left]
            left -= len(data)
            sink(data)
        if reader.line():
            raise FetchError("chunked body: a chunk does not end with CRLF")
