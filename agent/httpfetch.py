"""One HTTP GET with a deadline and a size limit: how the agent reads other exporters.

Used for inference-server endpoints and a co-located dcgm-exporter. One deadline covers
connect, headers and body; the body is read in chunks and refused past `max_bytes`;
only http and https URLs are accepted; no proxy from the environment applies (the peers
are on this node). Every failure is a FetchError whose str() is one line.
"""

from __future__ import annotations

import http.client
import ssl
import time
from typing import Optional
from urllib.parse import urlsplit

from .errors import OneLineError, one_line

USER_AGENT = "gpulse"
_CHUNK = 64 * 1024


class FetchError(OneLineError):
    """One line: why the GET failed."""


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
    try:
        conn.request("GET", path, headers={"Accept": accept, "Accept-Encoding": "identity", "User-Agent": USER_AGENT})
        sock = conn.sock  # the response takes it over (and conn.sock goes None) on Connection: close
        if sock is not None:
            sock.settimeout(remaining())
        resp = conn.getresponse()
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status} {resp.reason}".strip())
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"body of {length} bytes exceeds the {max_bytes}-byte limit")
        parts, size = [], 0
        while True:
            if sock is not None:
                sock.settimeout(remaining())
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
