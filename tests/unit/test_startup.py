"""The startup tracker on hand-made inputs: pod objects as the API server sends them, GPU
memory per tick, scrape results, pushes and ready probes, with the clocks held by the test."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from gpulse import startup
from gpulse.kube.apiserver import PodInfo
from gpulse.snapshot import PodShare, WorkloadState
from gpulse.startup import StartupTracker
from gpulse.workloads.discovery import ScrapeTarget
from gpulse.workloads.scrape import EndpointResult
from gpulse.workloads.signals import StartSignals

T0 = 1_772_000_000.0  # a whole second, as API times are


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name="vllm-6d5c7b9f48-abcde", *, scheduled=T0, running=None, crashed=None, restarts=0, ready=None,
        annotations=None, owner=("ReplicaSet", "vllm-6d5c7b9f48"), labels=None, uid=None, phase=None):
    """A Pod object: Pending (ContainerCreating) until `running`; `crashed`: the last
    container exit (CrashLoopBackOff while `running` is older than it)."""
    ann = {"gpulse.dev/scrape": "true", "gpulse.dev/port": "8000"} if annotations is None else annotations
    state = {"waiting": {"reason": "ContainerCreating"}}
    if running is not None and (crashed is None or running > crashed):
        state = {"running": {"startedAt": iso(running)}}
    elif crashed is not None:
        state = {"waiting": {"reason": "CrashLoopBackOff"}}
    cs = {"name": "vllm", "restartCount": restarts, "ready": ready is not None, "state": state}
    if crashed is not None:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": iso(crashed)}}
    conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(scheduled)}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": iso(ready)})
    obj = {"metadata": {"name": name, "namespace": "llm", "uid": uid or name, "annotations": ann,
                        "labels": {"pod-template-hash": "6d5c7b9f48", **(labels or {})},
                        "ownerReferences": [{"kind": owner[0], "name": owner[1], "controller": True}] if owner else []},
           "spec": {"nodeName": "n1"},
           "status": {"phase": phase or ("Running" if running is not None else "Pending"), "podIP": "10.0.0.7",
                      "conditions": conditions, "containerStatuses": [cs]}}
    return PodInfo.from_object(obj)


class Directory:
    def __init__(self, *pods):
        self.list = list(pods)

    def pods(self):
        return tuple(self.list)


class Workloads:
    def __init__(self):
        self.results = {}
        self.pushes = {}

    def endpoint_results(self):
        return tuple(self.results.values())

    def pushed(self):
        return tuple(self.pushes.values())

    def scrape(self, info, mono, up, ready=True, requests=None):
        target = ScrapeTarget(info.namespace, info.name, info.uid, "10.0.0.7", 8000)
        self.results[info.uid] = EndpointResult(target, up, "vllm", (), 0.01, "" if up else "refused", mono,
                                                StartSignals(ready, requests) if up else None)


class Clock:
    """Wall and monotonic time moving together (monotonic = wall - T0 + 100)."""

    def __init__(self, t=T0):
        self.t = t

    def wall(self):
        return self.t

    def mono(self):
        return self.t - T0 + 100.0


def memory(info, held=True):
    return (PodShare(info.namespace, info.name, "vllm", 0, "GPU-0", "exclusive", 1.0, 0.1,
                     8e9 if held else 0.0),)


@pytest.fixture
def world():
    clock, wl = Clock(), Workloads()
    directory = Directory()
    tracker = StartupTracker(directory, wl, wallclock=clock.wall, monoclock=clock.mono)
    return clock, wl, directory, tracker


def tick(tracker, clock, t, shares=()):
    clock.t = t
    return tracker.update(shares, t)


def only(states):
    (s,) = states
    return s


def test_a_cold_start_phase_by_phase_then_its_first_request(world):
    clock, wl, directory, tracker = world
    directory.list = [pod()]
    s = only(tick(tracker, clock, T0 + 1)[0])
    assert (s.workload, s.workload_type, s.start) == ("vllm", "deployment", "initial")
    assert (s.starting, s.current, s.phases) == (True, "containers_started", (("containers_started", 1.0),))
    directory.list = [running := pod(running=T0 + 12)]
    s = only(tick(tracker, clock, T0 + 13, memory(running, held=False))[0])
    assert s.phases == (("containers_started", 12.0), ("gpu_memory_allocated", 1.0)) and s.current == "gpu_memory_allocated"
    s = only(tick(tracker, clock, T0 + 15, memory(running))[0])
    assert s.phases[1] == ("gpu_memory_allocated", 3.0) and s.current == "server_answering"
    wl.scrape(running, clock.mono() + 1, up=False)  # the port refuses while the model loads
    tick(tracker, clock, T0 + 16, memory(running))
    wl.scrape(running, T0 + 40 - T0 + 100, up=True, requests=0.0)  # answers (and is ready) at T0+40
    states, hist = tick(tracker, clock, T0 + 40.5, memory(running))
    s = only(states)
    assert s.phases == (("containers_started", 12.0), ("gpu_memory_allocated", 3.0), ("server_answering", 25.0),
                        ("model_ready", 0.0))
    assert (s.starting, s.current) == (False, "")
    (h,) = hist
    assert (h.namespace, h.workload, h.workload_type, h.start) == ("llm", "vllm", "deployment", "initial")
    assert h.total == 40.0 and h.counts[-1] == 1
    assert h.counts[startup.BUCKETS.index(30.0)] == 0 and h.counts[startup.BUCKETS.index(45.0)] == 1
    wl.scrape(running, T0 + 44 - T0 + 100, up=True, requests=0.0)
    tick(tracker, clock, T0 + 44.5, memory(running))
    wl.scrape(running, T0 + 47 - T0 + 100, up=True, requests=3.0)
    s = only(tick(tracker, clock, T0 + 47.5, memory(running))[0])
    assert s.phases[-1] == ("first_request_served", 7.0)
    # Later ticks change nothing and count nothing twice.
    states, hist = tick(tracker, clock, T0 + 60, memory(running))
    assert only(states).phases == s.phases and hist[0].counts[-1] == 1


def test_the_histogram_series_exists_at_zero_while_the_first_start_runs(world):
    clock, wl, directory, tracker = world
    directory.list = [pod()]
    _, hist = tick(tracker, clock, T0 + 1)
    (h,) = hist
    assert h.counts == (0.0,) * (len(startup.BUCKETS) + 1) and h.total == 0


def test_a_crash_is_a_new_start_and_counts_again(world):
    clock, wl, directory, tracker = world
    directory.list = [pod()]
    tick(tracker, clock, T0 + 1)
    running = pod(running=T0 + 5)
    directory.list = [running]
    tick(tracker, clock, T0 + 5.5, memory(running, False))
    tick(tracker, clock, T0 + 6, memory(running))
    wl.scrape(running, T0 + 20 - T0 + 100, up=True)
    tick(tracker, clock, T0 + 20.5, memory(running))
    # The container exits at T0+100: CrashLoopBackOff, no memory, the port refuses.
    directory.list = [crashed := pod(running=T0 + 5, crashed=T0 + 100, restarts=1)]
    wl.scrape(crashed, T0 + 101 - T0 + 100, up=False)
    s = only(tick(tracker, clock, T0 + 101, memory(crashed, False))[0])
    assert (s.start, s.starting, s.current) == ("restart", True, "containers_started")
    assert s.phases == (("containers_started", 1.0),)  # the back-off, counting up
    directory.list = [back := pod(running=T0 + 110, crashed=T0 + 100, restarts=1)]
    tick(tracker, clock, T0 + 110.5, memory(back, False))
    tick(tracker, clock, T0 + 112, memory(back))
    wl.scrape(back, T0 + 130 - T0 + 100, up=True)
    states, hist = tick(tracker, clock, T0 + 130.5, memory(back))
    s = only(states)
    assert s.start == "restart" and s.starting is False
    assert s.phases == (("containers_started", 10.0), ("gpu_memory_allocated", 2.0), ("server_answering", 18.0),
                        ("model_ready", 0.0))
    by_kind = {h.start: h for h in hist}
    assert by_kind["initial"].counts[-1] == 1 and by_kind["restart"].counts[-1] == 1
    assert by_kind["restart"].total == 30.0  # exit -> ready


def test_a_pod_that_was_serving_before_the_agent_started_is_not_a_new_start(world):
    clock, wl, directory, tracker = world
    directory.list = [old := pod(scheduled=T0 - 3600, running=T0 - 3590, ready=T0 - 3500)]
    wl.scrape(old, clock.mono() - 0.2, up=True, requests=5000.0)
    states, hist = tick(tracker, clock, T0, memory(old))
    s = only(states)
    # Only the phase the API dates is known; the rest happened before the agent looked.
    assert s.phases == (("containers_started", 10.0),) and s.starting is False and hist == ()
    wl.scrape(old, clock.mono() + 1, up=True, requests=5010.0)  # requests go on: not a "first" one
    assert only(tick(tracker, clock, T0 + 1.5, memory(old))[0]).phases == (("containers_started", 10.0),)


def test_before_its_first_scrape_an_old_pod_is_not_reported_as_starting(world):
    clock, wl, directory, tracker = world
    directory.list = [old := pod(scheduled=T0 - 3600, running=T0 - 3590)]
    s = only(tick(tracker, clock, T0, memory(old))[0])
    assert s.starting is None and s.current == "" and s.phases == (("containers_started", 10.0),)


def test_an_agent_restart_in_the_middle_of_a_model_load(world):
    clock, wl, directory, tracker = world
    directory.list = [loading := pod(scheduled=T0 - 60, running=T0 - 50)]
    wl.scrape(loading, clock.mono(), up=False)
    s = only(tick(tracker, clock, T0 + 0.5, memory(loading))[0])
    assert s.starting is True and s.current == "server_answering"
    wl.scrape(loading, T0 + 30 - T0 + 100, up=True)
    states, hist = tick(tracker, clock, T0 + 30.5, memory(loading))
    s = only(states)
    # GPU memory was held before the agent looked: that phase and the next are unknown.
    assert s.phases == (("containers_started", 10.0), ("model_ready", 0.0)) and s.starting is False
    (h,) = hist
    assert h.total == 90.0 and h.counts[-1] == 1  # scheduled (API) -> ready (seen)


def test_a_server_without_gpu_memory_skips_that_phase(world):
    clock, wl, directory, tracker = world
    directory.list = [pod()]
    tick(tracker, clock, T0 + 1)
    directory.list = [p := pod(running=T0 + 3)]
    tick(tracker, clock, T0 + 3.5, memory(p, False))
    wl.scrape(p, T0 + 9 - T0 + 100, up=True)
    s = only(tick(tracker, clock, T0 + 9.5, memory(p, False))[0])
    assert s.phases == (("containers_started", 3.0), ("server_answering", 6.0), ("model_ready", 0.0))


def test_a_server_that_answers_before_its_model_is_loaded(world):
    """Triton in explicit model-control mode, or a Dynamo frontend: the metrics endpoint
    answers first, the model's series come later."""
    clock, wl, directory, tracker = world
    directory.list = [pod()]
    tick(tracker, clock, T0 + 1)
    directory.list = [p := pod(running=T0 + 3)]
    tick(tracker, clock, T0 + 3.5, memory(p, False))
    tick(tracker, clock, T0 + 5, memory(p))
    wl.scrape(p, T0 + 6 - T0 + 100, up=True, ready=False)
    s = only(tick(tracker, clock, T0 + 6.5, memory(p))[0])
    assert s.current == "model_ready" and s.phases[-1] == ("model_ready", 0.5)
    wl.scrape(p, T0 + 26 - T0 + 100, up=True, ready=True)
    s = only(tick(tracker, clock, T0 + 26.5, memory(p))[0])
    assert s.phases == (("containers_started", 3.0), ("gpu_memory_allocated", 2.0), ("server_answering", 1.0),
                        ("model_ready", 20.0))


