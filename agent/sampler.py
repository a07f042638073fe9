"""The tick: read NVML once, window, attribute, assemble a Snapshot, collect, render, swap.

The sampler only ticks. NVML supervision (gpulse.nvml.supervisor), windows
(gpulse.windowing), attribution, identity publishing (gpulse.identity.publisher), the
collectors (gpulse.collectors.runner) and health (gpulse.health) are units of their own;
background inputs refresh on their own threads (gpulse.refresh) and are only read here.

A scrape only ever reads the `Rendered` bytes of the last tick (see gpulse.server), so any
number of scrapers cost the driver nothing. Ticks follow a drift-free cadence: tick n
starts at start + n*interval; a tick that overruns skips the missed slots and counts them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional, Protocol

from . import kernels
from .accounts import Accounts
from .attribution import Attributor
from .collectors.runner import CollectorRunner
from .health import Health
from .identity.publisher import IdentityPublisher
from .identity.resolver import IdentityView
from .kube.source import PodSource
from .nvml.supervisor import NvmlSupervisor
from .refresh import Source
from .refusals import Refusals
from .snapshot import (
    GpuAccount,
    GpuState,
    MigState,
    PodAccount,
    PodClaim,
    PodShare,
    PodStartup,
    Snapshot,
    StartupHistogram,
    TickStats,
    WorkloadState,
)
from .windowing import DeviceWindows, MigActivity, unit_utilization

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """One tick's exposition in both formats, plain and gzipped; immutable once published."""
    text: bytes
    text_gzip: bytes
    openmetrics: bytes
    openmetrics_gzip: bytes
    snapshot: Optional[Snapshot]


class Workloads(Protocol):
    def current(self) -> tuple[WorkloadState, ...]: ...


class MigActivitySource(Protocol):
    def current(self) -> MigActivity: ...


class Startups(Protocol):
    def update(self, shares: Optional[tuple[PodShare, ...]], now: Optional[float] = None
               ) -> tuple[tuple[PodStartup, ...], tuple[StartupHistogram, ...]]: ...


@dataclass
class Inputs:
    """What a tick reads. Only NVML is required; `sources` is everything reported under
    gpulse_source_up and gpulse_snapshot_age_seconds (NVML included)."""
    nvml: NvmlSupervisor
    windows: DeviceWindows
    pods: Optional[PodSource] = None
    attributor: Optional[Attributor] = None
    workloads: Optional[Workloads] = None
    identity: Optional[IdentityPublisher] = None
    mig_activity: Optional[MigActivitySource] = None
    sources: Mapping[str, Source] = field(default_factory=dict)
    accounts: Optional[Accounts] = None  # energy, idle time and cost per pod
    startup: Optional[Startups] = None
    refusals: Optional[Refusals] = None


