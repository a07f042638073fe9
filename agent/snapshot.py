"""Immutable data handed from the sampler to collectors, once per tick.

Collectors read only a Snapshot: never a backend, a socket or the network.
A value that is not known (unsupported field, no data yet) is simply absent from
the mappings below, so its sample is omitted rather than rendered as NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Optional, TypeVar

from .nvml.reading import DeviceFacts, Labeled
from .refresh import SourceStatus

if TYPE_CHECKING:
    from .identity.resolver import IdentityView

__all__ = ["CollectorStat", "GpuAccount", "GpuState", "MigState", "PodAccount", "PodClaim", "PodShare", "PodStartup",
           "Snapshot", "SourceStatus", "StartupHistogram", "TickStats", "WorkloadState"]


_K = TypeVar("_K")
_V = TypeVar("_V")


def _empty() -> Mapping[_K, _V]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GpuState:
    index: int
    uuid: str
    name: str  # as NVML reports it
    pci_bus_id: str = ""
    up: bool = True
    mig_enabled: bool = False
    values: Mapping[str, float] = field(default_factory=_empty)  # family -> value, labels (gpu, uuid)
    # family -> {extra label values: value}, e.g. "gpulse_gpu_clock_event_active" -> {("sw_power_cap",): 1.0}
    labeled: Labeled = field(default_factory=_empty)
    facts: DeviceFacts = field(default_factory=DeviceFacts)


@dataclass(frozen=True, slots=True)
class MigState:
    gpu: int
    uuid: str  # parent GPU uuid
    gpu_instance: int
    compute_instance: int
    profile: str  # e.g. "1g.10gb"
    mig_uuid: str
    values: Mapping[str, float] = field(default_factory=_empty)  # family -> value


@dataclass(frozen=True, slots=True)
class PodShare:
    """One container's claim on one GPU or MIG instance, and what it used."""
    namespace: str
    pod: str
    container: str
    gpu: int
    uuid: str
    sharing: str  # exclusive | mig | time-slicing | mps
    allocated: float  # 1 per whole GPU / MIG instance, 1/replicas per shared slot
    utilization: Optional[float] = None  # ratio, window mean; None when unknown
    memory_used_bytes: Optional[float] = None
    gpu_instance: str = ""
    compute_instance: str = ""
    mig_profile: str = ""
    mig_uuid: str = ""
    allocation: str = "device-plugin"  # how the kubelet handed it out: device-plugin | dra


@dataclass(frozen=True, slots=True)
class PodClaim:
    """A container's DRA claim on one device, resolved to the GPU it is on (gpulse_pod_gpu_claim_info)."""
    namespace: str
    pod: str
    container: str
    claim_namespace: str
    claim: str
    driver: str
    pool: str
    device: str
    uuid: str  # the physical GPU's uuid, as on the pod series


@dataclass(frozen=True, slots=True)
class PodAccount:
    """One container's running totals on one GPU or MIG instance (gpulse.accounts).
    None: not known on this GPU (no energy reading, no price, utilization never known)."""
    labels: tuple[str, ...]  # values of catalog.POD
    energy_joules: Optional[float] = None  # counter
    power_watts: Optional[float] = None
    idle_seconds: Optional[float] = None  # counter, weighted by the allocated fraction
    cost: Optional[float] = None  # counter, in the price table's currency


@dataclass(frozen=True, slots=True)
class GpuAccount:
    """One GPU's energy remainder, idle floor and price (gpulse.accounts)."""
    gpu: int
    uuid: str
    unattributed_energy_joules: Optional[float] = None  # counter
    idle_power_watts: Optional[float] = None
    idle_power_estimate: str = ""  # idle | fit | lowest_seen
    price_per_hour: Optional[float] = None  # per GPU-hour; None: no row for this GPU
    price_key: str = ""  # the sku or model of the row
    cloud: str = ""
    pricing_kind: str = ""
    currency: str = ""
    price_region: str = ""
    price_source: str = ""
    price_as_of: str = ""


@dataclass(frozen=True, slots=True)
class WorkloadState:
    namespace: str
    pod: str
    server: str
    model: str = ""
    queue_depth: Optional[float] = None
    running_requests: Optional[float] = None
    kv_cache_usage: Optional[float] = None
    scrape_up: bool = True
    scrape_duration_seconds: Optional[float] = None
    # (reason, count) of the endpoint's scraped samples dropped out of range so far
    # (gpulse.workloads.drops); on one state of the endpoint
    samples_dropped: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class PodStartup:
    """An inference pod's latest start (gpulse.startup): the phases measured so far."""
    namespace: str
    pod: str
    workload: str
    workload_type: str  # deployment | statefulset | replicaset | pod | ... (lower-case kind)
    start: str  # "initial" (scheduled) | "restart" (a container restarted: crash, OOM, liveness)
    phases: tuple[tuple[str, float], ...] = ()  # (phase, seconds) in order; a phase in progress counts up
    current: str = ""  # the phase in progress while starting; "" once the model is ready
    starting: Optional[bool] = None  # None: not known yet (a start already under way when the agent began)


@dataclass(frozen=True, slots=True)
class StartupHistogram:
    """Completed starts of one workload on this node: scheduled (or crashed) -> model ready."""
    namespace: str
    workload: str
    workload_type: str
    start: str
    counts: tuple[float, ...]  # cumulative, one per bound of the catalog's buckets, then +Inf
    total: float  # sum of the observed seconds


@dataclass(frozen=True, slots=True)
class TickStats:
    duration: Optional[float] = None  # seconds the previous tick took
    ticks: int = 0
    missed: int = 0


@dataclass(frozen=True, slots=True)
class CollectorStat:
    ok: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    timestamp: float
    node_name: str
    gpus: tuple[GpuState, ...] = ()
    migs: tuple[MigState, ...] = ()
    pods: tuple[PodShare, ...] = ()
    unattributed: Mapping[int, float] = field(default_factory=_empty)  # gpu index -> ratio (shared GPUs)
    unresolved: Mapping[tuple[int, str], int] = field(default_factory=_empty)  # (gpu, reason) -> processes
    claims: tuple[PodClaim, ...] = ()
    # (allocation, driver, reason) -> allocations no GPU could be found for
    unresolved_allocations: Mapping[tuple[str, str, str], int] = field(default_factory=_empty)
    workloads: tuple[WorkloadState, ...] = ()
    identity: Optional[IdentityView] = None
    sources: Mapping[str, SourceStatus] = field(default_factory=_empty)  # "nvml", "kubelet", ...
    nvml_errors: Mapping[tuple[str, str], int] = field(default_factory=_empty)  # (function, reason) -> count
    nvml_calls: Mapping[str, int] = field(default_factory=_empty)  # function -> count
    nvml_backend: str = "real"
    tick: TickStats = field(default_factory=TickStats)
    # Filled in by the collector runner before the self collector runs (this tick's outcome).
    collectors: Mapping[str, CollectorStat] = field(default_factory=_empty)
    dropped: Mapping[str, int] = field(default_factory=_empty)  # family -> series over the ceiling
    pod_accounts: tuple[PodAccount, ...] = ()  # energy, idle time and cost per pod (gpulse.accounts)
    gpu_accounts: tuple[GpuAccount, ...] = ()
    startups: tuple[PodStartup, ...] = ()
    startup_histograms: tuple[StartupHistogram, ...] = ()
    refused: Mapping[tuple[str, str], int] = field(default_factory=_empty)  # (component, reason) -> count