def test_a_ready_endpoint_decides_model_ready():
    clock, wl = Clock(), Workloads()

    class Prober:
        targets, answers = {}, {}

        def set_targets(self, targets):
            Prober.targets = dict(targets)

        def results(self):
            return Prober.answers

    ann = {"gpulse.dev/scrape": "true", "gpulse.dev/port": "8002", "gpulse.dev/ready-path": "/v2/health/ready",
           "gpulse.dev/ready-port": "8000"}
    directory = Directory(pod(annotations=ann))
    tracker = StartupTracker(directory, wl, Prober(), wallclock=clock.wall, monoclock=clock.mono)
    tick(tracker, clock, T0 + 1)
    directory.list = [p := pod(running=T0 + 3, annotations=ann)]
    tick(tracker, clock, T0 + 3.5, memory(p, False))
    assert {uid: (e.port, e.path) for uid, e in Prober.targets.items()} == {p.uid: (8000, "/v2/health/ready")}
    tick(tracker, clock, T0 + 4, memory(p))
    wl.scrape(p, T0 + 5 - T0 + 100, up=True, ready=True)  # the metrics say ready; the probe does not yet
    Prober.answers = {p.uid: (False, T0 + 5 - T0 + 100)}
    assert only(tick(tracker, clock, T0 + 5.5, memory(p))[0]).current == "model_ready"
    Prober.answers = {p.uid: (True, T0 + 15 - T0 + 100)}
    s = only(tick(tracker, clock, T0 + 15.5, memory(p))[0])
    assert s.phases[-1] == ("model_ready", 10.0) and s.starting is False
    assert Prober.targets == {}  # started: no more probes


