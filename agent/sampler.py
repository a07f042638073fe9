"""The tick loop: read every source once, window, attribute, snapshot, render, swap.

The sampler is the one place that calls sources. A scrape only ever reads the
`Rendered` bytes of the last tick (see gpulse.server), so any number of scrapers cost the
driver nothing. Ticks follow a drift-free cadence: tick n starts at start + n*interval; a
tick that overruns skips the missed slots and counts them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType

from . import collectors, kernels
from .config import WINDOW_SAMPLES
from .errors import one_line
from .identity.labels import write_nfd_features
from .nvml.reader import NvmlReader
from .snapshot import GpuState, MigState, Snapshot, SourceStatus

log = logging.getLogger(__name__)
_IDENTITY_REFRESH_SECONDS = 300.0
_NFD_REWRITE_SECONDS = 60.0


@dataclass(frozen=True)
class Rendered:
    """One tick's exposition in both formats, plain and gzipped; immutable once published."""
    text: bytes
    text_gzip: bytes
    openmetrics: bytes
    openmetrics_gzip: bytes
    snapshot: Snapshot


class NodeCache:
    """The Kubernetes Node object, fetched on its own thread: a slow API server never stalls a tick."""

    REFRESH_SECONDS = 300.0
    RETRY_SECONDS = 30.0

    def __init__(self, fetch):
        self._fetch = fetch
        self.node = None
        self.version = 0  # bumps on every successful fetch
        self.error = ""
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpulse-node", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.node = self._fetch()
                self.version += 1
                self.error = ""
                wait = self.REFRESH_SECONDS
            except Exception as exc:  # noqa: BLE001 - identity works without node labels
                self.error = one_line(exc)
                log.warning("node object unavailable for identity (retry in %.0fs): %s", self.RETRY_SECONDS, self.error)
                wait = self.RETRY_SECONDS
            self._stop.wait(wait)


