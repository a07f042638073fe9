"""Pods that start while the scenario runs: their runs, and the Pod object at any time.

A scenario pod with `startup:` does not exist before `scheduled`; then it goes the way a
GPU inference pod goes on a real node:

  scheduled -> image_pull -> containers running -> cuda_init -> first GPU memory ->
  model_load -> model ready (the server answers /metrics from here; with
  answers_before_load from its first GPU memory, the model's series from here) ->
  first_request -> requests served

Each entry of `crashes` ends the run in progress (the first container exits with code 1):
its processes leave the GPU, its server stops answering, and the kubelet restarts the
container after its back-off (10 s, doubled per crash, capped at 300 s, reset once a run
lasted 10 minutes: kubelet's CrashLoopBackOff), without a new image pull. The next run
then loads the model again.

`pod_object(...)` is the Pod as the API server serves it at scenario time t: phase,
PodScheduled/Initialized/ContainersReady/Ready conditions (Ready follows the server's
readiness probe: true once the model is ready), containerStatuses with waiting
(ContainerCreating, CrashLoopBackOff) / running states, lastState.terminated of the
previous run and restartCount, ownerReferences. Times are RFC 3339 whole seconds
(metav1.Time), from `wall0` (the wall time of scenario time 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .scenario import PodSpec, StartupSpec

BACKOFF_CAP = 300.0  # kubelet's maximum CrashLoopBackOff delay
BACKOFF_RESET = 600.0  # a container that ran this long starts its back-off over
REQUEST_RATE = 3.0  # requests a simulated server serves per second once traffic arrives
# Pods without `startup:` have run since well before the scenario began.
LONG_AGO_SCHEDULED, LONG_AGO_STARTED, LONG_AGO_READY = -600.0, -580.0, -560.0
INF = math.inf


@dataclass(frozen=True)
class Run:
    """One run of a pod's containers, in scenario seconds."""
    index: int  # 0: the first run; n: after the n-th crash
    begin: float  # scheduled, or the crash that ended the previous run
    containers: float  # every container running
    memory: float  # the server's processes first hold GPU memory
    answering: float  # /metrics answers
    ready: float  # the model is loaded
    first_request: float  # the first request is served
    end: float = INF  # the crash that ends this run


def runs(spec: StartupSpec) -> tuple[Run, ...]:
    """The runs `spec` describes; ValueError when a crash falls where no container runs."""
    out: list[Run] = []
    begin, delay, doublings = spec.scheduled, spec.image_pull, 0
    crashes = list(spec.crashes)
    while True:
        containers = begin + delay
        memory = containers + spec.cuda_init
        ready = memory + spec.model_load
        answering = memory if spec.answers_before_load else ready
        end = crashes.pop(0) if crashes else INF
        if end <= containers:
            raise ValueError(f"crash at {end:g}s: the container only runs from {containers:g}s "
                             "(a crash is a running container exiting)")
        out.append(Run(len(out), begin, containers, memory, answering, ready, ready + spec.first_request, end))
        if end == INF:
            return tuple(out)
        if end - containers >= BACKOFF_RESET:
            doublings = 0
        delay = min(BACKOFF_CAP, spec.backoff * 2 ** doublings)
        doublings += 1
        begin = end


class Timeline:
    def __init__(self, spec: StartupSpec) -> None:
        self.spec = spec
        self.runs = runs(spec)

    def run_at(self, t: float) -> Optional[Run]:
        current = None
        for run in self.runs:
            if run.begin <= t:
                current = run
        return current

    def exists(self, t: float) -> bool:
        return t >= self.spec.scheduled

    def holds_memory(self, t: float) -> bool:
        run = self.run_at(t)
        return run is not None and run.memory <= t < run.end

    def answering(self, t: float) -> bool:
        run = self.run_at(t)
        return run is not None and run.answering <= t < run.end

    def ready(self, t: float) -> bool:
        run = self.run_at(t)
        return run is not None and run.ready <= t < run.end

    def requests(self, t: float) -> int:
        """Requests the current server process has served (its counter starts at 0)."""
        run = self.run_at(t)
        if run is None or not run.first_request <= t < run.end:
            return 0
        return 1 + int((t - run.first_request) * REQUEST_RATE)

    def changes(self) -> tuple[float, ...]:
        """Every scenario time at which the Pod object changes."""
        return tuple(sorted({x for r in self.runs for x in (r.begin, r.containers, r.ready, r.end) if x != INF}))


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(math.floor(wall), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool, since: float, wall0: float) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                            "lastTransitionTime": rfc3339(wall0 + since)}
    if not ok and kind in ("Ready", "ContainersReady"):
        cond["reason"] = "ContainersNotReady"
    return cond


