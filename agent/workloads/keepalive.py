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

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable, Generator, Iterator
from typing import Optional
from urllib.parse import quote

from ..errors import one_line
from ..httpfetch import USER_AGENT, FetchError

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of the answer
MAX_HEADERS = 100
READ_BYTES = 64 * 1024
_PATH_SAFE = "".join(map(chr, range(0x21, 0x7F)))  # sent as is; the rest percent-encoded (UTF-8)
MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line


Answer = Generator[None, bytes, bool]  # fed the bytes read (b"" at the end), -> keep the connection


class _StaleError(Exception):
    """A kept connection that the server had closed: nothing of the answer arrived."""


class Connection:
    """GETs `path` from host:port; one caller at a time (the scraper's in-flight set).

    Blocking: get(). On an event loop (gpulse.workloads.scrape.Scraper): begin(), then
    on_writable() / on_readable() as `wants` says, until on_readable() returns True; a
    deadline the loop enforces (fail() ends the exchange)."""

    def __init__(self, host: str, port: int, path: str, accept: str = "*/*",
                 buffer: Optional[memoryview] = None) -> None:
        """`buffer`: where reads land, shared by the connections of one thread (an event loop
        reads one socket at a time); a buffer of their own otherwise."""
        self.host, self.port, self.path = host, port, path
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # a path from an annotation or a command line may hold any character: the request
        # line gets it percent-encoded, as curl sends it, never a byte that breaks the line
        self._request = (f"GET {quote(path, safe=_PATH_SAFE)} HTTP/1.1\r\nHost: {hostport}\r\nAccept: {accept}\r\n"
                         f"Accept-Encoding: identity\r\nUser-Agent: {USER_AGENT}\r\n\r\n").encode("latin-1")
        self.sock: Optional[socket.socket] = None
        self._view = buffer if buffer is not None else memoryview(bytearray(READ_BYTES))
        self.connects = 0  # connections opened, for tests and the bench
        # event-loop exchange state
        self.wants = 0  # 0 idle, WANT_WRITE while connecting, WANT_READ while reading the answer
        self._answer: Optional[Answer] = None
        self._reused = False
        self._max_body = 0
        self._sink: Callable[[bytes], object] = _discard

    @property
    def is_open(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.wants = 0
        self._answer = None
        if sock is not None:
            sock.close()

    # --- blocking ---

    def get(self, timeout: float, max_body: int, sink: Callable[[bytes], object]) -> None:
        """The body of a 200 answer to `sink`, within `timeout` seconds and `max_body` bytes."""
        deadline = time.monotonic() + timeout
        with _errors(self, timeout):
            try:
                self._exchange(deadline, timeout, max_body, sink)
            except _StaleError:
                self.close()
                self._exchange(deadline, timeout, max_body, sink)  # a fresh connection: not stale

    def _left(self, deadline: float, timeout: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {timeout:g}s")
        return left

    def _exchange(self, deadline: float, timeout: float, max_body: int, sink: Callable[[bytes], object]) -> None:
        reused = self.sock is not None
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self._left(deadline, timeout))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        sock = self.sock
        try:
            sock.settimeout(self._left(deadline, timeout))
            sock.sendall(self._request)
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                raise _StaleError() from None
            raise
        answer = _answer(reused, max_body, sink)
        next(answer)
        while True:
            sock.settimeout(self._left(deadline, timeout))
            try:
                n = sock.recv_into(self._view)
            except ConnectionResetError:
                n = 0
            try:
                answer.send(self._view[:n].tobytes())
            except StopIteration as done:
                if not done.value:
                    self.close()
                return

    # --- on an event loop (non-blocking socket) ---

    def begin(self, max_body: int, sink: Callable[[bytes], object]) -> bool:
        """Starts a GET: connects when needed (wants WANT_WRITE) or sends (wants WANT_READ).
        -> False (the answer is still to come), as on_readable() says it."""
        self._max_body, self._sink = max_body, sink
        self._reused = self.sock is not None
        if self.sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            self.sock = sock
            self.connects += 1
            err = sock.connect_ex((self.host, self.port))
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise OSError(err, os.strerror(err))
            self.wants = WANT_WRITE
            return False
        self._send()
        return False

    def on_writable(self) -> bool:
        """The connect finished: send the request. -> False, as begin()."""
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()
        return False

    def _send(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self._request)  # a few hundred bytes: an empty send buffer takes them
        except (BrokenPipeError, ConnectionResetError):
            if self._reused:
                self._retry()
                return
            raise
        if sent != len(self._request):
            raise OSError("request not sent whole")
        self._answer = _answer(self._reused, self._max_body, self._sink)
        next(self._answer)
        self.wants = WANT_READ

    def _retry(self) -> None:
        """The kept connection was stale: once more on a fresh one."""
        self.close()
        self.begin(self._max_body, self._sink)  # on no socket: _reused False, not stale again

    def on_readable(self) -> bool:
        """Reads what arrived; True when the answer is complete (the connection then idle or
        closed). While idle, readable means the server closed it (or sent what nobody asked
        for): closed here, False."""
        assert self.sock is not None
        try:
            n = self.sock.recv_into(self._view)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionResetError:
            n = 0
        if self._answer is None:
            self.close()
            return False
        try:
            self._answer.send(self._view[:n].tobytes())
        except StopIteration as done:
            self._answer = None
            self.wants = 0
            if not done.value:
                self.close()
            return True
        except _StaleError:
            self._retry()
        return False

    def finish(self, run: Callable[[], bool]) -> bool:
        """Runs one event-loop step under the errors' rules of get(); what it returns."""
        with _errors(self, 0.0):
            return run()


WANT_READ, WANT_WRITE = 1, 2  # selectors.EVENT_READ, selectors.EVENT_WRITE


def _discard(_data: bytes) -> None:
    pass


@contextlib.contextmanager
def _errors(conn: Connection, timeout: float) -> Iterator[None]:
    """Every failure closes the connection and is one FetchError line; the sink's own
    errors pass through as they are."""
    try:
        yield
    except _StaleError:
        conn.close()
        raise FetchError("connection closed before the answer") from None
    except TimeoutError:
        conn.close()
        raise FetchError(f"timed out after {timeout:g}s") from None
    except FetchError:
        conn.close()
        raise
    except OSError as exc:
        conn.close()
        raise FetchError(one_line(exc)) from None
    except BaseException:
        conn.close()  # the sink refused the body: the rest of the answer is unread
        raise


class _Pending:
    """Bytes read and not yet consumed by the framing: data[pos:]. Consumed by moving `pos`,
    never by slicing off the rest: a read of many small chunks is parsed in linear time."""

    __slots__ = ("data", "pos")

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.data)


