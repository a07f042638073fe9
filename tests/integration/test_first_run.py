"""The first hour of a new user, as the README walks it: the quick start's demo command,
run as printed against `gpulse serve` on the reference node, shows what the text promises;
`--compat.dcgm` as a bare switch serves dcgm-exporter's names next to gpulse's."""

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import ROOT, free_port, gpulse_cmd, serve_process

README = os.path.join(ROOT, "README.md")


@pytest.fixture(scope="module")
def served():
    with serve_process("--compat.dcgm", settle=2.5) as (proc, base):  # workload scrapes (1 s) fill in the queue depths
        yield int(base.rsplit(":", 1)[1])


def _demo_command() -> str:
    text = open(README, encoding="utf-8").read()
    demo = text[text.index("<!-- BEGIN GENERATED DEMO -->"):text.index("<!-- END GENERATED DEMO -->")]
    return re.search(r"```sh\n(.*?)```", demo, re.S).group(1)


def test_readme_demo_shows_gpus_pods_and_queue_depths(served):
    if shutil.which("curl") is None:
        pytest.skip("curl not installed (the README's demo uses it)")
    command = _demo_command().replace("localhost:9445", f"127.0.0.1:{served}")
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    families = [line.split("{")[0] for line in r.stdout.splitlines()]
    assert families == ["gpulse_gpu_up"] * 2 + ["gpulse_pod_gpu_utilization_ratio"] * 2 + \
        ["gpulse_workload_queue_depth"] * 2, r.stdout


def test_compat_dcgm_switch_serves_the_dcgm_names(served):
    with urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=10) as r:
        text = r.read().decode()
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP"):
        assert re.search(rf"^{name}\{{", text, re.M), name
    assert re.search(r'^gpulse_collector_success\{collector="dcgm_compat"\} 1$', text, re.M)


@pytest.mark.parametrize("sig,burst", [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGINT, 200)])
def test_a_signal_taken_by_any_thread_stops_the_agent(sig, burst):
    """Ctrl-C on `make run` (the terminal and make both send it), SIGTERM from the kubelet:
    the kernel may hand a signal to any thread (gRPC's native ones included), and more may
    follow while the first is handled; the agent still stops, with status 0."""
    port = free_port()
    proc = subprocess.Popen(gpulse_cmd("serve", "--nvml.backend=fake", f"--web.listen-address=127.0.0.1:{port}"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gpulse serve did not become ready"
            time.sleep(0.2)
        others = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid)
        os.kill(others[-1], sig)  # kill(2) with a thread's id: that thread takes the signal
        for _ in range(burst - 1):  # spaced, so that some land while an earlier one is handled
            time.sleep(0.0005)
            os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
