"""Immutable data handed from the sampler to collectors, once per tick.

Collectors read only a Snapshot: never a backend, a socket or the network.
A value that is not known (unsupported field, no data yet) is simply absent from
the mappings below, so its sample is omitted rather than rendered as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

EMPTY: Mapping = MappingProxyType({})


def _empty():
    return field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class GpuState:
    index: int
    uuid: str
    name: str  # as NVML reports it
    pci_bus_id: str = ""
    up: bool = True
    mig_enabled: bool = False
    # catalog family name -> value, for families labelled (gpu, uuid) only
    values: Mapping[str, float] = _empty()
    # catalog family name -> {extra label values tuple: value}, e.g.
    # "gpulse_gpu_clock_event_active" -> {("sw_power_cap",): 1.0}
    labeled: Mapping[str, Mapping[tuple, float]] = _empty()
    # raw facts identity resolution and `gpulse check` need
    raw: Mapping[str, Any] = _empty()


@dataclass(frozen=True, slots=True)
class MigState:
    gpu: int
    uuid: str  # parent GPU uuid
    gpu_instance: int
    compute_instance: int
    profile: str  # e.g. "1g.10gb"
    mig_uuid: str
    values: Mapping[str, float] = _empty()  # catalog family name -> value


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


@dataclass(frozen=True, slots=True)
class SourceStatus:
    up: bool
    age_seconds: Optional[float] = None  # how old the data is at snapshot time
    error: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    timestamp: float
    node_name: str
    gpus: tuple = ()  # GpuState
    migs: tuple = ()  # MigState
    pods: tuple = ()  # PodShare
    unattributed: Mapping[int, float] = _empty()  # gpu index -> ratio (shared GPUs only)
    workloads: tuple = ()  # WorkloadState
    identity: Any = None  # gpulse.identity view (gpus by uuid, node, conflicts)
    sources: Mapping[str, SourceStatus] = _empty()  # "nvml", "kubelet", "workloads", ...
    nvml_errors: Mapping[tuple, int] = _empty()  # (function, reason) -> count
    nvml_calls: Mapping[str, int] = _empty()  # function -> count
    extra: Mapping[str, Any] = _empty()  # optional inputs, e.g. "dcgm" samples
    tick: Mapping[str, float] = _empty()  # duration, ticks, missed, ...
