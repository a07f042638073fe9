"""Pod conditions, container states and owners as the API server's JSON gives them."""

from __future__ import annotations

import pytest
from gpulse.kube.apiserver import PodInfo
from gpulse.kube.lifecycle import PodLifecycle, parse_time, workload_of

# A vLLM pod of Deployment llm/vllm in CrashLoopBackOff after one restart, shaped as
# `kubectl get pod -o json` prints it (fields the agent does not read left out).
CRASHLOOP = {
    "metadata": {"name": "vllm-6d5c7b9f48-2xkqp", "namespace": "llm", "uid": "u1",
                 "creationTimestamp": "2026-03-01T10:00:00Z",
                 "labels": {"app": "vllm", "pod-template-hash": "6d5c7b9f48"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "vllm-6d5c7b9f48",
                                      "uid": "rs1", "controller": True, "blockOwnerDeletion": True}]},
    "spec": {"nodeName": "n1"},
    "status": {
        "phase": "Running", "startTime": "2026-03-01T10:00:01Z",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-03-01T10:00:03Z"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-03-01T10:00:01Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-03-01T10:09:00Z",
             "reason": "ContainersNotReady", "message": "containers with unready status: [vllm]"},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": "2026-03-01T10:09:00Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-03-01T10:00:00Z"},
        ],
        "containerStatuses": [{
            "name": "vllm", "ready": False, "restartCount": 1, "started": False,
            "image": "vllm/vllm-openai:v0.9.1", "imageID": "docker.io/vllm/vllm-openai@sha256:ab",
            "containerID": "containerd://c2",
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 10s restarting failed container=vllm pod=vllm-6d5c7b9f48-2xkqp"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-03-01T10:04:00Z",
                                         "finishedAt": "2026-03-01T10:09:00Z", "containerID": "containerd://c1"}},
        }],
    },
}


def test_a_crash_looping_pod():
    life = PodLifecycle.from_object(CRASHLOOP)
    assert life.scheduled_at == parse_time("2026-03-01T10:00:00Z") == 1772359200.0
    assert life.started_at == 1772359201.0 and life.created_at == 1772359200.0
    assert life.ready_at is None  # Ready is False
    (c,) = life.containers
    assert (c.name, c.state, c.reason, c.restart_count, c.ready) == ("vllm", "waiting", "CrashLoopBackOff", 1, False)
    assert c.started_at is None and c.last_finished_at == 1772359740.0
    assert (life.owner_kind, life.owner_name) == ("ReplicaSet", "vllm-6d5c7b9f48")


def test_podinfo_carries_the_lifecycle():
    pod = PodInfo.from_object(CRASHLOOP)
    assert pod.lifecycle.containers[0].reason == "CrashLoopBackOff"
    assert PodInfo("u", "ns", "p").lifecycle.containers == ()


def test_running_and_terminated_states():
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T10:05:07Z"}],
                      "containerStatuses": [
                          {"name": "a", "ready": True, "restartCount": 0,
                           "state": {"running": {"startedAt": "2026-03-01T10:04:00Z"}}},
                          {"name": "b", "restartCount": True,  # not an integer
                           "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                    "startedAt": "2026-03-01T10:04:00Z",
                                                    "finishedAt": "2026-03-01T10:04:30Z"}}}]}}
    life = PodLifecycle.from_object(obj)
    a, b = life.containers
    assert (a.state, a.started_at, a.ready, a.finished_at) == ("running", 1772359440.0, True, None)
    assert (b.state, b.reason, b.finished_at, b.restart_count) == ("terminated", "Completed", 1772359470.0, 0)
    assert life.ready_at == 1772359507.0 and life.scheduled_at is None


@pytest.mark.parametrize("obj", [{}, {"metadata": None, "status": None}, {"status": {"conditions": "x"}},
                                 {"status": {"conditions": [None, 3], "containerStatuses": [None, {"state": 7}]}},
                                 {"metadata": {"ownerReferences": [None]}}])
def test_malformed_objects_read_as_unknown(obj):
    life = PodLifecycle.from_object(obj)
    assert life.scheduled_at is None and life.owner_kind == ""


@pytest.mark.parametrize("text, value", [
    ("2026-03-01T10:00:00Z", 1772359200.0), ("2026-03-01T10:00:00.250000Z", 1772359200.25),
    ("2026-03-01T11:00:00+01:00", 1772359200.0), ("", None), ("yesterday", None), (None, None), (5, None),
    ("2026-03-01T10:00:00", None), ("2026-03-01", None)])
def test_parse_time(text, value):
    assert parse_time(text) == value


@pytest.mark.parametrize("kind, name, labels, workload", [
    ("ReplicaSet", "vllm-6d5c7b9f48", {"pod-template-hash": "6d5c7b9f48"}, ("vllm", "deployment")),
    ("ReplicaSet", "llama-70b-fp8-5f7d8c9b4", {"pod-template-hash": "5f7d8c9b4"}, ("llama-70b-fp8", "deployment")),
    ("ReplicaSet", "canary-7c9d", {"rollouts-pod-template-hash": "7c9d"}, ("canary", "rollout")),
    ("ReplicaSet", "standalone", {}, ("standalone", "replicaset")),
    ("ReplicaSet", "vllm-abc", {"pod-template-hash": "zzz"}, ("vllm-abc", "replicaset")),
    ("ReplicaSet", "-abc", {"pod-template-hash": "abc"}, ("-abc", "replicaset")),
    ("StatefulSet", "triton", {}, ("triton", "statefulset")),
    ("LeaderWorkerSet", "llama-405b", {}, ("llama-405b", "leaderworkerset")),
    ("", "", {}, ("the-pod", "pod")),
])
def test_workload_of(kind, name, labels, workload):
    assert workload_of(kind, name, labels, "the-pod") == workload


def test_the_controller_owner_wins():
    obj = {"metadata": {"ownerReferences": [{"kind": "ConfigMap", "name": "x"},
                                            {"kind": "StatefulSet", "name": "s", "controller": True}]}}
    life = PodLifecycle.from_object(obj)
    assert (life.owner_kind, life.owner_name) == ("StatefulSet", "s")
