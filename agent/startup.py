"""The cold-start timeline of inference pods: what a scale-up really waits for.

For each inference pod on the node (one that opts in to scraping with gpulse.dev/scrape,
or that pushes), the latest start is followed through its milestones:

  scheduled             PodScheduled=True (restart: the previous container's finishedAt)
  containers_started    every regular container running (API startedAt): image pull,
                        init containers, sandbox, or the CrashLoopBackOff delay
  gpu_memory_allocated  the first tick the pod's processes hold GPU memory (attribution)
  server_answering      the first successful scrape of its metrics endpoint, or first push
  model_ready           the server's own signal (gpulse.workloads.signals), or its ready
                        endpoint's first 200 (gpulse.workloads.readyprobe); a push
                        workload is ready when it first reports
  first_request_served  the first increase of its request counter (push: the first report
                        with running requests)

Each phase is named after the milestone that ends it and lasts from the previous milestone
seen. Milestones are taken in order: a later one implies the server-side ones before it
(a served request means the model was ready and the server answered), while GPU memory
first seen only after the server answered is skipped (no series; the next phase counts
from the last milestone seen). A milestone is timed only where the agent saw the state
before it: a pod that already held GPU memory, or already answered, when the agent first
looked has no value for that phase (agent restarts do not invent starts). API times have
whole seconds; a small clock difference between the API server and the node (SKEW) is
tolerated, and phases are never negative.

A container exit (finishedAt newer than the start) begins a new start, start="restart":
each turn of a crash loop is a start of its own, and its first phase holds the back-off.
A start completes at model_ready: it is observed once in the workload's histogram (its
series exist, at zero, from the first start of that kind the agent follows, so the first
completion shows as an increase) and `starting` turns 0. The workload is the pod's
controller (gpulse.kube.lifecycle.workload_of).

Bounds: MAX_PODS followed pods (past it, one warning names how many are not), MAX_HISTOGRAMS
histogram series (the least recently updated go first). The tracker runs on the tick thread;
the inputs it reads (pod index, scrape results, push store, probe results) are published by
their own threads.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

from .catalog import BY_NAME
from .kube.lifecycle import workload_of
from .snapshot import PodShare, PodStartup, StartupHistogram, WorkloadState
from .workloads.discovery import SCRAPE
from .workloads.readyprobe import InvalidReadyEndpoint, ReadyEndpoint, endpoint_for

if TYPE_CHECKING:
    from .kube.apiserver import PodInfo
    from .workloads.scrape import EndpointResult

log = logging.getLogger(__name__)

MILESTONES = ("scheduled", "containers_started", "gpu_memory_allocated", "server_answering", "model_ready",
              "first_request_served")
PHASES = MILESTONES[1:]
READY = "model_ready"
INITIAL, RESTART = "initial", "restart"
BUCKETS: tuple[float, ...] = BY_NAME["gpulse_workload_startup_seconds"].buckets
SKEW = 2.0  # seconds between the API server's clock (and its whole seconds) and the node's
MAX_PODS = 1024
MAX_HISTOGRAMS = 512
_IMPLIED = {"server_answering", "model_ready"}  # reached when a later milestone is
_TERMINAL = ("Succeeded", "Failed")


class Workloads(Protocol):
    """What the tracker reads of gpulse.workloads.source.WorkloadSource."""
    def endpoint_results(self) -> tuple[EndpointResult, ...]: ...

    def pushed(self) -> tuple[WorkloadState, ...]: ...


class PodDirectory(Protocol):
    def pods(self) -> tuple[PodInfo, ...]: ...


class Prober(Protocol):
    def set_targets(self, targets: Mapping[str, ReadyEndpoint]) -> None: ...

    def results(self) -> Mapping[str, tuple[bool, float]]: ...


@dataclass
class _Stretch:
    """A signal's current on-stretch: on since `since` (None: off); `seen` when the agent
    saw it off before this stretch began, so `since` is a real onset."""
    since: Optional[float] = None
    seen: bool = False
    off_seen: bool = False

    def observe(self, on: bool, at: float) -> None:
        if on:
            if self.since is None:
                self.since, self.seen = at, self.off_seen
        else:
            self.since, self.off_seen = None, True


@dataclass
class _Start:
    kind: str
    begin: float  # wall time: scheduled, or the end of the previous run
    times: dict[str, Optional[float]] = field(default_factory=dict)  # reached milestone -> time (None: untimed)
    skipped: set[str] = field(default_factory=set)
    counted: bool = False  # observed in the histogram (or known to have completed before we looked)

    def pending(self) -> Optional[str]:
        return next((m for m in PHASES if m not in self.times and m not in self.skipped), None)

    @property
    def complete(self) -> bool:
        return READY in self.times


@dataclass
class _Pod:
    uid: str
    first_seen: float
    start: Optional[_Start] = None
    memory: _Stretch = field(default_factory=_Stretch)
    answer: _Stretch = field(default_factory=_Stretch)
    ready: _Stretch = field(default_factory=_Stretch)
    served_at: Optional[float] = None  # first request seen in the current answer stretch
    requests_base: Optional[float] = None  # the request count this server process started from
    requests_last: Optional[float] = None
    last_result: float = -1.0  # monotonic time of the last scrape result read
    last_probe: float = -1.0
    heard: bool = False  # a scrape, push or probe result has been read for this pod
    pushes: bool = False
    inference: bool = False
    info: Optional[PodInfo] = None  # the pod object last followed (held: identity is the check)
    fingerprint: object = None  # the other inputs of the last tick that was followed
    cached: Optional[PodStartup] = None  # the state of a completed start, while its inputs stay
    settled: bool = False  # every milestone of the cached start reached or skipped


@dataclass
class _Histogram:
    counts: list[int]
    total: float = 0.0
    touched: float = 0.0


class StartupTracker:
    def __init__(self, pods: PodDirectory, workloads: Optional[Workloads] = None, prober: Optional[Prober] = None,
                 *, wallclock: Callable[[], float] = time.time, monoclock: Callable[[], float] = time.monotonic):
        self.directory = pods
        self.workloads = workloads
        self.prober = prober
        self.wallclock = wallclock
        self.monoclock = monoclock
        self.started_at: Optional[float] = None
        self._pods: dict[str, _Pod] = {}
        self._hist: dict[tuple[str, str, str, str], _Histogram] = {}
        self._hist_out: Optional[tuple[StartupHistogram, ...]] = None  # _histograms() until one changes
        self._warned: dict[str, str] = {}  # pod uid -> the broken ready annotation warned about
        self._full = False  # pods went unfollowed last tick (warned once per such stretch)

    # --- one tick -------------------------------------------------------------------------
    def update(self, shares: Optional[Iterable[PodShare]], now: Optional[float] = None
               ) -> tuple[tuple[PodStartup, ...], tuple[StartupHistogram, ...]]:
        """One tick: `shares` are this tick's pod attributions (None when NVML was not
        read: memory is then not observed), `now` the tick's wall time."""
        now = self.wallclock() if now is None else now
        mono = self.monoclock()
        if self.started_at is None:
            self.started_at = now
        holding = None if shares is None else {(s.namespace, s.pod) for s in shares if s.memory_used_bytes}
        results: dict[str, EndpointResult] = {}
        pushed: dict[tuple[str, str], WorkloadState] = {}
        if self.workloads is not None:
            results = {r.target.uid: r for r in self.workloads.endpoint_results()}
            pushed = {(w.namespace, w.pod): w for w in self.workloads.pushed()}
        probes = self.prober.results() if self.prober is not None else {}
        out: list[PodStartup] = []
        probe_targets: dict[str, ReadyEndpoint] = {}
        seen: set[str] = set()
        skipped = 0  # pods not followed: MAX_PODS are
        for info in self.directory.pods():
            if info.phase in _TERMINAL or not info.uid:
                continue
            key = (info.namespace, info.name)
            pod = self._pods.get(info.uid)
            if pod is None:
                if len(self._pods) >= MAX_PODS:
                    skipped += 1
                    continue
                # Every pod is followed from when it is first seen (a pod that will push is
                # known only at its first report); only inference pods are reported.
                pod = self._pods[info.uid] = _Pod(info.uid, now)
            seen.add(info.uid)
            result, push, probe = results.get(info.uid), pushed.get(key), probes.get(info.uid)
            holds = None if holding is None else key in holding
            # A completed start changes only when its pod object does (a restart shows there
            # first) or, until its first request, when a new scrape or push comes: most ticks
            # of a serving node reuse what the last one found.
            fingerprint = (result.finished_at if result is not None else None,
                           None if push is None else (push.running_requests or 0) > 0, probe, holds)
            if pod.cached is not None and info is pod.info and (pod.settled or fingerprint == pod.fingerprint):
                out.append(pod.cached)
                continue
            pod.info, pod.fingerprint, pod.cached = info, fingerprint, None
            pod.pushes = pod.pushes or push is not None
            pod.inference = pod.pushes or info.annotations.get(SCRAPE, "").strip().lower() == "true"
            endpoint = self._endpoint(info)
            self._follow(pod, info, now, mono, holds, result, push, endpoint is not None, probe)
            start = pod.start
            if start is None or not pod.inference:
                continue
            if endpoint is not None and not start.complete:
                probe_targets[info.uid] = endpoint
            state = self._state(pod, info, now)
            if start.complete and state.starting is not None:
                pod.cached = state  # nothing in it counts up any more
                pod.settled = start.pending() is None
            out.append(state)
        for uid in [u for u in self._pods if u not in seen]:
            del self._pods[uid]
            self._warned.pop(uid, None)
        if skipped and not self._full:
            log.warning("startup: following %d pods (MAX_PODS), %d more on this node get no startup series",
                        MAX_PODS, skipped)
        self._full = bool(skipped)
        if self.prober is not None:
            self.prober.set_targets(probe_targets)
        return tuple(out), self._histograms()

    def _endpoint(self, info: PodInfo) -> Optional[ReadyEndpoint]:
        try:
            return endpoint_for(info)
        except InvalidReadyEndpoint as exc:
            if self._warned.get(info.uid) != str(exc):
                self._warned[info.uid] = str(exc)
                log.warning("startup: pod %s/%s: %s; model ready comes from its metrics instead",
                            info.namespace, info.name, exc)
            return None

    # --- following one pod --------------------------------------------------------------
    def _follow(self, pod: _Pod, info: PodInfo, now: float, mono: float, holds_memory: Optional[bool],
                result: Optional[EndpointResult], pushed: Optional[WorkloadState], probed: bool,
                probe: Optional[tuple[bool, float]]) -> None:
        life = info.lifecycle
        # A new start: the first one we see, or a container that exited after the current began.
        ends = [t for c in life.containers for t in (c.finished_at, c.last_finished_at) if t is not None]
        last_end = max(ends) if ends else None
        start = pod.start
        if start is None or (last_end is not None and last_end > start.begin + 0.5):
            if last_end is not None:
                start = _Start(RESTART, last_end)
            else:
                start = _Start(INITIAL, life.scheduled_at or life.started_at or life.created_at or now)
            start.times["scheduled"] = start.begin
            fresh = pod.start is not None or start.begin >= (self.started_at or now) - SKEW
            pod.start = start
            # What the pod's signals did before this start is not this start's. One that began
            # while the agent was running could not hold memory or answer before it began: its
            # signals count as seen off. One already under way when the agent began is timed
            # only from what the agent sees from now on.
            for sig in (pod.memory, pod.answer, pod.ready):
                sig.since, sig.seen, sig.off_seen = None, False, fresh
            pod.served_at = pod.requests_base = pod.requests_last = None
        # Signals. Before the containers run, nothing can hold memory or answer: that is an
        # observation of the off state, which makes the next onset a timed one.
        running = self._containers_started(info, start)
        if running is None:
            for s in (pod.memory, pod.answer, pod.ready):
                s.observe(False, now)
            pod.served_at = pod.requests_base = pod.requests_last = None
        else:
            if holds_memory is not None:
                pod.memory.observe(holds_memory, now)
            self._read_answer(pod, now, mono, result, pushed, probed, probe)
        if not pod.inference:
            return  # its signals are kept; its milestones are worked out once it reports (a push)
        self._advance(pod, start, running, now)
        if start.complete and not start.counted:
            start.counted = True
            t0, t1 = start.times.get("scheduled"), start.times.get(READY)
            if t0 is not None and t1 is not None:
                self._observe(info, start.kind, max(0.0, t1 - t0), now)
        elif not start.complete and (pod.heard or start.begin >= (self.started_at or now) - SKEW):
            # A start known to be under way: its workload's series exists (at zero) before
            # the first completion, so Prometheus sees that completion as an increase.
            self._histogram(info, start.kind, now)

    @staticmethod
    def _containers_started(info: PodInfo, start: _Start) -> Optional[float]:
        """When every regular container of this start runs (API time), else None."""
        cs = info.lifecycle.containers
        if not cs or any(c.state != "running" or c.started_at is None for c in cs):
            return None
        latest = max(c.started_at for c in cs if c.started_at is not None)
        if latest < start.begin - SKEW:
            return None  # still the previous run's containers
        return max(latest, start.begin)

    def _read_answer(self, pod: _Pod, now: float, mono: float, result: Optional[EndpointResult],
                     pushed: Optional[WorkloadState], probed: bool, probe: Optional[tuple[bool, float]]) -> None:
        """Scrape results (each read once), pushes and ready probes -> the answer, ready and
        served signals. With a ready endpoint, only the probe says ready."""
        if result is not None and result.finished_at != pod.last_result:
            pod.last_result, pod.heard = result.finished_at, True
            at = now - max(0.0, mono - result.finished_at)  # when the scrape finished, wall time
            signals = result.signals if result.up else None
            pod.answer.observe(result.up, at)
            if not probed:
                pod.ready.observe(bool(signals and signals.ready), at)
            self._count_requests(pod, result.up, signals.requests if signals else None, at)
        elif pushed is not None:
            pod.heard = True
            pod.answer.observe(True, now)
            if not probed:
                pod.ready.observe(True, now)
            if pod.served_at is None and (pushed.running_requests or 0) > 0:
                pod.served_at = now
        elif pod.pushes and result is None:
            pod.answer.observe(False, now)  # its reports expired
            if not probed:
                pod.ready.observe(False, now)
            pod.served_at = None
        if probe is not None and probe[1] != pod.last_probe:
            pod.last_probe, pod.heard = probe[1], True
            pod.ready.observe(probe[0], now - max(0.0, mono - probe[1]))

    @staticmethod
    def _count_requests(pod: _Pod, up: bool, requests: Optional[float], at: float) -> None:
        """served_at: the first scrape whose request counter is above where this server
        process started. A process seen to come up starts at 0 (a counter is born with its
        process, so a first count above 0 means requests were served by then); one that
        was already up when the agent looked starts at its first count."""
        if not up:
            pod.served_at = pod.requests_base = pod.requests_last = None
            return
        if requests is None:
            return
        if pod.requests_base is None:
            fresh = pod.answer.since == at and pod.answer.seen
            pod.requests_base = 0.0 if fresh else requests
        elif pod.requests_last is not None and requests < pod.requests_last:
            pod.requests_base, pod.served_at = 0.0, None  # the counter reset: a process we did not see go down
        pod.requests_last = requests
        if pod.served_at is None and requests > pod.requests_base:
            pod.served_at = at

    def _signal(self, pod: _Pod, milestone: str, after: Optional[float]) -> Optional[tuple[float, bool]]:
        """(time, timed) when the signal of `milestone` is on; `after` is the last known
        milestone time: an onset before it is not this start's."""
        if milestone == "gpu_memory_allocated":
            since, seen = pod.memory.since, pod.memory.seen
        elif milestone == "server_answering":
            since, seen = pod.answer.since, pod.answer.seen
        elif milestone == READY:
            since, seen = pod.ready.since, pod.ready.seen
        else:
            since, seen = pod.served_at, pod.answer.seen
        if since is None:
            return None
        if after is not None and since < after - SKEW:
            return max(since, after), False  # on since before this start: when it began here is unknown
        return (since if after is None else max(since, after)), seen

    def _advance(self, pod: _Pod, start: _Start, running: Optional[float], now: float) -> None:
        if "containers_started" not in start.times:
            if running is None:
                return
            start.times["containers_started"] = running
        while True:
            milestone = start.pending()
            if milestone is None:
                return
            after = _last_time(start)
            hit = self._signal(pod, milestone, after)
            if hit is None:
                i = PHASES.index(milestone)
                later = next((h for h in (self._signal(pod, m, after) for m in PHASES[i + 1:]) if h), None)
                if later is None:
                    return  # waiting in this phase
                if milestone not in _IMPLIED:
                    start.skipped.add(milestone)
                    continue
                hit = later
            t, timed = hit
            start.times[milestone] = t if timed else None

    def _state(self, pod: _Pod, info: PodInfo, now: float) -> PodStartup:
        start = pod.start
        assert start is not None
        life = info.lifecycle
        workload, kind = workload_of(life.owner_kind, life.owner_name, info.labels, info.name)
        phases: list[tuple[str, float]] = []
        prev: Optional[float] = start.times.get("scheduled")
        prev_known = "scheduled" in start.times and prev is not None
        current = ""
        for m in PHASES:
            if m in start.skipped:
                continue
            if m not in start.times:
                if not start.complete:
                    current = m
                    if prev_known and prev is not None:
                        phases.append((m, max(0.0, now - prev)))
                break
            t = start.times[m]
            if t is not None and prev_known and prev is not None:
                phases.append((m, max(0.0, t - prev)))
            prev, prev_known = t, t is not None
        starting: Optional[bool] = not start.complete
        if starting and not pod.heard and start.begin < (self.started_at or now) - SKEW and current not in (
                "containers_started", "gpu_memory_allocated"):
            starting = None  # under way before the agent began, and no answer read yet: unknown
            current = ""
            phases = [p for p in phases if p[0] in start.times]
        return PodStartup(info.namespace, info.name, workload, kind, start.kind, tuple(phases), current, starting)

    # --- histograms ---------------------------------------------------------------------
    def _histogram(self, info: PodInfo, kind: str, now: float) -> _Histogram:
        life = info.lifecycle
        workload, wtype = workload_of(life.owner_kind, life.owner_name, info.labels, info.name)
        key = (info.namespace, workload, wtype, kind)
        h = self._hist.get(key)
        if h is None:
            if len(self._hist) >= MAX_HISTOGRAMS:
                del self._hist[min(self._hist, key=lambda k: self._hist[k].touched)]
            h = self._hist[key] = _Histogram([0] * (len(BUCKETS) + 1))
            self._hist_out = None
        h.touched = now
        return h

    def _observe(self, info: PodInfo, kind: str, seconds: float, now: float) -> None:
        h = self._histogram(info, kind, now)
        for i in range(bisect.bisect_left(BUCKETS, seconds), len(BUCKETS) + 1):
            h.counts[i] += 1
        h.total += seconds
        self._hist_out = None

    def _histograms(self) -> tuple[StartupHistogram, ...]:
        """Built again only when a series is added, dropped or observed (at the 512-series
        bound building them costs 0.9 ms: most ticks change none)."""
        if self._hist_out is None:
            self._hist_out = tuple(StartupHistogram(ns, wl, wt, kind, tuple(float(c) for c in h.counts), h.total)
                                   for (ns, wl, wt, kind), h in sorted(self._hist.items()))
        return self._hist_out


def _last_time(start: _Start) -> Optional[float]:
    """The latest known time among the milestones reached."""
    known = [t for t in start.times.values() if t is not None]
    return max(known) if known else None
