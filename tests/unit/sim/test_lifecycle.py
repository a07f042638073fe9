"""Simulated pod starts: runs, the kubelet's back-off, and the Pod objects the fake API
server serves along the way (read back by the agent's own parser)."""

from __future__ import annotations

import math

import pytest
from gpulse.kube.apiserver import PodInfo
from gpulse.sim import lifecycle, scenario
from gpulse.sim.apiserver import scenario_pod
from gpulse.sim.lifecycle import Timeline, runs
from gpulse.sim.scenario import StartupSpec

WALL0 = 1_772_000_000.0


def test_runs_follow_the_delays_and_the_crash_loop_back_off():
    spec = StartupSpec(scheduled=10, image_pull=30, cuda_init=2, model_load=60, first_request=5,
                       crashes=(200, 300, 400, 1500), backoff=10)
    r = runs(spec)
    assert [(x.begin, x.containers, x.memory, x.ready, x.first_request, x.end) for x in r[:2]] == [
        (10, 40, 42, 102, 107, 200), (200, 210, 212, 272, 277, 300)]
    # back-off 10, 20, 40 s; the fourth run lasted over 10 minutes, so it starts over at 10 s
    assert [x.containers - x.begin for x in r[1:]] == [10, 20, 40, 10]
    assert r[-1].end == math.inf and r[0].answering == r[0].ready


def test_the_back_off_is_capped_at_five_minutes():
    spec = StartupSpec(scheduled=0, image_pull=1, crashes=tuple(float(100 + 400 * i) for i in range(8)), backoff=10)
    assert max(x.containers - x.begin for x in runs(spec)) == lifecycle.BACKOFF_CAP


def test_a_server_that_answers_before_it_has_loaded():
    (run,) = runs(StartupSpec(scheduled=0, image_pull=5, cuda_init=3, model_load=20, answers_before_load=True))
    assert (run.answering, run.ready) == (8, 28)
    t = Timeline(StartupSpec(scheduled=0, image_pull=5, cuda_init=3, model_load=20, answers_before_load=True))
    assert t.answering(10) and not t.ready(10) and t.ready(28)


def test_a_crash_must_hit_a_running_container():
    with pytest.raises(ValueError, match="crash at 5s: the container only runs from 6s"):
        runs(StartupSpec(scheduled=1, image_pull=5, crashes=(5,)))


def test_timeline_queries():
    t = Timeline(StartupSpec(scheduled=10, image_pull=10, cuda_init=2, model_load=8, first_request=2,
                             crashes=(40,), backoff=10))
    assert not t.exists(9) and t.exists(10)
    assert [t.holds_memory(x) for x in (21, 22, 39.9, 40, 51, 52)] == [False, True, True, False, False, True]
    assert t.requests(31.9) == 0 and t.requests(32) == 1 and t.requests(33) == 1 + int(lifecycle.REQUEST_RATE)
    assert t.requests(45) == 0  # the process died with its counter
    assert t.changes() == (10, 20, 30, 40, 50, 60)


SCENARIO = """
name: life
node: {name: n1}
gpus: [{model: T4}]
pods:
- namespace: serving
  name: llama-abc12-x
  labels: {pod-template-hash: abc12}
  owner: {kind: ReplicaSet, name: llama-abc12}
  containers: [{name: vllm, devices: [{gpu: 0}]}, {name: proxy}]
  workload: {server: vllm}
  startup: {scheduled: 10s, image_pull: 20s, cuda_init: 2s, model_load: 30s, crashes: [100s], backoff: 10s}
"""


@pytest.fixture
def pod_at(tmp_path):
    path = tmp_path / "life.yaml"
    path.write_text(SCENARIO)
    scen = scenario.load(str(path))
    (spec,) = scen.pods
    timeline = Timeline(spec.startup)
    endpoints = {("serving", "llama-abc12-x"): ("127.0.0.1", 8000, "/metrics")}

    def at(t):
        obj = scenario_pod(scen, spec, endpoints, t, WALL0, timeline)
        return None if obj is None else PodInfo.from_object(obj)
    return at


def test_the_pod_does_not_exist_before_it_is_scheduled(pod_at):
    assert pod_at(9.9) is None


def test_pulling(pod_at):
    info = pod_at(15)
    life = info.lifecycle
    assert info.phase == "Pending" and life.scheduled_at == WALL0 + 10 and life.ready_at is None
    assert [(c.state, c.reason) for c in life.containers] == [("waiting", "ContainerCreating")] * 2
    assert (life.owner_kind, life.owner_name) == ("ReplicaSet", "llama-abc12")
    assert info.annotations["gpulse.dev/port"] == "8000"


def test_running_then_ready(pod_at):
    life = pod_at(40).lifecycle
    assert [(c.state, c.started_at) for c in life.containers] == [("running", WALL0 + 30)] * 2
    assert life.ready_at is None
    assert pod_at(62).lifecycle.ready_at == WALL0 + 62


def test_a_crash_loop_as_the_kubelet_reports_it(pod_at):
    info = pod_at(105)
    main, proxy = info.lifecycle.containers
    assert info.phase == "Running" and info.lifecycle.ready_at is None
    assert (main.state, main.reason, main.restart_count, main.last_finished_at) == (
        "waiting", "CrashLoopBackOff", 1, WALL0 + 100)
    assert (proxy.state, proxy.started_at, proxy.restart_count) == ("running", WALL0 + 30, 0)
    main = pod_at(111).lifecycle.containers[0]
    assert (main.state, main.started_at, main.last_finished_at) == ("running", WALL0 + 110, WALL0 + 100)


@pytest.mark.parametrize("startup, message", [
    ("{image_pull: 3s}", "startup.scheduled: missing required key"),
    ("{scheduled: 1s, warmup: 3s}", "startup.warmup: unknown key"),
    ("{scheduled: 1s, model_load: -3}", "startup.model_load: must not be negative"),
    ("{scheduled: 1s, crashes: [soon]}", "startup.crashes[0]"),
    ("{scheduled: 1s, image_pull: 10s, crashes: [5s]}", "crash at 5s: the container only runs from 11s"),
])
def test_bad_startup_blocks_are_named(tmp_path, startup, message):
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.replace(
        "{scheduled: 10s, image_pull: 20s, cuda_init: 2s, model_load: 30s, crashes: [100s], backoff: 10s}", startup))
    with pytest.raises(scenario.ScenarioError, match=message.replace("[", r"\[")):
        scenario.load(str(path))
