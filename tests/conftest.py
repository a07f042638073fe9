"""Shared test switches and helpers."""

import contextlib
import os
import shutil
import socket
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def shared_path(*parts: str) -> str:
    """A file of the steering repo's shared/ folder, which sits beside this clone (NVIDIA's
    dcgm-exporter anchors: read from there, never copied into the repo). Without it the
    calling test skips and says which file it needed; `pytest -rs` lists every such skip."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"needs ../shared/{'/'.join(parts)} beside the clone (reference data that is not copied into "
                    "the repo)")
    return path


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/* from the current output instead of comparing")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_flags(argv, environ=None):
    """A Config from serve's flags, as the CLI parses them (environment empty by default)."""
    import argparse

    from gpulse import config

    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    return config.load(parser.parse_args(argv), environ={} if environ is None else environ)


def gpulse_cmd(*args):
    """The installed CLI, run with this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "gpulse", *args]


def require_promtool():
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: `make test` installs Debian's prometheus package")
        pytest.skip("promtool not installed (make test installs Debian's prometheus package)")
    return path


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll until predicate() is true or the timeout passes; the last answer is returned."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def serve_process(*flags, settle: float = 2.5, ready_timeout: float = 60.0):
    """`gpulse serve --nvml.backend=fake FLAGS` on a free loopback port, as users run it:
    yields (process, base URL) once /readyz answers 200 and `settle` seconds of ticks have
    passed; stopped with SIGTERM (then killed) afterwards unless the test stopped it."""
    import signal
    import subprocess
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(gpulse_cmd("serve", "--nvml.backend=fake", *flags, f"--web.listen-address=127.0.0.1:{port}"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("gpulse serve did not become ready:\n" + (proc.stdout.read() if proc.stdout else ""))
        time.sleep(0.2)
    time.sleep(settle)
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stdout:
            proc.stdout.close()
