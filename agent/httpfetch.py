"""One HTTP GET with a deadline and a size limit: how the agent reads other exporters.

Used for inference-server endpoints and a co-located dcgm-exporter. One deadline covers
connect, headers and body (every read of the response is bounded by what is left of it, so a
peer that trickles a byte at a time cannot hold a worker); the body is read in chunks and
refused past `max_bytes`;
only http and https URLs are accepted; no proxy from the environment applies (the peers
are on this node). Every failure is a FetchError whose str() is one line.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import ssl
import time
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import OneLineError, one_line

USER_AGENT = "gpulse"
_CHUNK = 64 * 1024


class FetchError(OneLineError):
    """One line: why the GET failed."""


class _DeadlineReader(io.RawIOBase):
    """The response's byte stream; each read waits at most until the deadline. It reads a
    duplicate of the connection's socket, as socket.makefile would keep it open, so the
    response outlives the connection closing its own handle (Connection: close)."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float):
        self._sock, self._deadline, self._timeout = sock.dup(), deadline, timeout

    def close(self) -> None:
        if not self.closed:
            self._sock.close()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {self._timeout:g}s")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What HTTPResponse is given instead of the socket: only makefile() is used."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float):
        self._reader = _DeadlineReader(sock, deadline, timeout)

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, deadline: float, timeout: float, **kwargs: Any):
        super().__init__(_DeadlineSocket(sock, deadline, timeout), *args, **kwargs)  # type: ignore[arg-type]


def check_url(url: str) -> str:
    """The URL when it is http(s) with a host; ValueError (one line) otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def fetch(url: str, timeout: float, max_bytes: int, accept: str = "*/*",
          context: Optional[ssl.SSLContext] = None) -> bytes:
    """GET `url`; the body on HTTP 200, FetchError otherwise."""
    try:
        check_url(url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(str(exc)) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return get(parts.scheme, parts.hostname or "", port, path, timeout, max_bytes, accept, context)


def get(scheme: str, host: str, port: Optional[int], path: str, timeout: float, max_bytes: int,
        accept: str = "*/*", context: Optional[ssl.SSLContext] = None) -> bytes:
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"timed out after {timeout:g}s")
        return left

    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=remaining(), context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=remaining())
    conn.response_class = functools.partial(_Response, deadline=deadline, timeout=timeout)  # type: ignore[assignment]
    try:
        conn.request("GET", path, headers={"Accept": accept, "Accept-Encoding": "identity", "User-Agent": USER_AGENT})
        resp = conn.getresponse()
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status} {resp.reason}".strip())
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"body of {length} bytes exceeds the {max_bytes}-byte limit")
        parts, size = [], 0
        while True:
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"body exceeds the {max_bytes}-byte limit")
            parts.append(chunk)
        return b"".join(parts)
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(one_line(exc)) from None
    finally:
        conn.close()
