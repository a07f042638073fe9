"""What a Pod object says about its latest start: conditions, container states, owner.

Read from the API server's JSON as it comes (fields may be missing; nothing here raises):

  PodScheduled condition (True)  lastTransitionTime: when the pod was bound to the node
  Ready condition (True)         lastTransitionTime: when the readiness probes passed
  status.containerStatuses[]     state.waiting{reason} | state.running{startedAt} |
                                 state.terminated{startedAt, finishedAt, exitCode, reason},
                                 lastState.terminated{finishedAt}, restartCount, ready
  metadata.ownerReferences       the controller (controller: true), else the first owner

API times are RFC 3339 with whole seconds (metav1.Time); MicroTime fractions and offsets
are read too. Init containers are left out: a start ends when the regular containers run.

The workload a pod belongs to (`workload_of`) comes from its controller and labels: a
ReplicaSet named `<deployment>-<pod-template-hash>` whose pods carry that hash label is
the Deployment (Argo Rollouts: `rollouts-pod-template-hash`, the Rollout); StatefulSet,
DaemonSet, Job and any other controller (LeaderWorkerSet, RayCluster...) are themselves;
a pod without an owner is its own workload (type "pod").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional


@dataclass(frozen=True, slots=True)
class ContainerState:
    name: str
    state: str = ""  # "waiting" | "running" | "terminated" | "" (not reported yet)
    reason: str = ""  # waiting or terminated reason: ContainerCreating, CrashLoopBackOff, Error...
    started_at: Optional[float] = None  # running.startedAt, or terminated.startedAt
    finished_at: Optional[float] = None  # terminated.finishedAt of the current state
    last_finished_at: Optional[float] = None  # lastState.terminated.finishedAt: the previous run's end
    restart_count: int = 0
    ready: bool = False


@dataclass(frozen=True, slots=True)
class PodLifecycle:
    created_at: Optional[float] = None  # metadata.creationTimestamp
    scheduled_at: Optional[float] = None  # PodScheduled=True lastTransitionTime
    started_at: Optional[float] = None  # status.startTime: the kubelet took the pod
    ready_at: Optional[float] = None  # Ready=True lastTransitionTime; None while not ready
    containers: tuple[ContainerState, ...] = ()
    owner_kind: str = ""
    owner_name: str = ""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodLifecycle:
        meta = _mapping(obj.get("metadata"))
        status = _mapping(obj.get("status"))
        scheduled = ready = None
        for cond in _list(status.get("conditions")):
            cond = _mapping(cond)
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "PodScheduled":
                scheduled = parse_time(cond.get("lastTransitionTime"))
            elif cond.get("type") == "Ready":
                ready = parse_time(cond.get("lastTransitionTime"))
        owner_kind, owner_name = _owner(_list(meta.get("ownerReferences")))
        return cls(created_at=parse_time(meta.get("creationTimestamp")), scheduled_at=scheduled,
                   started_at=parse_time(status.get("startTime")), ready_at=ready,
                   containers=tuple(_container(_mapping(c)) for c in _list(status.get("containerStatuses"))),
                   owner_kind=owner_kind, owner_name=owner_name)


EMPTY = PodLifecycle()


def parse_time(text: object) -> Optional[float]:
    """RFC 3339 (`2024-05-01T12:00:00Z`, fractions and offsets allowed) -> Unix seconds; None
    for anything else, a time without its offset included."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    # No offset is not RFC 3339: the node's local zone would be a guess (hours off), not the API's.
    return when.timestamp() if when.tzinfo is not None else None


def workload_of(kind: str, name: str, labels: Mapping[str, str], pod: str) -> tuple[str, str]:
    """(workload name, workload type) of a pod from its controller and labels."""
    if not kind or not name:
        return pod, "pod"
    if kind == "ReplicaSet":
        for label, owner in (("pod-template-hash", "deployment"), ("rollouts-pod-template-hash", "rollout")):
            suffix = labels.get(label, "")
            if suffix and name.endswith("-" + suffix) and len(name) > len(suffix) + 1:
                return name[:-len(suffix) - 1], owner
        return name, "replicaset"
    return name, kind.lower()


def _container(c: Mapping[str, Any]) -> ContainerState:
    state = _mapping(c.get("state"))
    last = _mapping(_mapping(c.get("lastState")).get("terminated"))
    kind, detail = "", _mapping(None)
    for k in ("running", "terminated", "waiting"):
        if k in state:
            kind, detail = k, _mapping(state.get(k))
            break
    restarts = c.get("restartCount")
    return ContainerState(
        name=str(c.get("name", "")), state=kind, reason=str(detail.get("reason", "") or ""),
        started_at=parse_time(detail.get("startedAt")),
        finished_at=parse_time(detail.get("finishedAt")) if kind == "terminated" else None,
        last_finished_at=parse_time(last.get("finishedAt")),
        restart_count=restarts if isinstance(restarts, int) and not isinstance(restarts, bool) else 0,
        ready=c.get("ready") is True)


def _owner(refs: list[Any]) -> tuple[str, str]:
    owners = [_mapping(r) for r in refs]
    chosen = next((r for r in owners if r.get("controller") is True), owners[0] if owners else None)
    if chosen is None:
        return "", ""
    return str(chosen.get("kind", "") or ""), str(chosen.get("name", "") or "")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
