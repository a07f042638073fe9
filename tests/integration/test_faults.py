"""Fault scenarios through the whole agent: unsupported fields, XIDs, a lost GPU, NVML late."""

import contextlib
import gzip
import os
import re
import urllib.request

import pytest
from gpulse.server import make_server, serve_in_thread

from tests.conftest import ROOT
from tests.harness import Run

FAULTS = os.path.join(ROOT, "tests", "fixtures", "scenarios", "faults.yaml")
LATE = os.path.join(ROOT, "tests", "fixtures", "scenarios", "nvml-late.yaml")


def series(text: str, name: str) -> dict:
    out = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


@pytest.fixture(scope="module")
def fault_run():
    with Run(FAULTS, start=0.0, workloads_enabled=False) as run:
        yield run


def test_faults_timeline(fault_run):
    run = fault_run
    text = run.tick().text.decode()  # t=1: no fault yet
    assert len(series(text, "gpulse_gpu_power_watts")) == 3
    assert "gpulse_gpu_xid_errors_total{" not in text
    run.tick(4, settle=0.15)  # t=2..5: XIDs at 2s, power unsupported at 3s, throttle at 4s, GPU 2 lost at 5s
    text = run.tick(settle=0.3).text.decode()
    power = series(text, "gpulse_gpu_power_watts")
    assert not any(k.startswith('{gpu="1"') for k in power), "unsupported field must omit exactly that sample"
    assert any(k.startswith('{gpu="0"') for k in power)
    assert "NaN" not in text
    temps = series(text, "gpulse_gpu_temperature_celsius")
    assert any(k.startswith('{gpu="1"') for k in temps), "the rest of GPU 1 keeps reporting"
    up = series(text, "gpulse_gpu_up")
    assert [v for k, v in sorted(up.items())] == [1.0, 1.0, 0.0], up
    assert not any(k.startswith('{gpu="2"') for k in temps), "a lost GPU reports only gpulse_gpu_up 0 (and its XIDs)"
    xids = series(text, "gpulse_gpu_xid_errors_total")
    assert xids[f'{{gpu="1",uuid="{run.world.scenario.gpus[1].uuid}",xid="13"}}'] == 2
    assert xids[f'{{gpu="1",uuid="{run.world.scenario.gpus[1].uuid}",xid="31"}}'] == 1
    assert xids[f'{{gpu="2",uuid="{run.world.scenario.gpus[2].uuid}",xid="79"}}'] == 1
    throttle = series(text, "gpulse_gpu_clock_event_active")
    assert throttle[f'{{gpu="0",uuid="{run.world.scenario.gpus[0].uuid}",reason="hw_thermal_slowdown"}}'] == 1
    errors = series(text, "gpulse_nvml_errors_total")
    assert any('reason="unsupported"' in k for k in errors)


def test_unsupported_field_is_asked_once(fault_run):
    run = fault_run
    before = run.reader.calls["nvmlDeviceGetPowerUsage"]
    run.tick(3)
    after = run.reader.calls["nvmlDeviceGetPowerUsage"]
    # GPUs 0 only (1 is unsupported and remembered, 2 is lost); field values cover power first anyway.
    assert after - before <= 3


@contextlib.contextmanager
def serving(sampler):
    """The agent's HTTP server for `sampler` on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1:0", sampler, debug_snapshot=True)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_nvml_failing_at_start_keeps_livez_and_retries_with_backoff():
    with Run(LATE, start=0.0, workloads_enabled=False) as run:
        sampler = run.sampler
        with serving(sampler) as base:
            run.tick()  # t=1: init fails
            assert _get(base + "/livez")[0] == 200
            code, _, body = _get(base + "/readyz")
            assert code == 503 and b"NVMLError_DriverNotLoaded" in body
            code, _, body = _get(base + "/metrics")
            assert code == 200 and b'gpulse_source_up{source="nvml"} 0' in body
            run.tick()  # t=2: retried after 1s, fails again; next try in 2s
            attempts = run.world.nvml.calls
            run.tick()  # t=3: inside the backoff, no attempt
            assert run.world.nvml.calls == attempts
            run.tick()  # t=4: retry succeeds
            assert _get(base + "/readyz")[0] == 200
            code, _, body = _get(base + "/metrics")
            assert b'gpulse_gpu_up{gpu="0"' in body and b'gpulse_source_up{source="nvml"} 1' in body


def test_http_negotiation(fault_run):
    run = fault_run
    run.tick()
    with serving(run.sampler) as base:
        code, headers, body = _get(base + "/metrics")
        assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert body == run.sampler.current.text
        code, headers, body = _get(base + "/metrics", {"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == run.sampler.current.text
        code, headers, body = _get(base + "/metrics", {"Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in headers
        code, headers, body = _get(base + "/metrics", {"Accept": "application/openmetrics-text;version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert body.endswith(b"# EOF\n")
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        assert list(text_string_to_metric_families(body.decode()))
        assert _get(base + "/nope")[0] == 404
        code, headers, body = _get(base + "/debug/snapshot")
        assert code == 200 and b'"gpus"' in body


def test_readyz_fails_when_ticks_go_stale(fault_run):
    run = fault_run
    run.tick()
    assert run.sampler.readiness() == (True, "")
    run.clock.t += 30  # the tick loop hung: no tick for 30 s
    ready, reason = run.sampler.readiness()
    assert not ready and "stale" in reason
    run.tick()
    assert run.sampler.readiness()[0]


BROKEN = """name: broken-call
node: {name: n}
gpus:
  - model: A10G
    count: 2