class Sampler:
    def __init__(self, config, lib_loader, *, pod_source=None, attributor=None, workload_source=None,
                 identity_resolver=None, node_fetcher=None, dcgm_source=None, clock=time.monotonic,
                 wallclock=time.time, backend_name="real"):
        self.config = config
        self._lib_loader = lib_loader
        self.reader = None
        self.pod_source = pod_source
        self.attributor = attributor
        self.workload_source = workload_source
        self.identity_resolver = identity_resolver
        self.node_cache = NodeCache(node_fetcher) if node_fetcher is not None else None
        self.dcgm_source = dcgm_source
        self.clock = clock
        self.wallclock = wallclock
        self.backend_name = backend_name
        self.windows = kernels.WindowSet(config.collect_window, capacity=WINDOW_SAMPLES)
        self.encoder = kernels.ExpositionEncoder()
        self._encoder_om = kernels.ExpositionEncoder(openmetrics=True)
        self.current: Rendered | None = None
        self.ready = False
        self.last_tick_at = 0.0
        self.nvml_error = ""
        self.ticks = 0
        self.missed = 0
        self.dropped: dict = {}
        self._identity = None
        self._identity_key = None
        self._identity_at = -1e18
        self._nfd_at = -1e18
        self._nvml_retry_at = 0.0
        self._nvml_backoff = 1.0
        self._last_tick_duration = 0.0
        self._stop = threading.Event()
        self._thread = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self, loop: bool = True) -> None:
        """Start the sources' own threads and, unless loop=False (tests tick by hand), the tick loop."""
        for src in (self.pod_source, self.workload_source, self.dcgm_source, self.node_cache):
            if src is not None:
                src.start()
        if not loop:
            return
        self._thread = threading.Thread(target=self._loop, name="gpulse-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for src in (self.pod_source, self.workload_source, self.dcgm_source, self.node_cache):
            if src is not None:
                src.stop()
        if self.reader is not None:
            self.reader.stop()

    def _loop(self) -> None:
        interval = self.config.collect_interval
        start = self.clock()
        n = 0
        while not self._stop.is_set():
            try:
                self.tick(self.clock())
            except Exception:  # noqa: BLE001 - a tick must never kill the loop
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

    # --- NVML start with backoff ----------------------------------------------------------
    def _ensure_reader(self, now: float) -> bool:
        if self.reader is not None:
            return True
        if now < self._nvml_retry_at:
            return False
        try:
            lib = self._lib_loader()
            reader = NvmlReader(lib, clock=self.clock)
            reader.start()
        except Exception as exc:  # noqa: BLE001 - NVML missing or failing: keep serving, retry
            self.nvml_error = one_line(exc)
            self._nvml_retry_at = now + self._nvml_backoff
            log.warning("NVML not available (retry in %.0fs): %s", self._nvml_backoff, self.nvml_error)
            self._nvml_backoff = min(self._nvml_backoff * 2, 60.0)
            return False
        self.reader, self.nvml_error, self._nvml_backoff = reader, "", 1.0
        log.info("NVML started: driver %s, %d GPUs", reader.driver_version, len(reader.devices))
        return True

    def _reader_healthy(self) -> bool:
        """A driver reload leaves NVML uninitialised: start it again (with backoff) rather
        than read nothing forever."""
        if not self.reader.needs_restart:
            return True
        log.warning("NVML needs a restart (%s): re-initialising", self.reader.needs_restart)
        self.nvml_error = f"NVML restarting: {self.reader.needs_restart}"
        try:
            self.reader.stop()
        except Exception:  # noqa: BLE001 - the old reader is gone either way
            pass
        self.reader = None
        return self._ensure_reader(self.clock()) and self.reader is not None

    # --- one tick -------------------------------------------------------------------------
    def tick(self, now: float) -> Rendered:
        t0 = time.perf_counter()
        sources = {}
        gpus, migs, pods, unattributed, workloads, extra = (), (), (), {}, (), {}
        reading = None
        if self._ensure_reader(now) and self._reader_healthy():
            reading = self.reader.read(now)
            sources["nvml"] = SourceStatus(up=True)  # read in this very tick: no age to report
            dcgm = None
            if self.dcgm_source is not None:
                dcgm = self.dcgm_source.current()
                sources["dcgm"] = self.dcgm_source.status()
            gpus, migs = self._window(reading, now, dcgm)
            if self.pod_source is not None and self.attributor is not None:
                view = self.pod_source.current()
                sources["kubelet"] = SourceStatus(view.up, view.age_seconds, view.error)
                pods, unattributed = self.attributor.update(reading, view, now, mig_utilization=dcgm)
                extra["attribution_unresolved"] = MappingProxyType(dict(self.attributor.unresolved))
            self._refresh_identity(reading, now)
        else:
            sources["nvml"] = SourceStatus(up=False, error=self.nvml_error)
        if self.workload_source is not None:
            workloads, status = self.workload_source.current()
            sources["workloads"] = status
        reader = self.reader
        snapshot = Snapshot(
            timestamp=self.wallclock(), node_name=self.config.node_name, gpus=gpus, migs=migs, pods=tuple(pods),
            unattributed=MappingProxyType(dict(unattributed)), workloads=tuple(workloads), identity=self._identity,
            sources=MappingProxyType(sources),
            nvml_errors=MappingProxyType(dict(reader.errors)) if reader else MappingProxyType({}),
            nvml_calls=MappingProxyType(dict(reader.calls)) if reader else MappingProxyType({}),
            extra=MappingProxyType(extra),
            tick=MappingProxyType({"duration": self._last_tick_duration, "ticks": self.ticks, "missed": self.missed}))
        families = self._collect(snapshot)
        text = self.encoder.render(families)
        om = self._encoder_om.render(families)  # Prometheus asks for OpenMetrics first
        rendered = Rendered(text, kernels.compress(text), om, kernels.compress(om), snapshot)
        self.current = rendered  # atomic swap: scrapes read whichever object they got
        self.ticks += 1
        self.ready = reading is not None
        self.last_tick_at = self.clock()
        self._last_tick_duration = time.perf_counter() - t0
        return rendered

    def liveness(self) -> tuple:
        """(alive, reason): false only when the tick loop has hung (e.g. inside a stuck NVML
        call) for long enough that restarting the container is the cure."""
        if not self.ticks:
            return True, ""
        hung_after = max(10 * self.config.collect_interval, 30.0)
        age = self.clock() - self.last_tick_at
        if age > hung_after:
            return False, f"no tick for {age:.0f}s (hung after {hung_after:g}s)"
        return True, ""

    def readiness(self) -> tuple:
        """(ready, reason): NVML up, a first tick done, and ticks not stale (a hung loop)."""
        if not self.ready:
            return False, self.nvml_error or "first tick not done"
        stale_after = max(3 * self.config.collect_interval, 5.0)
        age = self.clock() - self.last_tick_at
        if age > stale_after:
            return False, f"last tick {age:.1f}s ago (stale after {stale_after:g}s)"
        return True, ""

    def _window(self, reading, now: float, dcgm):
        w = self.windows
        live, gpus = [], []
        for d in reading.devices:
            values = dict(d.values)
            gpu_key, mem_key = ("gpu", d.index), ("mem", d.index)
            if d.utilization is not None:
                w.observe(gpu_key, now, d.utilization)
            if d.memory_utilization is not None:
                w.observe(mem_key, now, d.memory_utilization)
            live += [gpu_key, mem_key]
            if d.up:
                for key, family in ((gpu_key, "gpulse_gpu_utilization_ratio"), (mem_key, "gpulse_gpu_memory_utilization_ratio")):
                    mean = w.mean(key, now)
                    if mean is not None:
                        values[family] = mean
                peak = w.max(gpu_key, now)
                if peak is not None:
                    values["gpulse_gpu_utilization_max_ratio"] = peak
            gpus.append(GpuState(d.index, d.uuid, d.name, d.pci_bus_id, d.up, d.mig_enabled,
                                 MappingProxyType(values if d.up else {}),
                                 MappingProxyType({k: MappingProxyType(v) for k, v in d.labeled.items()} if d.up else
                                                  {k: v for k, v in d.labeled.items() if k == "gpulse_gpu_xid_errors_total"}),
                                 MappingProxyType(d.raw)))
        migs = []
        for m in reading.migs:
            key = ("mig", m.gpu, m.gpu_instance)
            util = m.utilization
            if util is None and dcgm:
                util = dcgm.get((m.uuid, m.gpu_instance))
            if util is not None:
                w.observe(key, now, util)
            live.append(key)
            values = {}
            mean = w.mean(key, now)
            if mean is not None:
                values["gpulse_mig_utilization_ratio"] = mean
            if m.memory_used_bytes is not None:
                values["gpulse_mig_memory_used_bytes"] = m.memory_used_bytes
            if m.memory_total_bytes is not None:
                values["gpulse_mig_memory_total_bytes"] = m.memory_total_bytes
            migs.append(MigState(m.gpu, m.uuid, m.gpu_instance, m.compute_instance, m.profile, m.mig_uuid,
                                 MappingProxyType(values)))
        w.retain(live)
        return tuple(gpus), tuple(migs)

    def _refresh_identity(self, reading, now: float) -> None:
        """Resolve at start, when the devices or the Node object change, and every few minutes;
        rewrite the NFD feature file every minute so its expiry keeps moving."""
        if self.identity_resolver is None:
            return
        node, node_version = (self.node_cache.node, self.node_cache.version) if self.node_cache else (None, 0)
        key = (node_version,) + tuple((d.uuid, d.mig_enabled, tuple(d.raw.get("mig_profiles", ()))) for d in reading.devices)
        if key != self._identity_key or now - self._identity_at >= _IDENTITY_REFRESH_SECONDS:
            try:
                self._identity = self.identity_resolver.resolve(reading, node)
            except Exception:  # noqa: BLE001 - keep the last good identity
                log.exception("identity resolution failed")
                return
            self._identity_key, self._identity_at, self._nfd_at = key, now, -1e18
        path = self.config.identity_nfd_file
        if path and self._identity is not None and now - self._nfd_at >= _NFD_REWRITE_SECONDS:
            self._nfd_at = now
            try:
                write_nfd_features(path, self._identity.labels(), expiry_seconds=3 * _NFD_REWRITE_SECONDS)
            except OSError as exc:
                log.warning("cannot write NFD feature file %s: %s", path, one_line(exc))

    def _collect(self, snapshot: Snapshot) -> list:
        families, stats = [], {}
        limit = self.config.limits_max_series
        for mod in collectors.ALL:
            t0 = time.perf_counter()
            try:
                produced = list(mod.collect(snapshot, self.config))
                ok = True
            except Exception:  # noqa: BLE001 - one collector must not break the scrape
                log.exception("collector %s failed", mod.NAME)
                produced, ok = [], False
            stats[mod.NAME] = (ok, time.perf_counter() - t0)
            for fam in produced:
                if len(fam.samples) > limit:
                    self.dropped[fam.name] = self.dropped.get(fam.name, 0) + len(fam.samples) - limit
                    del fam.samples[limit:]
                families.append(fam)
        families.extend(collectors.self_metrics.collect(snapshot, self.config, stats=stats, dropped=self.dropped,
                                                        backend=self.backend_name))
        return families
