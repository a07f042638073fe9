"""A fake NVML library driven by a scenario: same functions, constants, exceptions and
result attribute names as pynvml, so the agent's reader runs unchanged against it.

Constants, exception classes and ctypes result structures are pynvml's own (from
gpulse.nvml.lib); only the functions are simulated. GPM samples are the one exception: the
driver keeps them opaque, so the fake's samples and its GPM request are Python objects with
pynvml's attribute names (the contract test holds them to it). A function the fake does not
implement raises NVMLError_FunctionNotFound, as a driver lacking the symbol would. Values
are deterministic functions of scenario time (clock() seconds since start).

Which scenario knob switches which call off comes from the metric rows
(gpulse.nvml.metrics); only the calls that are not rows (processes, GPM plumbing) are
listed here. The fake also models what real drivers do that the reader must survive:
NVLink fields per link scope (and the all-links scope), MIG handle names
"<parent name> MIG <profile>", and the process-utilization size query answering SUCCESS
(pynvml then raises NVMLError with value 0) when a GPU has no processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any, ClassVar, NoReturn, Optional

from ..nvml.lib import load_real
from ..nvml.metrics import ALL_LINKS_SCOPE, CLOCK_EVENT_REASONS
from .knobs import ROW_KNOBS as _ROW_KNOBS
from .knobs import STRUCTURAL_KNOBS
from .scenario import FaultSpec, GpuSpec, MigInstanceSpec, ProcessSpec, Scenario

_nvml = load_real()

MIB = 1024 * 1024
_EPOCH_US = 1_750_000_000_000_000  # fake driver timestamps: µs since a fixed epoch
_NA_ID = 0xFFFFFFFF  # gpuInstanceId / computeInstanceId off MIG

_FUNCTION_KNOB = {**{fn: k for fn, k in _ROW_KNOBS.items() if fn.startswith("nvml")},
                  **{fn: k for k, fns in STRUCTURAL_KNOBS.items() for fn in fns}}
_FIELD_KNOB: dict[int, str] = {getattr(_nvml, const): k for const, k in _ROW_KNOBS.items()
                               if const.startswith("NVML_FI_")}
_ERROR_CODES: dict[str, int] = {name[len("NVML_ERROR_"):]: getattr(_nvml, name) for name in dir(_nvml)
                                if name.startswith("NVML_ERROR_")}
_THROTTLE_BITS: dict[str, int] = {name: getattr(_nvml, const) for name, const in CLOCK_EVENT_REASONS
                                  if hasattr(_nvml, const)}
_NVLINK_FIELDS: tuple[int, int] = (_nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
                                   _nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX)


class _Handle:
    __slots__ = ("gpu", "mig")

    def __init__(self, gpu: GpuSpec, mig: Optional[MigInstanceSpec] = None) -> None:
        self.gpu, self.mig = gpu, mig

    def __repr__(self) -> str:
        return f"<fake nvmlDevice gpu={self.gpu.index} mig={self.mig.index if self.mig else None}>"


class _GpmSample:
    __slots__ = ("t", "busy")
    t: Optional[float]  # scenario time of the sample; None until taken
    busy: float  # integral of engine activity up to t

    def __init__(self) -> None:
        self.t, self.busy = None, 0.0


class _Integral:
    """Running integral of f(t) over scenario time, advanced in small steps."""

    STEP = 0.05

    def __init__(self, f: Callable[[float], float]) -> None:
        self.f, self.t, self.value = f, 0.0, 0.0

    def at(self, t: float) -> float:
        while self.t + self.STEP <= t:
            self.value += self.f(self.t + self.STEP / 2) * self.STEP
            self.t += self.STEP
        return self.value + self.f((self.t + t) / 2) * (t - self.t)


class FakeNvml:
    """Use as the `lib` of gpulse.nvml.reader.NvmlReader in place of the pynvml module."""

    def __init__(self, scenario: Scenario, clock: Optional[Callable[[], float]] = None) -> None:
        self.scenario = scenario
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self.calls = 0
        self._initialized = False
        self._lock = threading.Lock()
        self._handles = [_Handle(g) for g in scenario.gpus]
        self._mig_handles = {(g.index, m.index): _Handle(g, m) for g in scenario.gpus for m in g.mig_instances}
        self._procs_by_gpu: dict[int, list[ProcessSpec]] = {}
        for p in scenario.processes():
            self._procs_by_gpu.setdefault(p.gpu, []).append(p)
        self._energy = {g.index: _Integral(partial(self._power_w, g)) for g in scenario.gpus}
        self._busy = {g.index: _Integral(partial(self._gpu_util, g)) for g in scenario.gpus}
        self._mig_busy = {(g.index, m.index): _Integral(partial(self._mig_util, g, m))
                          for g in scenario.gpus for m in g.mig_instances}  # the keys of _mig_handles
        self._delivered_xids: set[int] = set()  # indexes into scenario.faults

    # --- pynvml's non-function names: constants, exception classes, structures ---------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml") and callable(getattr(_nvml, name, None)) and not name.startswith("nvmlClocks"):
            def missing(*args: Any, **kwargs: Any) -> NoReturn:
                raise _nvml.NVMLError(_nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            return missing
        return getattr(_nvml, name)

    # --- scenario physics ----------------------------------------------------------
    def _procs(self, gpu: GpuSpec, mig: Optional[MigInstanceSpec] = None) -> list[ProcessSpec]:
        procs = self._procs_by_gpu.get(gpu.index, ())
        return [p for p in procs if mig is None or p.mig == mig.index]

    def _proc_utils(self, gpu: GpuSpec, t: float, mig: Optional[MigInstanceSpec] = None) -> dict[int, float]:
        utils = {p.pid: min(1.0, max(0.0, p.utilization.at(t))) for p in self._procs(gpu, mig)}
        total = sum(utils.values())
        if total > 1.0:  # the engine is saturated: each process gets its proportion
            utils = {pid: u / total for pid, u in utils.items()}
        return utils

    def _gpu_util(self, gpu: GpuSpec, t: float) -> float:
        if gpu.utilization is not None:
            return min(1.0, max(0.0, gpu.utilization.at(t)))
        if gpu.mig_enabled:
            return sum(self._mig_util(gpu, m, t) * m_slices(gpu, m) for m in gpu.mig_instances) / 7.0
        return sum(self._proc_utils(gpu, t).values())

    def _mig_util(self, gpu: GpuSpec, mig: MigInstanceSpec, t: float) -> float:
        return sum(self._proc_utils(gpu, t, mig).values())

    def _power_w(self, gpu: GpuSpec, t: float) -> float:
        return gpu.idle_power_watts + (gpu.power_limit_watts * 0.85 - gpu.idle_power_watts) * self._gpu_util(gpu, t)

    def _now(self) -> float:
        return self.clock()

    def _faults(self, kind: str, t: float, gpu: Optional[GpuSpec] = None) -> Iterator[FaultSpec]:
        for f in self.scenario.faults:
            if (f.kind == kind and f.at <= t and (not f.until or t < f.until)
                    and (gpu is None or f.gpu in (None, gpu.index))):
                yield f

    def _enter(self, function: str, handle: Optional[_Handle] = None) -> float:
        """Every simulated call passes here: init check, faults, lost GPUs, unsupported fields."""
        self.calls += 1
        if not self._initialized and function not in ("nvmlInit", "nvmlInitWithFlags"):
            raise _nvml.NVMLError(_nvml.NVML_ERROR_UNINITIALIZED)
        t = self._now()
        gpu = handle.gpu if handle is not None else None
        for f in self._faults("stall", t, gpu):
            if f.function == function:
                time.sleep(f.seconds)
        if gpu is not None:
            if any(True for _ in self._faults("lost", t, gpu)):
                raise _nvml.NVMLError(_nvml.NVML_ERROR_GPU_IS_LOST)
            field = _FUNCTION_KNOB.get(function)
            if field and self._unsupported(gpu, field, t):
                raise _nvml.NVMLError(_nvml.NVML_ERROR_NOT_SUPPORTED)
        for f in self._faults("nvml_error", t, gpu):
            if f.function == function:
                raise _nvml.NVMLError(_ERROR_CODES.get(f.error.upper(), _nvml.NVML_ERROR_UNKNOWN))
        return t

    def _unsupported(self, gpu: GpuSpec, field: str, t: float) -> bool:
        if field in gpu.unsupported:
            return True
        if field == "fan" and not gpu.fan:
            return True
        if field in ("utilization", "process_utilization") and gpu.mig_enabled:
            return True  # NVML: not supported on MIG-enabled GPUs
        if field == "gpm" and not gpu.gpm:
            return True
        if field == "nvlink" and not gpu.nvlinks:
            return True
        return any(f.field == field for f in self._faults("unsupported", t, gpu))

    # --- system --------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlInitWithFlags(self, flags: int) -> None:
        t = self._now()
        if any(True for _ in self._faults("init_failure", t)):
            self.calls += 1
            raise _nvml.NVMLError(_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
        self._enter("nvmlInit")
        self._initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self._initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.scenario.driver.version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self.scenario.driver.nvml_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.scenario.driver.cuda_version

    # --- enumeration and static facts ------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self._handles)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._handles):
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetIndex", handle)
        return handle.gpu.index

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        self._enter("nvmlDeviceGetName", handle)
        if handle.mig:
            return f"{handle.gpu.name} MIG {handle.mig.profile}"
        return handle.gpu.name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return handle.mig.uuid if handle.mig else handle.gpu.uuid

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> Any:  # pynvml nvmlPciInfo_t
        self._enter("nvmlDeviceGetPciInfo", handle)
        g = handle.gpu
        info = _nvml.nvmlPciInfo_t()
        info.busId = g.pci_bus_id.encode()
        info.busIdLegacy = g.pci_bus_id.encode()
        info.domain, info.bus, info.device = 0, int(g.pci_bus_id.split(":")[1], 16), 0
        info.pciDeviceId = (g.pci_device_id << 16) | 0x10DE
        info.pciSubSystemId = (g.pci_subsystem_id << 16) | 0x10DE
        return info

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability", handle)
        major, minor = handle.gpu.compute_capability.split(".")
        return int(major), int(minor)

    def nvmlDeviceGetVirtualizationMode(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetVirtualizationMode", handle)
        mode: int = _nvml.NVML_GPU_VIRTUALIZATION_MODE_NONE
        return mode

    def nvmlDeviceGetComputeMode(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetComputeMode", handle)
        # MPS runs its GPUs in exclusive-process mode; everything else is shared by default.
        mode: int = (_nvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS if handle.gpu.sharing == "mps"
                     else _nvml.NVML_COMPUTEMODE_DEFAULT)
        return mode

    def nvmlDeviceGetMinorNumber(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetMinorNumber", handle)
        return handle.gpu.index

    def nvmlDeviceGetSerial(self, handle: _Handle) -> str:
        self._enter("nvmlDeviceGetSerial", handle)
        return f"16523{handle.gpu.index:08d}"

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return int(handle.gpu.power_limit_watts * 1000)

    def nvmlDeviceGetMaxClockInfo(self, handle: _Handle, clock_type: int) -> int:
        self._enter("nvmlDeviceGetMaxClockInfo", handle)
        g = handle.gpu
        return g.max_sm_clock_mhz if clock_type == _nvml.NVML_CLOCK_SM else g.memory_clock_mhz

    # --- MIG ---------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        if not handle.gpu.mig_profiles:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_NOT_SUPPORTED)
        mode = _nvml.NVML_DEVICE_MIG_ENABLE if handle.gpu.mig_enabled else _nvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        return 7 if handle.gpu.mig_profiles else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        h = self._mig_handles.get((handle.gpu.index, index))
        if h is None:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_NOT_FOUND)
        return h

    def nvmlDeviceIsMigDeviceHandle(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceIsMigDeviceHandle", handle)
        return 1 if handle.mig else 0

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: _Handle) -> _Handle:
        self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
        return self._handles[handle.gpu.index]

    def nvmlDeviceGetGpuInstanceId(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId", handle)
        if not handle.mig:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.mig.gpu_instance

    def nvmlDeviceGetComputeInstanceId(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetComputeInstanceId", handle)
        if not handle.mig:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.mig.compute_instance

    # --- dynamic values ---------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:  # pynvml c_nvmlUtilization_t
        t = self._enter("nvmlDeviceGetUtilizationRates", handle)
        u = _nvml.c_nvmlUtilization_t()
        util = self._gpu_util(handle.gpu, t)
        u.gpu = int(round(util * 100))
        u.memory = int(round(util * 55))
        return u

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: Optional[int] = None) -> Any:  # c_nvmlMemory_t
        t = self._enter("nvmlDeviceGetMemoryInfo", handle)
        g = handle.gpu
        m = _nvml.c_nvmlMemory_t()
        if handle.mig:
            total = handle.mig.memory_mib * MIB
            used = sum(p.memory_mib for p in self._procs(g, handle.mig)) * MIB + 12 * MIB
        else:
            total = g.memory_mib * MIB
            used = sum(p.memory_mib for p in self._procs(g)) * MIB + (len(g.mig_instances) * 12 + 5) * MIB
        del t
        m.total, m.used = int(total), int(min(used, total))
        m.free = m.total - m.used
        return m

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        t = self._enter("nvmlDeviceGetPowerUsage", handle)
        return int(self._power_w(handle.gpu, t) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        t = self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        return int(self._energy_mj(handle.gpu, t))

    def _energy_mj(self, gpu: GpuSpec, t: float) -> float:
        with self._lock:
            return 3.6e9 + self._energy[gpu.index].at(t) * 1000

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        t = self._enter("nvmlDeviceGetTemperature", handle)
        g = handle.gpu
        return int(round(g.temperature_celsius + 35 * self._gpu_util(g, t) + self._thermal_boost(g, t)))

    def _thermal_boost(self, gpu: GpuSpec, t: float) -> float:
        faults = self._faults("throttle", t, gpu)
        thermal = any(f.field in ("hw_thermal_slowdown", "sw_thermal_slowdown") for f in faults)
        return 50.0 if thermal else 0.0

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock_type: int) -> int:
        t = self._enter("nvmlDeviceGetClockInfo", handle)
        g = handle.gpu
        if clock_type == _nvml.NVML_CLOCK_MEM:
            return g.memory_clock_mhz
        throttled = any(True for _ in self._faults("throttle", t, g))
        busy = self._gpu_util(g, t) > 0.05
        return (g.max_sm_clock_mhz // 2 if throttled else g.max_sm_clock_mhz) if busy else 345

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        t = self._enter("nvmlDeviceGetFanSpeed", handle)
        return int(30 + 50 * self._gpu_util(handle.gpu, t))

    def nvmlDeviceGetEncoderUtilization(self, handle: _Handle) -> list[int]:
        self._enter("nvmlDeviceGetEncoderUtilization", handle)
        return [0, 167000]

    def nvmlDeviceGetDecoderUtilization(self, handle: _Handle) -> list[int]:
        self._enter("nvmlDeviceGetDecoderUtilization", handle)
        return [0, 167000]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        t = self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        g = handle.gpu
        mask = 0 if self._gpu_util(g, t) > 0.05 else _nvml.nvmlClocksEventReasonGpuIdle
        for f in self._faults("throttle", t, g):
            mask |= _THROTTLE_BITS.get(f.field, 0)
        return mask

    def _ecc(self, gpu: GpuSpec, t: float, kind: str) -> int:
        return sum(f.count for f in self._faults("ecc", t, gpu) if f.field == kind)

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        t = self._enter("nvmlDeviceGetTotalEccErrors", handle)
        kind = "uncorrectable" if error_type == _nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED else "correctable"
        return self._ecc(handle.gpu, t, kind)

    def nvmlDeviceGetRemappedRows(self, handle: _Handle) -> tuple[int, int, int, int]:
        t = self._enter("nvmlDeviceGetRemappedRows", handle)
        unc = self._ecc(handle.gpu, t, "uncorrectable")
        failure = 1 if any(f.field == "failure" for f in self._faults("row_remap", t, handle.gpu)) else 0
        return (self._ecc(handle.gpu, t, "correctable"), unc, 1 if unc else 0, failure)

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: Sequence[int | tuple[int, int]]) -> Any:
        """-> a ctypes array of pynvml c_nvmlFieldValue_t; a (field, scope) pair asks one scope."""
        t = self._enter("nvmlDeviceGetFieldValues", handle)
        g = handle.gpu
        values = (_nvml.c_nvmlFieldValue_t * len(field_ids))()
        ts = _EPOCH_US + int(t * 1e6)
        for i, fid in enumerate(field_ids):
            fid, scope = fid if isinstance(fid, tuple) else (fid, 0)
            v = values[i]
            v.fieldId, v.scopeId, v.timestamp, v.latencyUsec = fid, scope, ts, 3
            field = _FIELD_KNOB.get(fid)
            if fid == _nvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
                field = "nvlink"
            if field is None or self._unsupported(g, field, t):
                v.nvmlReturn = _nvml.NVML_ERROR_NOT_SUPPORTED
                continue
            v.nvmlReturn = _nvml.NVML_SUCCESS
            if fid == _nvml.NVML_FI_DEV_POWER_INSTANT:
                v.valueType, v.value.uiVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_INT, int(self._power_w(g, t) * 1000)
            elif fid == _nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                v.valueType, v.value.ullVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, int(self._energy_mj(g, t))
            elif fid == _nvml.NVML_FI_DEV_MEMORY_TEMP:
                mem_temp = int(round(g.temperature_celsius + 5 + 30 * self._gpu_util(g, t)))
                v.valueType, v.value.uiVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_INT, mem_temp
            elif fid == _nvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL:
                v.valueType, v.value.ullVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, self._ecc(g, t, "correctable")
            elif fid == _nvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL:
                v.valueType, v.value.ullVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, self._ecc(g, t, "uncorrectable")
            elif fid in (_nvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, _nvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES):
                with self._lock:
                    busy = self._busy[g.index].at(t)
                rate = 2e9 if fid == _nvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES else 5e9
                v.valueType, v.value.ullVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, int(1e9 + busy * rate)
            elif fid == _nvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER:
                v.valueType, v.value.uiVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_INT, 0
            elif fid == _nvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
                v.valueType, v.value.uiVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.nvlinks
            else:  # NVLink throughput in KiB, per link (scope = link index) or summed (all-links scope)
                links = range(g.nvlinks) if scope == ALL_LINKS_SCOPE else (scope,) if 0 <= scope < g.nvlinks else ()
                if not links:
                    v.nvmlReturn = _nvml.NVML_ERROR_INVALID_ARGUMENT
                    continue
                with self._lock:
                    busy = self._busy[g.index].at(t)
                # Counters run since the driver loaded: never zero on a node that has used its links.
                kib = sum(int(self._link_share(g, link) * (1e9 + busy * 40e9) / 1024) for link in links)
                v.valueType, v.value.ullVal = _nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, kib
        return values

    @staticmethod
    def _link_share(gpu: GpuSpec, link: int) -> float:
        """Traffic is spread unevenly over the links (so link 0 alone is visibly wrong)."""
        weights = [1.0 + (i % 3) for i in range(gpu.nvlinks)]
        return weights[link] / sum(weights)

    def nvmlDeviceGetNvLinkState(self, handle: _Handle, link: int) -> int:
        self._enter("nvmlDeviceGetNvLinkState", handle)
        if not 0 <= link < _nvml.NVML_NVLINK_MAX_LINKS:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        state: int = _nvml.NVML_FEATURE_ENABLED if link < handle.gpu.nvlinks else _nvml.NVML_FEATURE_DISABLED
        return state

    # --- processes ----------------------------------------------------------------------
    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        return self.nvmlDeviceGetComputeRunningProcesses_v3(handle)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: _Handle) -> list[Any]:
        # The _v3 symbol arrived with the R510 drivers; older ones answer FUNCTION_NOT_FOUND.
        if int(self.scenario.driver.version.split(".")[0]) < 510:
            self.calls += 1
            raise _nvml.NVMLError(_nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._running_processes(handle, "nvmlDeviceGetComputeRunningProcesses_v3")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: _Handle) -> list[Any]:
        return self._running_processes(handle, "nvmlDeviceGetComputeRunningProcesses_v2")

    def _running_processes(self, handle: _Handle, symbol: str) -> list[Any]:
        """-> pynvml nvmlFriendlyObject process infos."""
        self._enter(symbol, handle)
        out: list[Any] = []
        for p in self._procs(handle.gpu, handle.mig):
            mig = handle.gpu.mig_instances[p.mig] if p.mig is not None else None
            out.append(_nvml.nvmlFriendlyObject({
                "pid": p.pid, "usedGpuMemory": int(p.memory_mib * MIB),
                "gpuInstanceId": mig.gpu_instance if mig else _NA_ID,
                "computeInstanceId": mig.compute_instance if mig else _NA_ID}))
        return out

    def nvmlDeviceGetProcessUtilization(self, handle: _Handle, last_seen_us: int) -> list[Any]:
        t = self._enter("nvmlDeviceGetProcessUtilization", handle)
        now_us = _EPOCH_US + int(t * 1e6)
        start = max(0.0, (last_seen_us - _EPOCH_US) / 1e6) if last_seen_us else max(0.0, t - 1.0)
        if not self._procs(handle.gpu):
            # The size query finds nothing to size and answers SUCCESS; pynvml raises that.
            raise _nvml.NVMLError(_nvml.NVML_SUCCESS)
        if now_us <= last_seen_us:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_NOT_FOUND)
        # The driver reports each process's mean over the period since lastSeenTimeStamp.
        n = max(1, min(20, int((t - start) / 0.05)))
        points = [start + (t - start) * (k + 0.5) / n for k in range(n)]
        sums: dict[int, float] = {}  # pid -> sum of its utilization over the points
        for tp in points:
            for pid, u in self._proc_utils(handle.gpu, tp).items():
                sums[pid] = sums.get(pid, 0.0) + u
        samples = (_nvml.c_nvmlProcessUtilizationSample_t * len(sums))()
        for s, (pid, total) in zip(samples, sorted(sums.items()), strict=True):
            s.pid, s.timeStamp = pid, now_us
            s.smUtil = int(round(100 * total / n))
            s.memUtil = int(round(55 * total / n))
        return list(samples)

    # --- GPM (Hopper+) ----------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, handle: _Handle) -> Any:  # pynvml c_nvmlGpmSupport_t
        self._enter("nvmlGpmQueryDeviceSupport", handle)
        support = _nvml.c_nvmlGpmSupport_t()
        support.version = _nvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1
        return support

    def nvmlGpmSampleAlloc(self) -> _GpmSample:
        self._enter("nvmlGpmSampleAlloc")
        return _GpmSample()

    def nvmlGpmSampleFree(self, sample: _GpmSample) -> None:
        self._enter("nvmlGpmSampleFree")

    def nvmlGpmMigSampleGet(self, handle: _Handle, gpu_instance_id: int, sample: _GpmSample) -> _GpmSample:
        t = self._enter("nvmlGpmMigSampleGet", handle)
        mig = next((m for m in handle.gpu.mig_instances if m.gpu_instance == gpu_instance_id), None)
        if mig is None:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            sample.t, sample.busy = t, self._mig_busy[(handle.gpu.index, mig.index)].at(t)
        return sample

    def nvmlGpmSampleGet(self, handle: _Handle, sample: _GpmSample) -> _GpmSample:
        t = self._enter("nvmlGpmSampleGet", handle)
        if handle.gpu.mig_enabled:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_NOT_SUPPORTED)
        with self._lock:
            sample.t, sample.busy = t, self._busy[handle.gpu.index].at(t)
        return sample

    # How the simulated profiling counters follow engine activity (fractions of it).
    _GPM_SHARE: ClassVar[dict[int, float]] = {
        _nvml.NVML_GPM_METRIC_GRAPHICS_UTIL: 1.0, _nvml.NVML_GPM_METRIC_SM_UTIL: 0.95,
        _nvml.NVML_GPM_METRIC_SM_OCCUPANCY: 0.5, _nvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 0.6,
        _nvml.NVML_GPM_METRIC_DRAM_BW_UTIL: 0.45}

    def nvmlGpmMetricsGet(self, metrics_get: SimpleNamespace) -> SimpleNamespace:
        self._enter("nvmlGpmMetricsGet")
        s1, s2 = metrics_get.sample1, metrics_get.sample2
        if s1.t is None or s2.t is None or s2.t - s1.t < 0.1:
            raise _nvml.NVMLError(_nvml.NVML_ERROR_INVALID_ARGUMENT)
        activity = 100.0 * (s2.busy - s1.busy) / (s2.t - s1.t)
        for i in range(metrics_get.numMetrics):
            m = metrics_get.metrics[i]
            share = self._GPM_SHARE.get(m.metricId)
            if share is None:
                m.nvmlReturn = _nvml.NVML_ERROR_NOT_SUPPORTED
            else:
                m.nvmlReturn, m.value = _nvml.NVML_SUCCESS, max(0.0, min(100.0, activity * share))
        return metrics_get

    @staticmethod
    def c_nvmlGpmMetricsGet_t() -> SimpleNamespace:
        """Fake samples are Python objects, so the request is too (same attribute names)."""
        metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(_nvml.NVML_GPM_METRIC_MAX)]
        return SimpleNamespace(version=0, numMetrics=0, sample1=None, sample2=None, metrics=metrics)

    # --- events (XID) -------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> SimpleNamespace:
        self._enter("nvmlEventSetCreate")
        return SimpleNamespace(handles=[])

    def nvmlDeviceRegisterEvents(self, handle: _Handle, event_types: int, event_set: SimpleNamespace) -> None:
        self._enter("nvmlDeviceRegisterEvents", handle)
        if event_types & _nvml.nvmlEventTypeXidCriticalError:
            event_set.handles.append(handle)

    def nvmlEventSetFree(self, event_set: SimpleNamespace) -> None:
        self._enter("nvmlEventSetFree")

    def nvmlEventSetWait_v2(self, event_set: SimpleNamespace, timeout_ms: int) -> SimpleNamespace:
        self._enter("nvmlEventSetWait_v2")
        deadline = time.monotonic() + timeout_ms / 1000.0
        registered = {h.gpu.index: h for h in event_set.handles}
        while True:
            t = self._now()
            for n, f in enumerate(self.scenario.faults):
                if n in self._delivered_xids or f.at > t:
                    continue
                xid = f.xid if f.kind == "xid" else (79 if f.kind == "lost" else 0)
                if xid and f.gpu in registered:
                    self._delivered_xids.add(n)
                    return SimpleNamespace(device=registered[f.gpu], eventType=_nvml.nvmlEventTypeXidCriticalError,
                                           eventData=xid, gpuInstanceId=_NA_ID, computeInstanceId=_NA_ID)
            if time.monotonic() >= deadline:
                raise _nvml.NVMLError(_nvml.NVML_ERROR_TIMEOUT)
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def nvmlEventSetWait(self, event_set: SimpleNamespace, timeout_ms: int) -> SimpleNamespace:
        return self.nvmlEventSetWait_v2(event_set, timeout_ms)


def m_slices(gpu: GpuSpec, mig: MigInstanceSpec) -> int:
    return gpu.mig_profiles.get(mig.profile, {}).get("slices", 1)
