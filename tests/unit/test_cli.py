"""The gpulse command: one-line errors, exit codes, check's table."""

import os
import re
import subprocess

import pytest

from tests.conftest import gpulse_cmd


@pytest.mark.parametrize("argv,needle", [
    (["serve", "--collect.interval=soon"], "gpulse: --collect.interval: invalid duration 'soon'"),
    (["check", "--nvml.backend=fake", "--scenario=nope"], "gpulse: scenario 'nope': not a built-in"),
    (["serve", "--cost.price-file=/nonexistent/prices.yaml"],
     "gpulse: --cost.price-file: /nonexistent/prices.yaml: cannot read the price file: No such file or directory"),
    (["serve", "--web.config.file=/nonexistent/web.yml"], "gpulse: web.config.file: cannot read /nonexistent/web.yml"),
    (["serve", "--kube.enabled=false", "--web.kubernetes-auth"], "--web.kubernetes-auth needs the Kubernetes API"),
    (["serve", "--sources.dcgm-exporter-url=file:///etc/passwd"], "is not an http(s) URL"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, needle):
    r = subprocess.run(gpulse_cmd(*argv), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def _has_real_nvml() -> bool:
    import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.parametrize("command", ["check", "identify", "labels"])
def test_without_nvml_one_line_and_non_zero(command):
    if _has_real_nvml():
        pytest.skip("this machine has a working NVML")
    flags = () if command == "check" else ("--kube.enabled=false",)
    r = subprocess.run(gpulse_cmd(command, *flags), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"gpulse {command}: NVML not available: NVMLError_LibraryNotFound: "
                                             "NVML Shared Library Not Found (is the NVIDIA driver installed? "
                                             "--nvml.backend=fake simulates a node)"]


def test_check_on_the_simulated_node_prints_the_table_and_exits_0():
    r = subprocess.run(gpulse_cmd("check", "--nvml.backend=fake", "--scenario=t4-legacy"), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "NVML   ok      driver 470.256.02" in r.stdout
    # T4: no HBM temperature; each call's outcome is what happened, per GPU
    row = next(line for line in r.stdout.splitlines() if line.startswith("NVML_FI_DEV_MEMORY_TEMP"))
    assert row.split()[1:3] == ["unsupported", "unsupported"], row
    row = next(line for line in r.stdout.splitlines() if line.startswith("nvmlDeviceGetPowerUsage"))
    assert row.split()[1:3] == ["ok", "ok"], row  # the fallback behind the unsupported power field
    row = next(line for line in r.stdout.splitlines() if line.startswith("nvmlGpmMetricsGet ANY_TENSOR_UTIL"))
    assert "not called" in row  # a T4 has no GPM: never asked


def test_check_reports_what_each_call_did_on_nvidias_mock_gb200():
    import os

    from tests.conftest import ROOT
    path = os.path.join(ROOT, "tests", "fixtures", "scenarios", "mock-nvml-gb200.yaml")
    r = subprocess.run(gpulse_cmd("check", "--nvml.backend=fake", f"--scenario={path}"), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {line.split("  ")[0]: line for line in r.stdout.splitlines()}
    assert rows["per-process utilization"].split()[2:6] == ["no", "data", "no", "data"]  # idle: SUCCESS size query
    assert "ok" in rows["NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX summed over NVLinks"]
    assert rows["nvmlDeviceGetFanSpeed"].split()[1:5] == ["unsupported"] * 4
    assert rows["compute processes (MIG)"].count("not called") == 4


def test_undecodable_config_and_scenario_files_are_one_line_and_exit_2(tmp_path):
    conf = tmp_path / "gpulse.yaml"
    conf.write_bytes(b"log:\n  level: d\xe9bug\n")
    scen = tmp_path / "node.yaml"
    scen.write_bytes(b"name: n\ndescription: \xff\n")
    for argv, needle in [(["check", f"--config.file={conf}"], f"config.file: {conf}:2: not UTF-8 text"),
                         (["scenarios", str(scen)], f"{scen}:2: not UTF-8 text (byte 21)"),
                         (["check", "--nvml.backend=fake", f"--scenario={scen}"], f"{scen}:2: not UTF-8 text"),
                         (["serve", "--nvml.backend=fake", f"--scenario={scen}"], f"{scen}:2: not UTF-8 text")]:
        r = subprocess.run(gpulse_cmd(*argv), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (argv, r.stderr)


@pytest.mark.parametrize("argv", [
    ["check", "--nvml.backend=fake", "--scenario=t4-legacy"],
    ["identify", "--nvml.backend=fake", "--scenario=t4-legacy"],
    ["labels", "--nvml.backend=fake", "--scenario=t4-legacy", "--json"],
    ["identify", "--name", "Tesla T4"],
    ["scenarios"],
    ["serve", "--help"],
])
@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_reader_gone_is_quiet_exit_141(argv, unbuffered):
    """`gpulse check | head`: the reader closes the pipe; no BrokenPipeError traceback, and
    the status a shell gives a process killed by SIGPIPE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first line: every write fails
    try:
        r = subprocess.run(gpulse_cmd(*argv), stdout=write_end, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=60)
    finally:
        os.close(write_end)
    # argparse itself ignores a failed write of --help, which then exits 0
    assert r.stderr == "" and r.returncode in ((0, 141) if "--help" in argv else (141,)), r.stderr


def test_check_piped_into_head_prints_no_traceback():
    r = subprocess.run(["bash", "-c", " ".join(gpulse_cmd("check", "--nvml.backend=fake")) + " | head -n 2"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.stdout.splitlines()[0].startswith("CHECK") and len(r.stdout.splitlines()) == 2
    assert r.stderr == ""


@pytest.mark.parametrize("command", ["serve", "check", "identify", "labels"])
def test_scenario_without_fake_backend_says_what_to_add(command, tmp_path):
    run_dir = tmp_path / "run"
    extra = [f"--workloads.push-socket={run_dir}/push.sock", f"--identity.nfd-file={run_dir}/nfd"] \
        if command == "serve" else []
    r = subprocess.run(gpulse_cmd(command, "--scenario=reference", *extra), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == ("gpulse: --scenario simulates a node: add --nvml.backend=fake "
                                "(or drop --scenario on a GPU node)")
    assert not run_dir.exists()  # nothing was started or created


@pytest.mark.parametrize("command,has,lacks", [
    ("serve", ["--compat.dcgm", "--collect.interval", "--web.listen-address"], []),
    ("check", ["--nvml.backend", "--path.procfs", "--kubelet.pod-resources-socket"],
     ["--collect.interval", "--web.listen-address", "--compat.dcgm", "--workloads.enabled"]),
    ("identify", ["--name", "--json", "--kube.apiserver"], ["--collect.interval", "--web.listen-address"]),
    ("labels", ["--json", "--node.name"], ["--collect.interval", "--name", "--compat.dcgm"]),
])
def test_each_subcommand_help_shows_its_own_flags(command, has, lacks):
    r = subprocess.run(gpulse_cmd(command, "--help"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    flags = set(re.findall(r"(--[a-z][\w.-]*)", r.stdout))
    assert set(has) <= flags and not set(lacks) & flags, sorted(flags)


def test_listen_address_in_the_log_brackets_ipv6():
    from gpulse.cli import _host_port
    assert _host_port("::1", 9445) == "[::1]:9445"
    assert _host_port("::", 9445) == "[::]:9445"
    assert _host_port("127.0.0.1", 9445) == "127.0.0.1:9445"


# --- gpulse probe ------------------------------------------------------------------------------
def _sim_server(server, version="", tp=1, dp=1, model="org/model-7b", q=7, r=5, kv=0.42):
    """One simulated server (gpulse.sim.inference) of that kind and version: (handle, url, workload)."""
    from types import SimpleNamespace

    from gpulse.sim.inference import start_inference_servers
    from gpulse.sim.scenario import PodSpec, WorkloadSpec
    from gpulse.sim.traces import parse_trace

    w = WorkloadSpec(server, model, parse_trace(q), parse_trace(r), parse_trace(kv), version=version,
                     tensor_parallel=tp, data_parallel=dp)
    handle = start_inference_servers(SimpleNamespace(pods=(PodSpec("ns", "p", "uid-p", (), workload=w),)),
                                     clock=lambda: 30.0)
    host, port, path = handle.endpoints[("ns", "p")]
    return handle, f"http://{host}:{port}{path}", w


def _every_simulated_format():
    from gpulse.sim import expositions
    from gpulse.sim.scenario import SERVERS
    for server in SERVERS:
        for fmt in expositions.FORMATS[server]:
            for variant in fmt.variants:
                yield server, fmt.since + (f"-{variant}" if variant else "")


@pytest.mark.parametrize("server,version", list(_every_simulated_format()))
def test_probe_reads_every_simulated_server_as_the_simulator_served_it(server, version, capsys):
    """Each simulated server kind and version, with 2 tensor- and 3 data-parallel ranks where
    the format has them: `gpulse probe --json` gives the values the simulator knows it served."""
    import json

    from gpulse.cli import main
    from gpulse.sim.inference import serve
    handle, url, w = _sim_server(server, version, tp=2, dp=3)
    try:
        code = main(["probe", "--json", url])
    finally:
        handle.stop()
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    truth = serve(w, 30.0)[1]
    want = [{"model": m, **{s: v.get(s) for s in ("queue_depth", "running_requests", "kv_cache_usage")}}
            for m, v in sorted(truth.items())]
    assert (out["server"], out["up"], out["error"], out["models"]) == (server, True, None, want), out
    assert out["url"] == url and 0 < out["duration_seconds"] < 5
    no_queue = [w.split(": no queue depth")[0] for w in out["warnings"] if ": no queue depth" in w]
    assert no_queue == [f"model {m!r}" if m else "this endpoint" for m, v in sorted(truth.items())
                        if "queue_depth" not in v], out["warnings"]


def test_probe_prints_a_short_table(capsys):
    handle, url, _w = _sim_server("vllm", "0.6.3", model="meta-llama/Llama-3.1-8B-Instruct", q=3, r=12, kv=0.5)
    try:
        r = subprocess.run(gpulse_cmd("probe", url), capture_output=True, text=True, timeout=60)
    finally:
        handle.stop()
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(re.escape(url) + r": vllm \(detected from its metric names\), 1 model, answered in \d+ ms",
                        lines[0]), lines[0]
    assert [line.split() for line in lines[1:]] == [["MODEL", "QUEUE", "RUNNING", "KV", "CACHE"],
                                                   ["meta-llama/Llama-3.1-8B-Instruct", "3", "12", "0.5"]]


def test_probe_with_server_reads_as_that_server_and_warns_of_a_missing_queue(capsys):
    import json

    from gpulse.cli import main
    handle, url, _w = _sim_server("tgi", q=4, r=2)
    try:
        code = main(["probe", "--json", "--server", "vllm", url])
    finally:
        handle.stop()
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["server"] == "vllm"
    assert out["models"] == [{"model": "", "queue_depth": None, "running_requests": None, "kv_cache_usage": None}]
    assert any(w.startswith("this endpoint: no queue depth") for w in out["warnings"]), out["warnings"]


@pytest.mark.parametrize("argv,code,needle", [
    (["https://127.0.0.1:8443/metrics"], 2, "gpulse probe: https://127.0.0.1:8443/metrics: expected "
                                            "http://host:port/path (the agent scrapes inference servers over plain HTTP)"),
    (["ftp://x/metrics"], 2, "expected http://host:port/path"),
    (["http:///metrics"], 2, "no host"),
    (["http://u:p@127.0.0.1:1/metrics"], 2, "credentials in the URL"),
    (["http://127.0.0.1:99999/metrics"], 2, "not a URL"),
    (["http://127.0.0.1:9/metrics", "--server", "nope"], 2, "--server 'nope': unknown server (one of "),
    (["http://127.0.0.1:9/metrics", "--timeout", "0"], 2, "--timeout 0: expected 0.01 to 60 seconds"),
    (["http://127.0.0.1:9/metrics", "--timeout", "soon"], 2, "--timeout 'soon': expected seconds"),
    (["http://127.0.0.1:9/metrics"], 1, "gpulse probe: http://127.0.0.1:9/metrics: ConnectionRefusedError"),
])
def test_probe_bad_input_and_failed_fetch_are_one_line(argv, code, needle):
    r = subprocess.run(gpulse_cmd("probe", *argv), capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert r.stdout == "" and r.stderr.strip().splitlines() == [r.stderr.strip()] and needle in r.stderr, r.stderr


def test_probe_failed_fetch_as_json_names_url_and_error(capsys):
    import json

    from gpulse.cli import main
    handle, url, _w = _sim_server("vllm")
    handle.set_fault(("ns", "p"), "error")
    try:
        code = main(["probe", "--json", "--timeout", "2", url])
        missing = url.replace("/metrics", "/nope")
        code_404 = main(["probe", missing])
    finally:
        handle.stop()
    out, err = capsys.readouterr()
    first = json.loads(out)
    assert code == 1 and code_404 == 1
    assert (first["url"], first["up"], first["server"], first["models"]) == (url, False, None, [])
    assert first["error"].startswith("HTTP 500")
    assert err.strip() == f"gpulse probe: {missing}: HTTP 404 Not Found"


def test_probe_bare_host_port_fetches_the_default_path():
    from gpulse.probe import target_for_url
    target, url = target_for_url("http://[::1]:8000")
    assert (target.host, target.port, target.path, url) == ("::1", 8000, "/metrics", "http://[::1]:8000/metrics")
    target, url = target_for_url("http://server/stats?format=prometheus", "tgi")
    assert (target.port, target.path, target.server) == (80, "/stats?format=prometheus", "tgi")


def test_probe_url_host_and_characters():
    from gpulse.probe import ProbeInputError, target_for_url
    target, _url = target_for_url("http://b\u00fccher.example:8000/metrics")
    assert target.host == "xn--bcher-kva.example"  # the Host header must be ASCII
    for url, needle in [("http://a\x01b:1/metrics", "control characters"),
                        ("http://127.0.0.1:1/m\x7f", "control characters"),
                        ("http://" + "a" * 64 + ".example/", "is not a host name")]:
        with pytest.raises(ProbeInputError, match=needle):
            target_for_url(url)


def test_probe_text_shows_no_control_characters_of_the_server():
    from gpulse.probe import ProbeReport, render_text
    from gpulse.snapshot import WorkloadState
    from gpulse.workloads.discovery import ScrapeTarget
    from gpulse.workloads.scrape import EndpointResult
    target = ScrapeTarget("", "", "", "h", 80, "/metrics")
    state = WorkloadState("", "", "vllm", model="m\x1b]0;owned\x07", queue_depth=1.0)
    result = EndpointResult(target, True, "vllm", (state,), 0.01)
    text = render_text(ProbeReport(target.url, "vllm", False, result, ("model 'x\x1b[2J' odd",)))
    assert "m?]0;owned?" in text and "x?[2J" in text and "\x1b" not in text and "\x07" not in text