def test_a_broken_ready_annotation_is_named_once_and_the_metrics_decide(world, caplog):
    clock, wl, directory, tracker = world
    ann = {"gpulse.dev/scrape": "true", "gpulse.dev/port": "8000", "gpulse.dev/ready-path": "health"}
    directory.list = [p := pod(running=T0 + 3, annotations=ann)]
    tick(tracker, clock, T0 + 4)
    tick(tracker, clock, T0 + 5)
    warnings = [r.getMessage() for r in caplog.records if "ready-path" in r.getMessage()]
    assert len(warnings) == 1 and "llm/vllm-6d5c7b9f48-abcde" in warnings[0]
    wl.scrape(p, T0 + 6 - T0 + 100, up=True)
    assert only(tick(tracker, clock, T0 + 6.5)[0]).starting is False


def test_a_pushing_workload_is_ready_when_it_first_reports(world):
    clock, wl, directory, tracker = world
    directory.list = [pod("embedder-0", annotations={}, owner=("StatefulSet", "embedder"))]
    assert tick(tracker, clock, T0 + 1) == ((), ())  # not known as an inference pod yet
    directory.list = [p := pod("embedder-0", running=T0 + 2, annotations={}, owner=("StatefulSet", "embedder"))]
    tick(tracker, clock, T0 + 2.5, memory(p, False))
    tick(tracker, clock, T0 + 4, memory(p))
    wl.pushes[("llm", "embedder-0")] = WorkloadState("llm", "embedder-0", "push", queue_depth=3.0, running_requests=0.0)
    s = only(tick(tracker, clock, T0 + 9, memory(p))[0])
    assert (s.workload, s.workload_type) == ("embedder", "statefulset")
    assert s.phases == (("containers_started", 2.0), ("gpu_memory_allocated", 2.0), ("server_answering", 5.0),
                        ("model_ready", 0.0))
    wl.pushes[("llm", "embedder-0")] = WorkloadState("llm", "embedder-0", "push", queue_depth=3.0, running_requests=2.0)
    assert only(tick(tracker, clock, T0 + 12, memory(p))[0]).phases[-1] == ("first_request_served", 3.0)


