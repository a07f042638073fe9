"""Processes and tiny HTTP servers for the end-to-end test: each started on a free loopback
port, waited for with a bounded deadline, stopped in teardown, with its log at hand for
failure messages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

LOG_TAIL_CHARS = 3000


def find_binary(*names: str) -> Optional[str]:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


# Loopback only: never through a proxy the machine may have configured.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, payload, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ManagedProcess:
    """A server process whose stdout and stderr go to a log file in its tmp dir."""

    def __init__(self, name: str, argv: list, log_path: Path, cwd: Optional[Path] = None,
                 env: Optional[dict] = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return text[-chars:]

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"--- {self.name} (pid {self.proc.pid}, {state}) log {self.log_path}:\n{self.log_tail()}"

    def wait_ready(self, url: str, timeout: float) -> None:
        """Poll url until it answers 200; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited before it was ready\n{self.describe()}")
            try:
                status, body = http_get(url, timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready at {url} within {timeout:.0f}s (last: {last})\n{self.describe()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._log.close()


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, handler: type):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"e2e-http-{self.port}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class StaticExposition(LoopbackServer):
    """Serves one fixed text exposition on /metrics (the stand-in for kube-state-metrics)."""

    def __init__(self, body: bytes):
        self.body = body

        class Handler(_QuietHandler):
            def do_GET(handler):  # noqa: N805 - the server's handler instance
                if handler.path.split("?")[0] != "/metrics":
                    handler.send_error(404)
                    return
                handler.send_response(200)
                handler.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                handler.send_header("Content-Length", str(len(self.body)))
                handler.end_headers()
                handler.wfile.write(self.body)

        super().__init__(Handler)


class WebhookReceiver(LoopbackServer):
    """Records every Alertmanager webhook POST as (path, payload), in arrival order."""

    def __init__(self):
        self.received: list = []
        self.lock = threading.Lock()

        class Handler(_QuietHandler):
            def do_POST(handler):  # noqa: N805
                length = int(handler.headers.get("Content-Length", "0"))
                raw = handler.rfile.read(length)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"unparsable": raw.decode(errors="replace")}
                with self.lock:
                    self.received.append((handler.path, payload))
                handler.send_response(200)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

        super().__init__(Handler)

    def notifications(self) -> list:
        with self.lock:
            return list(self.received)

    def alerts(self, path: str, predicate: Callable[[dict, dict], bool] = lambda n, a: True) -> list:
        """(notification, alert) pairs delivered to path that satisfy predicate."""
        return [(n, a) for p, n in self.notifications() if p == path
                for a in n.get("alerts", []) if predicate(n, a)]

    def describe(self) -> str:
        lines = []
        for path, n in self.notifications():
            names = [(a.get("labels", {}).get("alertname"), a.get("status")) for a in n.get("alerts", [])]
            lines.append(f"{path}: {n.get('status')} groupLabels={n.get('groupLabels')} alerts={names}")
        return "--- webhook receiver got:\n" + ("\n".join(lines) if lines else "(nothing)")


def wait_for(check: Callable[[], object], timeout: float, what: str, diagnostics: Callable[[], str],
             interval: float = 0.5):
    """Call check() until it returns something truthy; fail naming `what`, the last value
    seen and the servers' logs once timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = f"{exc}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{diagnostics()}")
        time.sleep(interval)


def env_without_proxies() -> dict:
    """Loopback traffic must not go through a proxy configured for the machine."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env
