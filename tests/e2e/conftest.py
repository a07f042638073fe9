"""The end-to-end stack, started once for all e2e modules and stopped after them:

    simulated gpulse agents (tests/fixtures/e2e/*.yaml)  ─┐
    kube-state-metrics stand-in (static exposition)      ─┴→ Prometheus (1 s scrape and
    evaluation, the repo's rule files as they are) → Alertmanager (a copy of the repo's
    routing) → a webhook receiver in this process.

Everything listens on free 127.0.0.1 ports and keeps its data in pytest's tmp dir. Every
wait is bounded and fails with the servers' logs.

The Alertmanager copy differs from deploy/alertmanager/alertmanager.yml in two ways only:
receiver URLs point at the in-test webhook (one path per receiver), and each route's
group_wait/group_interval are cut to 1 s — with the shipped 5 m group_interval the
resolved notification would come 5 minutes after the firing one. Matchers, grouping,
receivers, repeat intervals and inhibitions are kept. The alerts exercised here
(GpulseGpuLost, GpulseGpuXidCritical, GpulseGpuEccUncorrectable, GpulseGpuRowRemapFailure)
have no `for:`, so Prometheus loads the repo's rule files unchanged.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from gpulse.sim.scenario import load as load_scenario

from tests.e2e.procs import (
    ManagedProcess,
    StaticExposition,
    WebhookReceiver,
    env_without_proxies,
    find_binary,
    wait_for,
)
from tests.e2e.promql import Prometheus

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "e2e"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SCRAPE_JOB = "gpulse"  # the job name the alert rules and dashboards select (up{job="gpulse"})

# name -> (scenario file, extra flags). The `node` target label is the scenario's node name,
# as the ServiceMonitor's relabeling sets it from the pod's node.
AGENTS = {
    "e2e-node-a": ("node-a.yaml", ["--compat.dcgm=true"]),
    "e2e-node-b": ("node-b.yaml", ["--compat.dcgm=true"]),
    "e2e-fault-node": ("fault-node.yaml", []),
    "e2e-dra-node": ("dra-node.yaml", []),
    "e2e-scaleup-node": ("scaleup-node.yaml", []),  # pods that start while the stack runs (test_startup.py)
}

START_TIMEOUT = 60.0  # per server; generous for a loaded 2-core machine
DATA_TIMEOUT = 60.0  # first scrapes and rule evaluations (Prometheus applies targets after ~5 s)
SETTLE_SECONDS = 6.0  # a tick, a scrape and a rule evaluation after a change, and the scenario clock's lead


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(binary: str | None, package: str) -> str:
    if binary is None:
        msg = f"{package} binaries not installed (make test installs Debian's `{package}` package)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


@dataclass
class Agent:
    name: str
    scenario: Path
    port: int
    process: ManagedProcess | None = None
    started_at: float = 0.0  # wall time just before the process started: the scenario's t=0 is later

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spec(self):
        """The scenario the agent simulates (pods, traces, faults): the tests' ground truth."""
        return load_scenario(str(self.scenario))

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Stack:
    tmp: Path
    prometheus: Prometheus
    alertmanager_url: str
    receiver: WebhookReceiver
    kube_state_metrics: StaticExposition
    agents: dict
    processes: list = field(default_factory=list)
    receiver_paths: dict = field(default_factory=dict)  # Alertmanager receiver name -> webhook path
    ready_at: float = 0.0  # wall time when every target was up and the rules had run

    def diagnostics(self) -> str:
        parts = [p.describe() for p in self.processes] + [self.receiver.describe()]
        return "\n".join(parts)

    def wait_for(self, check, what: str, timeout: float = DATA_TIMEOUT, interval: float = 0.5):
        return wait_for(check, timeout, what, self.diagnostics, interval)

    def wait_until_serving(self, settle: float = SETTLE_SECONDS) -> None:
        """Wait, if need be, until every pod with a start-up timeline (the scale-up node's)
        has served its first request and has not crashed since, for `settle` seconds: the
        per-pod comparisons hold only then. Its replicas start at 2-25 s, one crashes at
        100 s and serves again about 21 s later; when a module runs depends on the others."""
        from gpulse.sim.lifecycle import Timeline

        for agent in self.agents.values():
            timelines = [Timeline(p.startup) for p in agent.spec.pods if p.startup is not None]
            for _ in range(16):  # each step leaves one unsettled window; a timeline has a few
                t = time.time() - agent.started_at  # the scenario's clock, a little ahead
                waits = [min(r.end, r.first_request + settle) - t
                         for tl in timelines for r in tl.runs if r.begin <= t < r.first_request + settle]
                if not waits:
                    break
                time.sleep(max(waits))