faults:
  - {at: 2s, until: 3s, kind: nvml_error, function: nvmlDeviceGetTemperature, gpu: 0, error: UNKNOWN}
  - {at: 2s, until: 3s, kind: stall, function: nvmlDeviceGetFanSpeed, gpu: 1, seconds: 0.3}
"""


def test_broken_call_omits_the_sample_and_is_retried(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with Run(str(path), start=0.0, workloads_enabled=False) as run:
        text = run.tick(2).text.decode()  # t=2: the call errors, the stall slows the tick
        temps = series(text, "gpulse_gpu_temperature_celsius")
        assert [k for k in temps if k.startswith('{gpu="0"')] == [] and len(temps) == 1
        errors = series(text, "gpulse_nvml_errors_total")
        assert errors['{function="nvmlDeviceGetTemperature",reason="broken"}'] == 1
        assert len(series(text, "gpulse_gpu_fan_speed_ratio")) == 2, "a slow call still answers"
        text = run.tick().text.decode()  # t=3: fault over: asked again, answered
        assert len(series(text, "gpulse_gpu_temperature_celsius")) == 2
        assert series(text, "gpulse_collector_success") == {f'{{collector="{c}"}}': 1.0 for c in
                                                              ("gpu", "identity", "mig", "pods", "workloads", "energy",
                                                               "cost", "startup")}


def test_failing_collector_reports_success_0_and_the_rest_renders(fault_run, monkeypatch):
    from gpulse.collectors import FunctionCollector

    def broken(snapshot):
        raise RuntimeError("boom")
    runner = fault_run.sampler.runner
    collectors = tuple(FunctionCollector("mig", c.families, broken) if c.name == "mig" else c for c in runner.collectors)
    monkeypatch.setattr(runner, "collectors", collectors)
    text = fault_run.tick().text.decode()
    success = series(text, "gpulse_collector_success")
    assert success['{collector="mig"}'] == 0 and success['{collector="gpu"}'] == 1
    assert "gpulse_gpu_up{" in text


RELOAD = """name: driver-reload
node: {name: n}
gpus:
  - model: A10G
faults:
  - {at: 3s, until: 4s, kind: nvml_error, function: nvmlDeviceGetMemoryInfo, error: UNINITIALIZED}
"""


def test_driver_reload_reinitialises_nvml(tmp_path):
    path = tmp_path / "reload.yaml"
    path.write_text(RELOAD)
    with Run(str(path), start=0.0, workloads_enabled=False) as run:
        run.tick(3)  # t=3: NVML answers UNINITIALIZED: the reader asks for a restart
        assert run.reader.needs_restart
        first = run.reader
        text = run.tick().text.decode()  # t=4: a new reader, initialised again
        assert run.reader is not first and not run.reader.needs_restart
        assert 'gpulse_gpu_up{gpu="0"' in text and series(text, "gpulse_gpu_memory_used_bytes")
        assert run.sampler.readiness()[0]


def test_prometheus_default_accept_gets_gzipped_openmetrics(fault_run):
    run = fault_run
    run.tick()
    prometheus_accept = ("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
                         "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
    with serving(run.sampler) as base:
        code, headers, body = _get(base + "/metrics", {"Accept": prometheus_accept, "Accept-Encoding": "gzip"})
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == run.sampler.current.openmetrics
        code, headers, body = _get(base + "/metrics", {"Accept": "application/openmetrics-text;q=0.2,text/plain;q=0.9"})
        assert headers["Content-Type"].startswith("text/plain")
        code, headers, body = _get(base + "/metrics", {"Accept-Encoding": "gzip;q=0, *"})
        assert "Content-Encoding" not in headers
        assert _get(base + "/livez")[0] == 200


def test_livez_fails_only_when_the_tick_loop_hangs(fault_run):
    run = fault_run
    run.tick()
    run.clock.t += 20
    assert run.sampler.liveness()[0] and not run.sampler.readiness()[0]
    run.clock.t += 20
    alive, reason = run.sampler.liveness()
    assert not alive and "no tick" in reason
    run.tick()
    assert run.sampler.liveness()[0]


def test_openmetrics_with_dcgm_compat_parses():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    with Run("reference", workloads_enabled=False, enable=("dcgm_compat",)) as run:
        rendered = run.tick(2)
        families = {f.name: f for f in text_string_to_metric_families(rendered.openmetrics.decode())}
        assert families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "unknown"
        assert families["gpulse_gpu_energy_joules"].type == "counter"
        assert "DCGM_FI_DEV_GPU_UTIL" in families
