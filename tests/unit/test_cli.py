"""The gpulse command: one-line errors, exit codes, check's table."""

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