class Sampler:
    def __init__(self, inputs: Inputs, runner: CollectorRunner, health: Health, *, interval: float,
                 node_name: str = "", backend: str = "real", clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time):
        self.inputs = inputs
        self.runner = runner
        self.health = health
        self.interval = interval
        self.node_name = node_name
        self.backend = backend
        self.clock = clock
        self.wallclock = wallclock
        self.encoder = kernels.ExpositionEncoder()
        self.encoder_om = kernels.ExpositionEncoder(openmetrics=True)
        self.current: Optional[Rendered] = None
        self.ticks = 0
        self.missed = 0
        self._last_duration: Optional[float] = None
        self._identity: Optional[IdentityView] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gpulse-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        interval = self.interval
        start = self.clock()
        n = 0
        while not self._stop.is_set():
            try:
                self.tick(self.clock())
            except Exception:
                log.exception("tick failed")
            n += 1
            next_at = start + n * interval
            now = self.clock()
            if now > next_at:  # overran: skip the slots we missed rather than bunch up
                skipped = int((now - next_at) // interval) + 1
                self.missed += skipped
                n += skipped
                next_at = start + n * interval
            self._stop.wait(max(0.0, next_at - self.clock()))

    # --- one tick --------------------------------------------------------------------------
    def tick(self, now: float) -> Rendered:
        t0 = time.perf_counter()
        snapshot = self.assemble(now)
        families = self.runner.run(snapshot)
        text = self.encoder.render(families)
        om = self.encoder_om.render(families)  # Prometheus asks for OpenMetrics first
        rendered = Rendered(text, kernels.compress(text), om, kernels.compress(om), snapshot)
        self.current = rendered  # atomic swap: scrapes read whichever object they got
        self.ticks += 1
        nvml = self.inputs.nvml
        self.health.tick_done(nvml.reader is not None, nvml.error)
        self._last_duration = time.perf_counter() - t0
        return rendered

    def assemble(self, now: float) -> Snapshot:
        """Read every input once into one immutable Snapshot."""
        inp = self.inputs
        gpus: tuple[GpuState, ...] = ()
        migs: tuple[MigState, ...] = ()
        pods: tuple[PodShare, ...] = ()
        unattributed: Mapping[int, float] = {}
        unresolved: Mapping[tuple[int, str], int] = {}
        claims: tuple[PodClaim, ...] = ()
        unresolved_allocations: Mapping[tuple[str, str, str], int] = {}
        errors: Mapping[tuple[str, str], int] = {}
        calls: Mapping[str, int] = {}
        pod_accounts: tuple[PodAccount, ...] = ()
        gpu_accounts: tuple[GpuAccount, ...] = ()
        reader = inp.nvml.ready_reader(now)
        wall = self.wallclock()
        held: Optional[tuple[PodShare, ...]] = None  # pods' GPU memory this tick; None: not read
        if reader is not None:
            reading = reader.read(now)
            activity = inp.mig_activity.current() if inp.mig_activity is not None else None
            gpus, migs = inp.windows.apply(reading, now, activity)
            if inp.pods is not None and inp.attributor is not None:
                shares, unattributed = inp.attributor.update(reading, inp.pods.current(), now,
                                                             unit_utilization(gpus, migs))
                pods, unresolved = tuple(shares), dict(inp.attributor.unresolved)
                claims, unresolved_allocations = inp.attributor.claims, dict(inp.attributor.unresolved_allocations)
                held = pods
            if inp.identity is not None:
                self._identity = inp.identity.update(reading, now)
            if inp.accounts is not None:
                split = inp.attributor.tick_activity if inp.attributor is not None else {}
                try:
                    pod_accounts, gpu_accounts = inp.accounts.update(now, reading, gpus, migs, pods, split,
                                                                     self._identity)
                except Exception:
                    log.exception("energy and cost accounting failed")
            errors, calls = dict(reader.errors), dict(reader.calls)
        workloads = inp.workloads.current() if inp.workloads is not None else ()
        startups, histograms = inp.startup.update(held, wall) if inp.startup is not None else ((), ())
        return Snapshot(
            timestamp=self.wallclock(), node_name=self.node_name, gpus=gpus, migs=migs, pods=pods,
            unattributed=MappingProxyType(dict(unattributed)), unresolved=MappingProxyType(dict(unresolved)),
            claims=claims, unresolved_allocations=MappingProxyType(dict(unresolved_allocations)),
            workloads=tuple(workloads), identity=self._identity,
            sources=MappingProxyType({name: src.status() for name, src in inp.sources.items()}),
            nvml_errors=MappingProxyType(dict(errors)), nvml_calls=MappingProxyType(dict(calls)),
            nvml_backend=self.backend, tick=TickStats(self._last_duration, self.ticks, self.missed),
            pod_accounts=pod_accounts, gpu_accounts=gpu_accounts, startups=startups, startup_histograms=histograms,
            refused=inp.refusals.counts() if inp.refusals is not None else MappingProxyType({}))

    # --- health, as the HTTP server asks it -------------------------------------------------
    def liveness(self) -> tuple[bool, str]:
        return self.health.liveness()

    def readiness(self) -> tuple[bool, str]:
        return self.health.readiness()
