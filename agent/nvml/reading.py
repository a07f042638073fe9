"""What one NVML read returns per tick: raw values, before windows and attribution."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional, TypeVar

UTILIZATION = "gpulse_gpu_utilization_ratio"
MIG_UTILIZATION = "gpulse_mig_utilization_ratio"
Labeled = Mapping[str, Mapping[tuple[str, ...], float]]  # family -> {extra label values: value}


_K = TypeVar("_K")
_V = TypeVar("_V")


def _empty() -> Mapping[_K, _V]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What NVML says about a GPU once (at start and after a MIG change): identity and
    attribution read these, never per-tick values."""
    name: str = ""
    pci_device_id: Optional[int] = None  # upper 16 bits of pciDeviceId, e.g. 0x2330
    pci_subsystem_id: Optional[int] = None
    memory_mib: Optional[int] = None
    compute_capability: str = ""  # "9.0"
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_profiles: tuple[str, ...] = ()  # one entry per instance, sorted
    virtualization_mode: str = ""  # none, passthrough, vgpu, host_vgpu, host_vsga
    driver_version: str = ""
    compute_mode: Optional[int] = None  # NVML_COMPUTEMODE_*; EXCLUSIVE_PROCESS (3) under MPS
    minor_number: Optional[int] = None  # /dev/nvidia<N>, as GKE device ids name GPUs


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    used_memory_bytes: Optional[int]  # None when NVML cannot tell (e.g. no permission)
    gpu_instance: Optional[int] = None  # MIG GPU instance id, None off MIG
    compute_instance: Optional[int] = None


@dataclass(frozen=True, slots=True)
class ProcessUtilization:
    """One process's mean over the driver's samples since the last read (percents)."""
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
    values: Mapping[str, float] = field(default_factory=_empty)  # MIG row family -> this tick's value
    processes: tuple[ProcessInfo, ...] = ()
    name: str = ""  # nvmlDeviceGetName on the MIG handle: "<parent name> MIG <profile>"

    @property
    def utilization(self) -> Optional[float]:
        """This tick's graphics activity (GPM, Hopper+), None when NVML has none."""
        return self.values.get(MIG_UTILIZATION)


@dataclass(frozen=True, slots=True)
class DeviceReading:
    index: int
    uuid: str
    name: str
    pci_bus_id: str = ""
    up: bool = True
    mig_enabled: bool = False
    values: Mapping[str, float] = field(default_factory=_empty)  # device row family -> this tick's value
    labeled: Labeled = field(default_factory=_empty)
    facts: DeviceFacts = field(default_factory=DeviceFacts)
    processes: tuple[ProcessInfo, ...] = ()  # compute processes on the whole GPU
    process_utilization: tuple[ProcessUtilization, ...] = ()  # since the previous read (not on MIG)

    @property
    def utilization(self) -> Optional[float]:
        """This tick's nvmlDeviceGetUtilizationRates.gpu as a ratio, None when unknown."""
        return self.values.get(UTILIZATION)


@dataclass(frozen=True, slots=True)
class NvmlReading:
    timestamp: float
    devices: tuple[DeviceReading, ...] = ()
    migs: tuple[MigReading, ...] = ()
    driver_version: str = ""
    cuda_version: str = ""
    nvml_version: str = ""
