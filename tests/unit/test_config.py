import argparse
import subprocess

import pytest
from gpulse import config as c

from tests.conftest import gpulse_cmd


def _args(*argv):
    p = argparse.ArgumentParser()
    c.add_flags(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("1s", 1.0), ("1m", 60.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5)])
def test_durations_the_prometheus_way(text, seconds):
    assert c.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "10 s", "1sec", "-1s", "s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        c.parse_duration(text)


def test_defaults():
    cfg = c.load(_args(), environ={})
    assert cfg.web_listen_address == ":9445"
    assert cfg.collect_interval == 1.0
    assert cfg.nvml_backend == "real"
    assert cfg.kubelet_pod_resources_socket == "/var/lib/kubelet/pod-resources/kubelet.sock"


def test_precedence_flag_over_env_over_file(tmp_path):
    f = tmp_path / "gpulse.yaml"
    f.write_text("collect:\n  interval: 5s\n  window: 30s\nweb.listen-address: ':7000'\n")
    env = {"GPULSE_CONFIG_FILE": str(f), "GPULSE_COLLECT_INTERVAL": "2s", "NODE_NAME": "node-a"}
    cfg = c.load(_args("--collect.interval=3s"), environ=env)
    assert cfg.collect_interval == 3.0  # flag
    assert cfg.collect_window == 30.0  # file
    assert cfg.web_listen_address == ":7000"
    assert cfg.node_name == "node-a"  # downward API alias
    assert c.load(_args(), environ=env).collect_interval == 2.0  # env over file


def test_config_is_frozen():
    cfg = c.load(_args(), environ={})
    with pytest.raises(Exception):
        cfg.collect_interval = 2


@pytest.mark.parametrize("argv,env,needle", [
    (["--collect.interval=fast"], {}, "--collect.interval: invalid duration 'fast'"),
    (["--nvml.backend=gpu"], {}, "--nvml.backend: invalid value 'gpu' (one of: real, fake)"),
    ([], {"GPULSE_WEB_LISTEN_ADDRESS": "nowhere"}, "GPULSE_WEB_LISTEN_ADDRESS: invalid listen address"),
    ([], {"GPULSE_COMPAT_DCGM": "maybe"}, "GPULSE_COMPAT_DCGM: invalid boolean"),
    (["--workloads.concurrency=0"], {}, "--workloads.concurrency: integer '0' must be positive"),
])
def test_bad_values_name_the_setting(argv, env, needle):
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(*argv), environ=env)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("collect:\n  intervall: 1s\n")
    with pytest.raises(c.ConfigError, match=r"unknown setting 'collect.intervall'"):
        c.load(_args(f"--config.file={f}"), environ={})
    f.write_text("collect: [1, 2\n")
    with pytest.raises(c.ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        c.load(_args(f"--config.file={f}"), environ={})
    with pytest.raises(c.ConfigError, match="cannot read"):
        c.load(_args(f"--config.file={tmp_path}/missing.yaml"), environ={})


@pytest.mark.parametrize("argv,needle", [
    (["serve", "--collect.interval=soon"], "gpulse: --collect.interval: invalid duration 'soon'"),
    (["check", "--nvml.backend=fake", "--scenario=nope"], "gpulse: scenario 'nope': not a built-in"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, needle):
    r = subprocess.run(gpulse_cmd(*argv), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv,needle", [
    (["--collect.interval=10s", "--collect.window=5s"], "--collect.window (5s) must be at least --collect.interval (10s)"),
    (["--collect.interval=100ms", "--collect.window=10m"], "holds more than 1024 ticks"),
])
def test_settings_checked_together(argv, needle):
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(*argv), environ={})
    assert needle in str(err.value)


def test_ipv6_listen_address(tmp_path):
    import socket

    from gpulse.server import make_server
    try:
        server = make_server("[::1]:0", sampler=None)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert server.socket.family == socket.AF_INET6
    server.server_close()


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