def test_pods_that_serve_nothing_are_not_reported_and_gone_pods_are_forgotten(world):
    clock, wl, directory, tracker = world
    trainer = pod("trainer-0", running=T0 + 1, annotations={}, owner=("StatefulSet", "trainer"))
    directory.list = [trainer, served := pod(running=T0 + 1)]
    states, _ = tick(tracker, clock, T0 + 2, memory(trainer) + memory(served))
    assert [s.pod for s in states] == [served.name]
    directory.list = [trainer]
    assert tick(tracker, clock, T0 + 3)[0] == ()
    assert set(tracker._pods) == {trainer.uid}
    directory.list = [pod(running=T0 + 1, phase="Succeeded")]
    assert tick(tracker, clock, T0 + 4)[0] == ()


def test_a_counter_reset_without_a_failed_scrape_is_a_new_server_process(world):
    """A server that was up before the agent looked counts requests from its first count on;
    a count that drops means a new process, which starts from 0."""
    clock, wl, directory, tracker = world
    directory.list = [p := pod(scheduled=T0 - 600, running=T0 - 590)]
    wl.scrape(p, T0 + 1 - T0 + 100, up=True, requests=40.0)
    tick(tracker, clock, T0 + 1.5, memory(p))
    assert tracker._pods[p.uid].requests_base == 40.0 and tracker._pods[p.uid].served_at is None
    wl.scrape(p, T0 + 2 - T0 + 100, up=True, requests=2.0)  # restarted between two scrapes
    tick(tracker, clock, T0 + 2.5, memory(p))
    assert tracker._pods[p.uid].served_at == T0 + 2 and tracker._pods[p.uid].requests_base == 0.0


