"""Kept HTTP/1.1 connections to workload endpoints: reused across scrapes, reopened when
the server closes them, every framing (Content-Length, chunked, close) read as it arrives,
and the bounds of httpfetch (one deadline, a body limit) kept."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from gpulse.httpfetch import FetchError
from gpulse.workloads.keepalive import Connection, _answer

BODY = b"# TYPE q gauge\nq 1\n" * 50


class RawServer:
    """Serves each accepted connection with `script(sock)` on a thread of its own."""

    def __init__(self, script):
        self.script = script
        self.accepted = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock):
        try:
            self.script(sock)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self):
        self.listener.close()


def read_request(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            return b""
        data += more
    return data


def answer(head: str, body: bytes = b"") -> bytes:
    return ("HTTP/1.1 " + head.replace("\n", "\r\n") + "\r\n\r\n").encode() + body


def collect(conn, timeout=2.0, max_body=1 << 20) -> bytes:
    parts = []
    conn.get(timeout, max_body, parts.append)
    return b"".join(parts)


@pytest.fixture
def serve():
    servers = []

    def start(script):
        s = RawServer(script)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def keep_alive_script(sock):
    while read_request(sock):
        sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))


def test_one_connection_serves_every_scrape(serve):
    srv = serve(keep_alive_script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    for _ in range(5):
        assert collect(conn) == BODY
    assert conn.connects == 1 and srv.accepted == 1 and conn.is_open
    conn.close()
    assert not conn.is_open


def test_server_that_closes_after_each_answer(serve):
    def script(sock):
        read_request(sock)
        sock.sendall(answer(f"200 OK\nConnection: close\nContent-Length: {len(BODY)}", BODY))

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    for _ in range(3):
        assert collect(conn) == BODY
        assert not conn.is_open
    assert conn.connects == 3


def test_idle_connection_closed_by_the_server_is_retried_once(serve):
    def script(sock):  # keep-alive announced, but the socket is closed after one answer
        read_request(sock)
        sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    assert collect(conn) == BODY
    time.sleep(0.05)
    assert collect(conn) == BODY  # stale socket: reconnected within the same get()
    assert conn.connects == 2


def test_chunked_body_split_across_writes(serve):
    def script(sock):
        while read_request(sock):
            sock.sendall(answer("200 OK\nTransfer-Encoding: chunked"))
            for i in range(0, len(BODY), 97):
                piece = BODY[i:i + 97]
                frame = b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
                for j in range(0, len(frame), 40):
                    sock.sendall(frame[j:j + 40])
                    time.sleep(0.0005)
            sock.sendall(b"0\r\nX-Trailer: 1\r\n\r\n")

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    assert collect(conn) == BODY
    assert collect(conn) == BODY and conn.connects == 1  # kept after a chunked answer


def test_close_delimited_body(serve):
    def script(sock):
        read_request(sock)
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + BODY)

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    assert collect(conn) == BODY and not conn.is_open


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_body_limit_whatever_the_framing(serve, framing):
    big = b"q 1\n" * 1000

    def script(sock):
        read_request(sock)
        if framing == "length":
            sock.sendall(answer(f"200 OK\nContent-Length: {len(big)}", big))
        elif framing == "chunked":
            sock.sendall(answer("200 OK\nTransfer-Encoding: chunked") + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
        else:
            sock.sendall(answer("200 OK\nConnection: close", big))

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    with pytest.raises(FetchError, match="exceeds the 1000-byte limit"):
        collect(conn, max_body=1000)
    assert not conn.is_open


def test_one_deadline_for_a_trickling_head(serve):
    def script(sock):
        read_request(sock)
        for c in answer("200 OK\nContent-Length: 4", b"q 1\n"):
            sock.sendall(bytes([c]))
            time.sleep(0.05)

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"^timed out after 0.3s$"):
        collect(conn, timeout=0.3)
    assert time.monotonic() - t0 < 0.6 and not conn.is_open


@pytest.mark.parametrize("reply, message", [
    (answer("500 Internal Server Error\nContent-Length: 0"), r"^HTTP 500 Internal Server Error$"),
    (b"HTTP/1.1 503 down\n\x1b[2J" + b"x" * 100 + b"\r\n\r\n", r"^HTTP 503 down\?\?\[2Jx{51}$"),
    (answer("200 OK\nTransfer-Encoding: chunked") + b"zz\r\n", r"invalid chunk size 'zz'"),
    (answer("200 OK\nTransfer-Encoding: gzip"), r"unsupported Transfer-Encoding 'gzip'"),
    (answer("200 OK\nContent-Length: -1"), r"invalid Content-Length '-1'"),
    (answer("200 OK\nContent-Length: " + "9" * 5000), r"invalid Content-Length '9{30}'$"),
    (answer("200 OK\nContent-Length: 10", b"q 1\n"), r"connection closed after 4 of 10 body bytes"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", r"not an HTTP/1.x answer"),
    (b"", r"connection closed before the answer|closed in the answer's head"),
])
def test_bad_answers_are_one_line_errors(serve, reply, message):
    def script(sock):
        read_request(sock)
        sock.sendall(reply)

    srv = serve(script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")
    with pytest.raises(FetchError, match=message) as err:
        collect(conn)
    assert "\n" not in str(err.value) and not conn.is_open


def test_what_the_sink_raises_passes_through_and_closes(serve):
    srv = serve(keep_alive_script)
    conn = Connection("127.0.0.1", srv.port, "/metrics")

    def refuse(chunk):
        raise ValueError("not text")

    with pytest.raises(ValueError, match="not text"):
        conn.get(2.0, 1 << 20, refuse)
    assert not conn.is_open
    assert collect(conn) == BODY and conn.connects == 2


def test_refused_connection():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = Connection("127.0.0.1", port, "/metrics")
    with pytest.raises(FetchError, match="(?i)refused"):
        collect(conn)


def feed_answer(data: bytes, read: int = 65536) -> tuple[bytes, bool]:
    """(body, keep) of one answer fed to the framing in reads of `read` bytes."""
    parts: list[bytes] = []
    reader = _answer(False, 1 << 30, parts.append)
    next(reader)
    try:
        for i in range(0, len(data), read):
            reader.send(data[i:i + read])
        reader.send(b"")
    except StopIteration as done:
        return b"".join(parts), done.value
    raise AssertionError("the answer did not end")


def test_tiny_chunks_are_read_in_linear_time():
    # 1-byte chunks, all in one read: the framing moves through what was read without
    # copying the rest of it per chunk (it did: quadratic in the read's size)
    n = 512 * 1024 // 6
    data = answer("200 OK\nTransfer-Encoding: chunked") + b"1\r\nx\r\n" * n + b"0\r\n\r\n"
    t0 = time.process_time()
    body, keep = feed_answer(data, read=len(data))
    assert body == b"x" * n and keep
    assert time.process_time() - t0 < 1.0  # 0.14 s here; 1.7 s when it copied


@pytest.mark.parametrize("read", [1, 7, 65536])
def test_framing_whatever_the_reads(read):
    chunked = answer("200 OK\nTransfer-Encoding: chunked") + b"3\r\nq 1\r\n2;x=y\r\n\n#\r\n0\r\nT: 1\r\n\r\n"
    assert feed_answer(chunked, read)[0] == b"q 1\n#"
    length = answer("200 OK\nContent-Length: 4", b"q 1\n")
    assert feed_answer(length, read)[0] == b"q 1\n"
    body, keep = feed_answer(length + b"extra", read)
    assert body == b"q 1\n" and keep == (read < 65536)  # "extra" read with the end of the answer: not kept