def _take(p: _Pending, limit: int) -> Generator[None, bytes, bytes]:
    """Up to `limit` bytes: from what `p` holds, else from the next read (b"": closed)."""
    if not p:
        p.data, p.pos = (yield), 0
    start = p.pos
    p.pos = min(len(p.data), start + limit)
    if start == 0 and p.pos == len(p.data):
        return p.data
    return p.data[start:p.pos]


def _answer(reused: bool, max_body: int, sink: Callable[[bytes], object]) -> Answer:
    """Reads one answer from the bytes it is sent; -> whether the connection can be kept."""
    p = _Pending()

    def closed(head: bytes) -> Exception:
        return _StaleError() if reused and not head else FetchError("connection closed in the answer's head")

    head = yield from _until(p, b"\r\n\r\n", MAX_HEAD_BYTES, closed, f"answer head longer than {MAX_HEAD_BYTES} bytes")
    keep, length, chunked = _parse_head(head)
    if length is not None and length > max_body:
        raise FetchError(f"body of {length} bytes exceeds the {max_body}-byte limit")
    if chunked:
        yield from _read_chunked(p, max_body, sink)
    elif length is not None:
        yield from _read_length(p, length, sink)
    else:
        yield from _read_to_close(p, max_body, sink)
        keep = False
    return keep and not p  # bytes past the answer: a server out of step, not reused


def _until(p: _Pending, delimiter: bytes, limit: int, closed: Callable[[bytes], Exception],
           too_long: str) -> Generator[None, bytes, bytes]:
    """The bytes up to `delimiter` (dropped); what follows stays in `p`. A close before it
    raises closed(bytes so far); more than `limit` bytes without it raises FetchError(too_long)."""
    end = p.data.find(delimiter, p.pos)
    if end >= 0:  # within what was read already (a chunked body's lines, mostly)
        line = p.data[p.pos:end]
        p.pos = end + len(delimiter)
        return line
    data = p.data[p.pos:]
    p.data, p.pos = b"", 0
    while True:
        if len(data) > limit:
            raise FetchError(too_long)
        more = yield
        if not more:
            raise closed(data)
        start = max(0, len(data) - len(delimiter) + 1)
        data += more
        end = data.find(delimiter, start)
        if end >= 0:
            p.data, p.pos = data, end + len(delimiter)
            return data[:end]


def _line(p: _Pending) -> Generator[None, bytes, bytes]:
    """One CRLF-ended line of the chunked framing (without the CRLF)."""
    return (yield from _until(p, b"\r\n", MAX_CHUNK_LINE,
                              lambda _data: FetchError("connection closed inside a chunked body"),
                              "chunked body: a size or trailer line is too long"))


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
            if not value.isdigit() or len(value) > 18 or (length is not None and int(value) != length):
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
        reason = parts[2][:60].decode("latin-1") if len(parts) > 2 else ""
        reason = "".join(c if c.isprintable() else "?" for c in reason)  # one line, no escape sequences
        raise FetchError(f"HTTP {code} {reason}".strip())
    if chunked:
        length = None  # chunked framing wins over a Content-Length (RFC 9112 6.3)
    return keep, length, chunked


def _read_length(p: _Pending, length: int, sink: Callable[[bytes], object]) -> Generator[None, bytes, None]:
    left = length
    while left > 0:
        data = yield from _take(p, left)
        if not data:
            raise FetchError(f"connection closed after {length - left} of {length} body bytes")
        left -= len(data)
        sink(data)


def _read_to_close(p: _Pending, max_body: int, sink: Callable[[bytes], object]) -> Generator[None, bytes, None]:
    size = 0
    while True:
        data = yield from _take(p, READ_BYTES)
        if not data:
            return
        size += len(data)
        if size > max_body:
            raise FetchError(f"body exceeds the {max_body}-byte limit")
        sink(data)


def _read_chunked(p: _Pending, max_body: int, sink: Callable[[bytes], object]) -> Generator[None, bytes, None]:
    size = 0
    while True:
        line = yield from _line(p)
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in digits):
            raise FetchError(f"chunked body: invalid chunk size {digits[:20].decode('latin-1')!r}")
        n = int(digits, 16)
        if n == 0:
            while (yield from _line(p)):  # trailers, up to the empty line
                pass
            return
        size += n
        if size > max_body:
            raise FetchError(f"body exceeds the {max_body}-byte limit")
        left = n
        while left > 0:
            data = yield from _take(p, left)
            if not data:
                raise FetchError("connection closed inside a chunked body")
            left -= len(data)
            sink(data)
        if (yield from _line(p)):
            raise FetchError("chunked body: a chunk does not end with CRLF")