def test_a_settled_start_is_reused_until_its_pod_changes(world):
    clock, wl, directory, tracker = world
    directory.list = [p := pod(scheduled=T0 - 600, running=T0 - 590)]
    wl.scrape(p, T0 + 1 - T0 + 100, up=True, requests=40.0)
    first = only(tick(tracker, clock, T0 + 1.5, memory(p))[0])
    wl.scrape(p, T0 + 2 - T0 + 100, up=True, requests=41.0)
    assert only(tick(tracker, clock, T0 + 2.5, memory(p))[0]) is not first  # still waiting for a first request
    settled = only(tick(tracker, clock, T0 + 3.5, memory(p))[0])
    wl.scrape(p, T0 + 4 - T0 + 100, up=True, requests=50.0)
    assert only(tick(tracker, clock, T0 + 4.5, memory(p, False))[0]) is settled
    directory.list = [pod(scheduled=T0 - 600, running=T0 - 590, crashed=T0 + 5, restarts=1)]
    assert only(tick(tracker, clock, T0 + 5.5, memory(p, False))[0]).start == "restart"


def test_without_an_nvml_reading_memory_is_not_observed(world):
    clock, wl, directory, tracker = world
    directory.list = [p := pod(running=T0 + 1)]
    tick(tracker, clock, T0 + 1.5, memory(p, False))
    clock.t = T0 + 3
    tracker.update(None, T0 + 3)  # NVML down this tick: no observation, not "no memory"
    s = only(tick(tracker, clock, T0 + 4, memory(p))[0])
    assert ("gpu_memory_allocated", 3.0) in s.phases  # onset at T0+4, not at the unread tick


def test_the_histogram_series_are_bounded(world, monkeypatch):
    clock, wl, directory, tracker = world
    monkeypatch.setattr(startup, "MAX_HISTOGRAMS", 3)
    for i in range(5):
        directory.list = [pod(f"p{i}", owner=("StatefulSet", f"s{i}"))]
        tick(tracker, clock, T0 + 1 + i)
    assert [h.workload for h in tick(tracker, clock, T0 + 10)[1]] == ["s2", "s3", "s4"]



def test_the_pods_followed_are_bounded_and_the_rest_named_once(world, monkeypatch, caplog):
    clock, wl, directory, tracker = world
    monkeypatch.setattr(startup, "MAX_PODS", 2)
    directory.list = [pod(f"p{i}", running=T0 + 1) for i in range(3)]
    assert len(tick(tracker, clock, T0 + 2)[0]) == 2
    assert len(tick(tracker, clock, T0 + 3)[0]) == 2
    assert [r.getMessage() for r in caplog.records if "MAX_PODS" in r.getMessage()] == \
        ["startup: following 2 pods (MAX_PODS), 1 more on this node get no startup series"]
    directory.list = directory.list[1:]
    tick(tracker, clock, T0 + 4)
    assert len(tick(tracker, clock, T0 + 5)[0]) == 2, "a pod that went frees its place (from the next tick)"


@pytest.mark.parametrize("seconds, first_bucket", [(5.0, 5.0), (5.5, 10.0), (3600.0, 3600.0), (4000.0, None)])
def test_observations_fall_in_the_buckets_that_hold_them(world, seconds, first_bucket):
    clock, wl, directory, tracker = world
    directory.list = [p := pod(running=T0 + 1)]
    assert tracker._histograms() == ()
    tracker._observe(p, "initial", seconds, T0)
    (h,) = tracker._histograms()
    assert tracker._histograms() is tracker._histograms(), "built once until one changes"
    counts = dict(zip([*startup.BUCKETS, float("inf")], h.counts, strict=True))
    first = next((b for b, c in counts.items() if c), None)
    assert first == (first_bucket if first_bucket is not None else float("inf"))
    assert all(c == 1 for b, c in counts.items() if b >= first) and h.total == seconds
    tracker._observe(p, "initial", seconds, T0)
    assert tracker._histograms()[0].total == 2 * seconds, "an observation shows at once"
