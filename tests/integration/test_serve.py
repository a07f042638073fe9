"""`gpulse serve` as users run it (`make run`): a process, a port, one scrape."""

import re
import signal
import subprocess
import urllib.request

import pytest

from tests.conftest import require_promtool, serve_process


@pytest.fixture(scope="module")
def served():
    with serve_process("--scenario=reference", settle=2.5) as (proc, base):  # a few ticks: windows, attribution and workload scrapes fill in
        yield proc, base


def _scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        return r.read().decode()


def test_scrape_shows_all_gpus_and_passes_promtool(served):
    _, base = served
    text = _scrape(base)
    ups = re.findall(r'^gpulse_gpu_up\{gpu="(\d)",[^}]*\} 1$', text, re.M)
    assert sorted(ups) == [str(i) for i in range(8)]
    promtool = require_promtool()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_per_pod_utilization_for_all_64_pods_conserved_per_gpu(served):
    _, base = served
    text = _scrape(base)
    pods = {}
    for labels, value in re.findall(r'^gpulse_pod_gpu_utilization_ratio\{([^}]*)\} (\S+)$', text, re.M):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        pods[(d["namespace"], d["pod"])] = (d, float(value))
    assert len(pods) == 64
    mig = [d for d, _ in pods.values() if d.get("mig_uuid")]
    assert len(mig) == 28 and all(d["sharing"] == "mig" and d["mig_profile"] == "1g.10gb" for d in mig)
    gpu_util = {g: float(v) for g, v in re.findall(r'^gpulse_gpu_utilization_ratio\{gpu="(\d)",[^}]*\} (\S+)$', text, re.M)}
    unattributed = {g: float(v) for g, v in re.findall(
        r'^gpulse_gpu_unattributed_utilization_ratio\{gpu="(\d)",[^}]*\} (\S+)$', text, re.M)}
    for gpu in ("4", "5", "6", "7"):  # the time-sliced GPUs
        shares = [v for d, v in pods.values() if d["gpu"] == gpu]
        assert len(shares) == 9 and len(set(shares)) > 1, "pods with different loads get different values"
        assert sum(shares) + unattributed.get(gpu, 0.0) == pytest.approx(gpu_util[gpu], abs=0.02)
    assert unattributed["4"] > 0, "GPU 4's host process belongs to no pod"


def test_identity_and_queue_depth_are_served(served):
    _, base = served
    text = _scrape(base)
    assert re.search(r'^gpulse_gpu_info\{[^}]*model="H100"[^}]*sku="H100-SXM5-80GB"', text, re.M)
    assert re.search(r'^gpulse_node_info\{[^}]*cloud="aws"[^}]*instance_type="p5.48xlarge"', text, re.M)
    depths = re.findall(r'^gpulse_workload_queue_depth\{[^}]*server="vllm"[^}]*\} \S+$', text, re.M)
    assert len(depths) == 40  # 28 MIG pods + 12 time-sliced serving pods run vLLM
    with urllib.request.urlopen(base + "/identity", timeout=10) as r:
        assert b'"H100-SXM5-80GB"' in r.read()


def test_sigterm_stops_cleanly(served):
    proc, _ = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