RUNTIME_PREFIX = {"containerd": "containerd://", "crio": "cri-o://", "docker": "docker://"}


def pod_status(pod: PodSpec, timeline: Optional[Timeline], t: float, wall0: float, ip: str,
               runtime: str = "containerd") -> dict[str, Any]:
    """The Pod's `status` at scenario time t (the pod exists: t >= scheduled)."""
    names = [c.name for c in pod.containers]
    if timeline is None:
        scheduled, started, ready_at = LONG_AGO_SCHEDULED, LONG_AGO_STARTED, LONG_AGO_READY
        run: Optional[Run] = Run(0, scheduled, started, started, ready_at, ready_at, ready_at)
    else:
        run = timeline.run_at(t)
        scheduled = timeline.spec.scheduled
    assert run is not None, "pod_status of a pod not scheduled yet"
    previous = timeline.runs[run.index - 1] if timeline is not None and run.index else None
    running = t >= run.containers
    ready = t >= run.ready
    statuses = []
    for i, name in enumerate(names):
        crashed = i == 0 and previous is not None  # the first container is the one that exits
        status: dict[str, Any] = {"name": name, "image": f"registry.example/{name}:sim", "imageID": "",
                                  "restartCount": run.index if i == 0 else 0, "ready": running and ready,
                                  "started": running,
                                  "containerID": RUNTIME_PREFIX.get(runtime, "") + pod.containers[i].container_id}
        if running:
            since = run.containers if i == 0 or previous is None else timeline_first_containers(timeline, run)
            status["state"] = {"running": {"startedAt": rfc3339(wall0 + since)}}
        elif crashed:
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                           f"back-off {run.containers - run.begin:g}s restarting failed "
                                           f"container={name} pod={pod.name}_{pod.namespace}({pod.uid})"}}
        elif previous is not None:  # a sidecar keeps running through the main container's back-off
            status["state"] = {"running": {"startedAt": rfc3339(wall0 + timeline_first_containers(timeline, run))}}
        else:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
            status.pop("containerID")
        if crashed and previous is not None:
            status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                  "startedAt": rfc3339(wall0 + previous.containers),
                                                  "finishedAt": rfc3339(wall0 + run.begin)}}
        else:
            status["lastState"] = {}
        statuses.append(status)
    serving = running and ready
    since_ready = run.ready if serving else (run.begin if previous is not None else scheduled)
    conditions = [
        _condition("PodReadyToStartContainers", True, scheduled, wall0),
        _condition("Initialized", True, scheduled, wall0),
        _condition("Ready", serving, since_ready, wall0),
        _condition("ContainersReady", serving, since_ready, wall0),
        _condition("PodScheduled", True, scheduled, wall0),
    ]
    return {"phase": "Running" if running or previous is not None else "Pending", "podIP": ip,
            "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1", "startTime": rfc3339(wall0 + scheduled),
            "qosClass": {"guaranteed": "Guaranteed", "burstable": "Burstable", "besteffort": "BestEffort"}[pod.qos],
            "conditions": conditions, "containerStatuses": statuses}


def timeline_first_containers(timeline: Optional[Timeline], run: Run) -> float:
    """When the containers that never crashed (all but the first) started: the first run's."""
    return timeline.runs[0].containers if timeline is not None else run.containers
