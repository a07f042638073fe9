"""What one NVML read returns per tick: raw values, before windows and attribution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    used_memory_bytes: Optional[int]  # None when NVML cannot tell (e.g. no permission)
    gpu_instance: Optional[int] = None  # MIG GPU instance id, None off MIG
    compute_instance: Optional[int] = None


@dataclass(frozen=True, slots=True)
class ProcessUtilization:
    """One nvmlProcessUtilizationSample_t: percents over the driver's sampling period."""
    pid: int
    timestamp_us: int
    sm_util: float  # 0..100
    mem_util: float  # 0..100


@dataclass(frozen=True, slots=True)
class MigReading:
    gpu: int
    uuid: str  # parent GPU uuid
    gpu_instance: int
    compute_instance: int
    profile: str  # "1g.10gb"
    mig_uuid: str
    memory_used_bytes: Optional[float] = None
    memory_total_bytes: Optional[float] = None
    utilization: Optional[float] = None  # ratio from GPM (Hopper+), None when not available
    processes: tuple = ()  # ProcessInfo


@dataclass(frozen=True, slots=True)
class DeviceReading:
    index: int
    uuid: str
    name: str
    pci_bus_id: str = ""
    up: bool = True
    mig_enabled: bool = False
    utilization: Optional[float] = None  # ratio, this tick's nvmlDeviceGetUtilizationRates.gpu
    memory_utilization: Optional[float] = None
    values: dict = field(default_factory=dict)  # catalog family -> value (instantaneous / counters)
    labeled: dict = field(default_factory=dict)  # catalog family -> {extra labels: value}
    raw: dict = field(default_factory=dict)  # pci ids, memory_mib, compute capability, ...
    processes: tuple = ()  # ProcessInfo, compute processes on the whole GPU
    process_utilization: tuple = ()  # ProcessUtilization since the previous read (not on MIG)


@dataclass(frozen=True, slots=True)
class NvmlReading:
    timestamp: float
    devices: tuple = ()  # DeviceReading
    migs: tuple = ()  # MigReading
    driver_version: str = ""
    cuda_version: str = ""
    nvml_version: str = ""
