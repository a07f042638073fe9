"""The cold-start timeline end to end on a simulated node, in real time: pods of a
Deployment are scheduled while the agent runs, pull, initialise CUDA, load their model and
take traffic (one crashes and restarts); the agent's own paths (pod watch, kubelet, NVML,
scrapes, ready probe) measure each phase, and each must match the scenario's delay within
one tick plus one scrape interval. The histogram counts every completed start, the
restart included.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from gpulse import config as config_mod
from gpulse.app import build
from gpulse.sim import lifecycle
from gpulse.sim.world import World

from tests.harness import make_config

TICK = 0.5
SCRAPE = 0.5
TOLERANCE = TICK + SCRAPE  # the bound: one tick plus one scrape interval

SCENARIO = """
name: startup-sim
node: {name: startup-node}
gpus:
- {model: A10G, count: 4}
pods:
- namespace: serving
  name: llama-5c8d7b6f9-old01
  labels: {pod-template-hash: 5c8d7b6f9}
  owner: {kind: ReplicaSet, name: llama-5c8d7b6f9}
  containers: [{name: vllm, devices: [{gpu: 0}], processes: [{memory_mib: 20000, utilization: 0.5}]}]
  workload: {server: vllm, model: m, queue_depth: 3, running_requests: 4}
- namespace: serving
  name: llama-5c8d7b6f9-new01
  labels: {pod-template-hash: 5c8d7b6f9}
  owner: {kind: ReplicaSet, name: llama-5c8d7b6f9}
  containers: [{name: vllm, devices: [{gpu: 1}], processes: [{memory_mib: 20000, utilization: 0.5}]}]
  workload: {server: vllm, model: m, queue_depth: 1, running_requests: 2}
  startup: {scheduled: 2s, image_pull: 4s, cuda_init: 2s, model_load: 5s, first_request: 2s}
- namespace: serving
  name: llama-5c8d7b6f9-new02
  labels: {pod-template-hash: 5c8d7b6f9}
  owner: {kind: ReplicaSet, name: llama-5c8d7b6f9}
  containers: [{name: vllm, devices: [{gpu: 2}], processes: [{memory_mib: 20000, utilization: 0.5}]}]
  workload: {server: vllm, model: m, queue_depth: 1, running_requests: 2}
  startup: {scheduled: 4s, image_pull: 7s, cuda_init: 1s, model_load: 6s, first_request: 3s, crashes: [22s], backoff: 4s}
- namespace: serving
  name: triton-0
  owner: {kind: StatefulSet, name: triton}
  annotations: {gpulse.dev/server: triton, gpulse.dev/ready-path: /v2/health/ready}
  containers: [{name: tritonserver, devices: [{gpu: 3}], processes: [{memory_mib: 16000, utilization: 0.3}]}]
  workload: {server: triton, model: ensemble, queue_depth: 1}
  startup: {scheduled: 3s, image_pull: 3s, cuda_init: 2s, model_load: 6s, first_request: 2s, answers_before_load: true}
"""


def expected_phases(run: lifecycle.Run) -> dict[str, float]:
    """The phases a run's delays make: each from the previous milestone."""
    return {"containers_started": run.containers - run.begin, "gpu_memory_allocated": run.memory - run.containers,
            "server_answering": run.answering - run.memory, "model_ready": run.ready - run.answering,
            "first_request_served": run.first_request - run.ready}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "startup-sim.yaml"
    path.write_text(SCENARIO)
    world = World.from_name(str(path))
    cfg = dataclasses.replace(make_config(scenario=str(path)), collect_interval=TICK,
                              workloads_scrape_interval=SCRAPE, workloads_scrape_timeout=0.4)
    cfg = config_mod.with_overrides(cfg, world.start(), "scenario")
    agent = build(cfg, nvml_loader=lambda: world.nvml)
    agent.on_stop.append(world.stop)
    agent.start()
    yield world, agent
    agent.stop()


def _snapshot(agent):
    rendered = agent.sampler.current
    return rendered.snapshot if rendered is not None else None


def _wait(agent, world, until: float, timeout: float = 90.0):
    """Let scenario time reach `until`, plus two ticks for the last observations to land."""
    deadline = time.monotonic() + timeout
    while world.clock() < until + 2 * TICK:
        assert time.monotonic() < deadline, f"scenario time stuck at {world.clock():.1f}s"
        time.sleep(0.1)
    return _snapshot(agent)


def test_every_new_pod_phase_matches_the_scenario_and_every_start_is_counted(node):
    world, agent = node
    starting = [(p, lifecycle.Timeline(p.startup)) for p in world.scenario.pods if p.startup is not None]
    # Half-way through: the starts under way say so, in the phase they wait in.
    snap = _wait(agent, world, 9.0)
    states = {s.pod: s for s in snap.startups}
    assert states["llama-5c8d7b6f9-new02"].starting is True
    assert states["llama-5c8d7b6f9-new02"].current == "containers_started"  # pulling until 11 s
    assert states["llama-5c8d7b6f9-old01"].starting is False  # serving since before the agent
    last = max(r.first_request for _, t in starting for r in t.runs)
    snap = _wait(agent, world, last)
    states = {s.pod: s for s in snap.startups}
    for pod, timeline in starting:
        run = timeline.runs[-1]
        got = states[pod.name]
        assert got.start == ("restart" if run.index else "initial"), pod.name
        assert (got.starting, got.current) == (False, ""), pod.name
        measured = dict(got.phases)
        for phase, want in expected_phases(run).items():
            assert phase in measured, f"{pod.name}: no {phase} in {got.phases}"
            assert measured[phase] == pytest.approx(want, abs=TOLERANCE), f"{pod.name} {phase}: {got.phases}"
    # The pod that was already serving has only the phase the API dates.
    assert dict(states["llama-5c8d7b6f9-old01"].phases) == {"containers_started": 20.0}
    # One observation per completed start, restarts labelled and counted too.
    hist = {(h.workload, h.workload_type, h.start): h for h in snap.startup_histograms}
    assert hist[("llama", "deployment", "initial")].counts[-1] == 2
    assert hist[("llama", "deployment", "restart")].counts[-1] == 1
    assert hist[("triton", "statefulset", "initial")].counts[-1] == 1
    starts = sum(len(t.runs) for _, t in starting)
    assert sum(h.counts[-1] for h in snap.startup_histograms) == starts
    # Each observation is scheduled (or the crash) -> model ready.
    expected_sum = sum(r.ready - r.begin for p, t in starting for r in t.runs if p.name.startswith("llama"))
    measured_sum = hist[("llama", "deployment", "initial")].total + hist[("llama", "deployment", "restart")].total
    assert measured_sum == pytest.approx(expected_sum, abs=3 * TOLERANCE)


def test_the_exposition_carries_the_timeline(node):
    world, agent = node
    text = agent.sampler.current.text.decode()
    assert ('gpulse_workload_startup_seconds_count{namespace="serving",workload="llama",'
            'workload_type="deployment",start="restart"} 1') in text
    assert ('gpulse_workload_starting{namespace="serving",pod="triton-0",workload="triton",'
            'workload_type="statefulset",start="initial"} 0') in text
    assert 'phase="first_request_served"' in text