def alertmanager_test_config(receiver_url: str) -> tuple[dict, dict]:
    """The repo's Alertmanager config with webhook URLs pointed at the test receiver and the
    group timers cut to 1 s; returns (config, {receiver name: webhook path})."""
    cfg = copy.deepcopy(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()))
    paths = {}
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            paths[receiver["name"]] = f"/{receiver['name']}"
            hook["url"] = receiver_url + paths[receiver["name"]]
        for other in set(receiver) - {"name", "webhook_configs"}:
            raise AssertionError(f"{ALERTMANAGER_CONFIG}: receiver {receiver['name']} uses {other}; "
                                 "the e2e only knows how to redirect webhook_configs")

    def shorten(route: dict) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    cfg["route"]["group_wait"] = cfg["route"]["group_interval"] = "1s"
    return cfg, paths


def prometheus_config(am_port: int, ksm_port: int, agents: dict) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {"job_name": SCRAPE_JOB, "honor_labels": True,
             "static_configs": [{"targets": [a.instance], "labels": {"node": a.name}} for a in agents.values()]},
            {"job_name": "kube-state-metrics", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{ksm_port}"]}]},
        ],
    }


def _start_agent(agent: Agent, tmp: Path, flags: list, env: dict) -> None:
    agent.started_at = time.time()
    agent.process = ManagedProcess(
        f"gpulse {agent.name}",
        [sys.executable, "-m", "gpulse.cli", "serve", "--nvml.backend=fake", f"--scenario={agent.scenario}",
         f"--web.listen-address=127.0.0.1:{agent.port}", "--log.level=info", *flags],
        tmp / f"{agent.name}.log", cwd=ROOT, env=env)


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    prometheus_bin = _require(find_binary("prometheus"), "prometheus")
    alertmanager_bin = _require(find_binary("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager")
    assert RULE_FILES, "no deploy/prometheus/*.rules.yml"
    tmp = tmp_path_factory.mktemp("e2e")
    env = env_without_proxies()
    cleanup = []
    receiver = WebhookReceiver()
    cleanup.append(receiver.stop)
    ksm = StaticExposition((FIXTURES / "kube-state-metrics.prom").read_bytes())
    cleanup.append(ksm.stop)
    agents = {name: Agent(name, FIXTURES / scenario, _free_port()) for name, (scenario, _) in AGENTS.items()}
    am_port, prom_port = _free_port(), _free_port()
    processes = []
    try:
        am_cfg, receiver_paths = alertmanager_test_config(receiver.url)
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg, sort_keys=False))
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(am_port, ksm.port, agents), sort_keys=False))

        am = ManagedProcess("alertmanager", [
            alertmanager_bin, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
            f"--web.external-url=http://127.0.0.1:{am_port}", "--log.level=info"],
            tmp / "alertmanager.log", cwd=tmp, env=env)
        processes.append(am)
        prom = ManagedProcess("prometheus", [
            prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", f"--web.external-url=http://127.0.0.1:{prom_port}",
            "--log.level=info"],
            tmp / "prometheus.log", cwd=tmp, env=env)
        processes.append(prom)
        # Agents start right after Prometheus: its ~5 s wait before the first scrape and
        # their start-up overlap. Their scenario clocks start now.
        for name, (_, flags) in AGENTS.items():
            _start_agent(agents[name], tmp, flags, env)
            processes.append(agents[name].process)

        s = Stack(tmp, Prometheus(f"http://127.0.0.1:{prom_port}"), f"http://127.0.0.1:{am_port}", receiver, ksm,
                  agents, processes, receiver_paths)
        am.wait_ready(f"{s.alertmanager_url}/-/ready", START_TIMEOUT)
        prom.wait_ready(f"{s.prometheus.url}/-/ready", START_TIMEOUT)
        for agent in agents.values():
            agent.process.wait_ready(f"{agent.url}/readyz", START_TIMEOUT)

        def all_targets_up():
            targets = s.prometheus.targets()
            down = [f"{t['labels'].get('job')}/{t['labels'].get('instance')}: {t.get('lastError') or t['health']}"
                    for t in targets if t["health"] != "up"]
            assert len(targets) == len(agents) + 1 and not down, f"targets not up: {down or targets}"
            return True

        s.wait_for(all_targets_up, "every scrape target up")
        for record in ("namespace_pod:gpulse_pod_gpu_utilization_ratio:sum",
                       "namespace_workload:gpulse_workload_queue_depth:sum",
                       "namespace_workload:gpulse_workload_startup_seconds:histogram_quantile"):
            s.wait_for(lambda: s.prometheus.query(record), f"the first evaluation of {record}")
        s.ready_at = time.time()
        yield s
    finally:
        for p in reversed(processes):
            p.stop()
        for stop in reversed(cleanup):
            stop()


@pytest.fixture(scope="package")
def promtool():
    return _require(find_binary("promtool"), "prometheus")


def run_promtool(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)
