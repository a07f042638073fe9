"""The one HTTP GET: deadline, size limit, status, schemes; every failure one line."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gpulse.httpfetch import FetchError, check_url, fetch


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/big":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 5000)
        elif self.path == "/missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_body_status_and_size_limit(server):
    assert fetch(server + "/metrics", 2.0, 100) == b"ok\n"
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server + "/missing", 2.0, 100)
    with pytest.raises(FetchError, match="exceeds the 1000-byte limit"):
        fetch(server + "/big", 2.0, 1000)


def test_one_deadline_covers_a_trickling_peer():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                return
            time.sleep(0.1)
    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="timed out after 0.5s"):
            fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", 0.5, 1000)
        assert time.monotonic() - started < 1.5
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x", "http:///nohost", "metrics"])
def test_only_http_urls(url):
    with pytest.raises(ValueError, match="is not an http"):
        check_url(url)
    with pytest.raises(FetchError) as err:
        fetch(url, 1.0, 100)
    assert "\n" not in str(err.value)


def test_connection_refused_is_one_line():
    with pytest.raises(FetchError) as err:
        fetch("http://127.0.0.1:9/metrics", 1.0, 100)
    assert "\n" not in str(err.value) and "Connection refused" in str(err.value)
