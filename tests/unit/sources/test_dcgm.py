"""Per-MIG activity scraped from a co-located dcgm-exporter (served here on loopback)."""

import http.server
import threading

import pytest
from gpulse.sources.dcgm import DcgmSource, engine_activity

G = "GPU-5a1e7c1b-3d1f-4c55-9e0e-1d2f3a4b5c6d"
BODY = f"""# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="0",UUID="{G}",pci_bus_id="00000000:18:00.0",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="1g.10gb",GPU_I_ID="7",Hostname="n1",namespace="ml",pod="p",container="c"}} 0.250000
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="0",UUID="{G}",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",Hostname="n1"}} 0.9
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="1",UUID="GPU-other",device="nvidia1",Hostname="n1"}} 0.5
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="2",UUID="GPU-nan",device="nvidia2",GPU_I_ID="2"}} NaN
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{G}",GPU_I_ID="7"}} 100
""".encode()


def test_engine_activity_keys_by_uuid_and_instance():
    assert engine_activity(BODY) == {(G, 7): 0.25, (G, 1): 0.9, ("GPU-other", None): 0.5}


def test_old_namespace_uuid_label():
    body = b'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",uuid="GPU-x",GPU_I_ID="3"} 0.1\n'
    assert engine_activity(body) == {("GPU-x", 3): 0.1}


@pytest.fixture
def exporter():
    state = {"body": BODY, "status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"])
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", state
    server.shutdown()
    server.server_close()


def _source(url, clock):
    return DcgmSource(url, timeout=2.0, stale_after=30.0, clock=clock)


def test_scrape_keeps_last_good_then_goes_stale(exporter):
    url, state = exporter
    now = [0.0]
    src = _source(url, lambda: now[0])
    assert src.current() == {} and not src.status().up
    assert src.refresh()
    assert src.current()[(G, 7)] == 0.25 and src.status().up
    state["body"] = b'DCGM_FI_PROF_GR_ENGINE_ACTIVE{UUID="GPU-x" 0.1\n'  # broken text
    now[0] = 10.0
    assert not src.refresh()
    assert src.current()[(G, 7)] == 0.25  # last good kept
    status = src.status()
    assert not status.up and "line 1" in status.error and status.age_seconds == 10.0
    now[0] = 31.0
    assert src.current() == {}  # too old to use


def test_unreachable_exporter_is_one_line_error():
    src = _source("http://127.0.0.1:9/metrics", lambda: 0.0)
    assert not src.refresh()
    err = src.status().error
    assert err.startswith("dcgm-exporter http://127.0.0.1:9/metrics") and "\n" not in err


def test_thread_start_stop(exporter):
    url, _ = exporter
    src = _source(url, lambda: 0.0)
    src.start()
    try:
        for _ in range(200):
            if src.current():
                break
            threading.Event().wait(0.02)
        assert src.current()[(G, 1)] == 0.9
    finally:
        src.stop()


def test_garbage_that_is_not_http_keeps_the_thread_alive_and_reports_down():
    import socket
    import threading
    import time as _time

    from gpulse.sources.dcgm import DcgmSource

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-not-http\r\n")
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    src = DcgmSource(f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", interval=0.05, timeout=1.0)
    src.start()
    try:
        deadline = _time.monotonic() + 5
        while "BadStatusLine" not in src.status().error and _time.monotonic() < deadline:
            _time.sleep(0.02)
        status = src.status()
        assert not status.up and "BadStatusLine" in status.error
        _time.sleep(0.2)
        assert src.refresher._thread is not None and src.refresher._thread.is_alive()
    finally:
        src.stop()
        stop.set()
        listener.close()
