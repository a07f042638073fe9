"""Every device and MIG metric as one declarative row: family, NVML source, windowing.

A row is the whole story of a metric: its catalog entry (type, unit, help, labels), where
NVML has the value (a call with its arguments, a batched field with scale and scope, a GPM
metric, a bitmask or a tuple), how the sampler windows it, and which scenario knob makes the
simulator answer NOT_SUPPORTED. The reader, the catalog, `gpulse check` and the fake NVML all
derive from these rows, so adding a metric is adding a row (and its test).

NVML constants are named as strings: this module does not import pynvml, so the catalog can
read it anywhere; the reader resolves the names against the library it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Union

from .reading import MIG_UTILIZATION, UTILIZATION

__all__ = ["MIG_UTILIZATION", "UTILIZATION"]  # the families windowing and attribution key on

Window = Literal["last", "mean", "max"]
GPU_LABELS = ("gpu", "uuid")
MIG_LABELS = ("gpu", "uuid", "gpu_instance", "compute_instance", "mig_profile", "mig_uuid")

# NVLink throughput fields take a link index as scope; this scope asks for the sum over all
# links on drivers that support it (nvml.h, "NVLink throughput counters field values").
ALL_LINKS_SCOPE = 0xFFFFFFFF


@dataclass(frozen=True)
class Call:
    """value = getattr-or-index(function(handle, *args), pick) * scale."""
    function: str
    args: tuple[str, ...] = ()  # NVML constant names passed after the handle
    pick: Union[str, int, None] = None  # result attribute or index; None: the result itself
    scale: float = 1.0
    sim: str = ""  # scenario knob that makes the fake answer NOT_SUPPORTED

    @cached_property
    def factor(self) -> tuple[bool, float]:
        return _factor(self.scale)

    @cached_property
    def key(self) -> str:
        """What `unsupported` is remembered by: the function and its arguments."""
        return f"{self.function}({', '.join(self.args)})" if self.args else self.function

    def describe(self) -> str:
        pick = f".{self.pick}" if isinstance(self.pick, str) else f"[{self.pick}]" if self.pick is not None else ""
        return self.key + pick


@dataclass(frozen=True)
class Field:
    """A field of the batched nvmlDeviceGetFieldValues call, times scale.

    scope "device" asks scope 0; "links" sums the field over every NVLink (the all-links
    scope where the driver answers it, else each active link)."""
    const: str  # NVML_FI_*
    scale: float = 1.0
    scope: Literal["device", "links"] = "device"
    sim: str = ""

    @cached_property
    def factor(self) -> tuple[bool, float]:
        return _factor(self.scale)

    @cached_property
    def key(self) -> str:
        return f"field {self.const}" + (" (all links)" if self.scope == "links" else "")

    def describe(self) -> str:
        return self.const + (" summed over NVLinks" if self.scope == "links" else "")

    @cached_property
    def short(self) -> str:
        """The name errors are counted under: nvmlDeviceGetFieldValues:<short>."""
        return self.const.removeprefix("NVML_FI_DEV_").lower()


@dataclass(frozen=True)
class LabeledFields:
    """Several fields into one family, one label value each (ECC by type)."""
    fields: tuple[tuple[str, Field], ...]  # (label value, field)

    @cached_property
    def key(self) -> str:
        return " / ".join(f.key for _, f in self.fields)

    def describe(self) -> str:
        return " / ".join(f.const for _, f in self.fields)


@dataclass(frozen=True)
class Gpm:
    """A GPM metric (Hopper+), percent -> ratio, from this tick's sample and the previous one."""
    metric: str  # NVML_GPM_METRIC_*
    sim: str = "gpm"

    @cached_property
    def key(self) -> str:
        return f"gpm {self.metric}"

    def describe(self) -> str:
        return f"nvmlGpmMetricsGet {self.metric.removeprefix('NVML_GPM_METRIC_')}"


@dataclass(frozen=True)
class Flags:
    """A bitmask: one labeled sample per bit, 1 when set."""
    function: str
    bits: tuple[tuple[str, str], ...]  # (label value, NVML constant)
    sim: str = ""

    @cached_property
    def key(self) -> str:
        return self.function

    def describe(self) -> str:
        return self.function


@dataclass(frozen=True)
class Parts:
    """A tuple result: one labeled sample per element."""
    function: str
    labels: tuple[str, ...]
    sim: str = ""

    @cached_property
    def key(self) -> str:
        return self.function

    def describe(self) -> str:
        return self.function


@dataclass(frozen=True)
class Events:
    """Counted from NVML events on the reader's own thread, not read per tick."""
    what: str

    @cached_property
    def key(self) -> str:
        return self.what

    def describe(self) -> str:
        return self.what


Read = Union[Call, Field, LabeledFields, Gpm, Flags, Parts, Events]


def _factor(scale: float) -> tuple[bool, float]:
    """(divide, amount): dividing by the integer 1/scale where there is one, so 70 percent
    is 0.7 and 36800 mW is 36.8 W (not 0.7000000000000001)."""
    if 0 < scale < 1:
        inverse = round(1 / scale)
        if abs(inverse * scale - 1) < 1e-12:
            return True, float(inverse)
    return False, scale


def scaled(value: float, scale: float) -> float:
    """value * scale, exactly where scale is 1/integer (see _factor)."""
    divide, amount = _factor(scale)
    return value / amount if divide else value * amount


@dataclass(frozen=True)
class DeviceMetric:
    family: str
    type: Literal["gauge", "counter"]
    unit: str  # base unit, "" when dimensionless
    help: str
    reads: tuple[Read, ...]  # the first that answers wins (fallbacks follow the preferred read)
    label: str = ""  # the extra label of a labeled family (reason, type, state, xid)
    window: Window = "last"  # mean / max over --collect.window, or the last value
    of: str = ""  # window "max": the family whose observations it takes the maximum of
    on_mig: bool = True  # also asked while MIG is enabled (utilization is not)
    scope: Literal["gpu", "mig"] = "gpu"
    stability: Literal["stable", "experimental"] = "stable"

    @property
    def labels(self) -> tuple[str, ...]:
        base = MIG_LABELS if self.scope == "mig" else GPU_LABELS
        return base + ((self.label,) if self.label else ())

    @property
    def source(self) -> str:
        if self.of:
            return f"window maximum of {self.of}"
        return " / ".join(r.describe() for r in self.reads)


# Clock event (throttle) reasons, gpulse_gpu_clock_event_active{reason}; the names follow
# dcgm-exporter's DCGM_FI_DEV_CLOCK_THROTTLE_REASONS documentation, snake_cased. The one table
# for them: the simulator and the dcgm-exporter view read it from here.
CLOCK_EVENT_REASONS: tuple[tuple[str, str], ...] = (
    ("gpu_idle", "nvmlClocksEventReasonGpuIdle"),
    ("applications_clocks_setting", "nvmlClocksEventReasonApplicationsClocksSetting"),
    ("sw_power_cap", "nvmlClocksEventReasonSwPowerCap"),
    ("hw_slowdown", "nvmlClocksEventReasonHwSlowdown"),
    ("sync_boost", "nvmlClocksEventReasonSyncBoost"),
    ("sw_thermal_slowdown", "nvmlClocksEventReasonSwThermalSlowdown"),
    ("hw_thermal_slowdown", "nvmlClocksEventReasonHwThermalSlowdown"),
    ("hw_power_brake_slowdown", "nvmlClocksEventReasonHwPowerBrakeSlowdown"),
    ("display_clock_setting", "nvmlClocksEventReasonDisplayClockSetting"),
)

_UTIL = Call("nvmlDeviceGetUtilizationRates", pick="gpu", scale=0.01, sim="utilization")

DEVICE_METRICS: tuple[DeviceMetric, ...] = (
    DeviceMetric("gpulse_gpu_utilization_ratio", "gauge", "ratio",
                 "Fraction of time a kernel ran on the GPU, mean over the window.",
                 (_UTIL,), window="mean", on_mig=False),
    DeviceMetric("gpulse_gpu_utilization_max_ratio", "gauge", "ratio",
                 "Highest GPU utilization sample within the window.",
                 (), window="max", of="gpulse_gpu_utilization_ratio", on_mig=False),
    DeviceMetric("gpulse_gpu_memory_utilization_ratio", "gauge", "ratio",
                 "Fraction of time device memory was read or written, mean over the window.",
                 (Call("nvmlDeviceGetUtilizationRates", pick="memory", scale=0.01, sim="utilization"),),
                 window="mean", on_mig=False),
    DeviceMetric("gpulse_gpu_memory_used_bytes", "gauge", "bytes", "Device memory in use.",
                 (Call("nvmlDeviceGetMemoryInfo", pick="used", sim="memory"),)),
    DeviceMetric("gpulse_gpu_memory_total_bytes", "gauge", "bytes", "Device memory installed, as reported.",
                 (Call("nvmlDeviceGetMemoryInfo", pick="total", sim="memory"),)),
    DeviceMetric("gpulse_gpu_power_watts", "gauge", "watts", "Power draw.",
                 (Field("NVML_FI_DEV_POWER_INSTANT", 1e-3, sim="power_instant"),
                  Call("nvmlDeviceGetPowerUsage", scale=1e-3, sim="power"))),
    DeviceMetric("gpulse_gpu_power_limit_watts", "gauge", "watts", "Enforced power limit.",
                 (Call("nvmlDeviceGetEnforcedPowerLimit", scale=1e-3, sim="power_limit"),)),
    DeviceMetric("gpulse_gpu_energy_joules_total", "counter", "joules", "Energy consumed since the driver was loaded.",
                 (Field("NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3, sim="energy"),
                  Call("nvmlDeviceGetTotalEnergyConsumption", scale=1e-3, sim="energy"))),
    DeviceMetric("gpulse_gpu_temperature_celsius", "gauge", "celsius", "GPU core temperature.",
                 (Call("nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",), sim="temperature"),)),
    DeviceMetric("gpulse_gpu_memory_temperature_celsius", "gauge", "celsius", "HBM temperature.",
                 (Field("NVML_FI_DEV_MEMORY_TEMP", sim="memory_temperature"),)),
    DeviceMetric("gpulse_gpu_sm_clock_hertz", "gauge", "hertz", "Current SM clock.",
                 (Call("nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",), scale=1e6, sim="clocks"),)),
    DeviceMetric("gpulse_gpu_sm_clock_max_hertz", "gauge", "hertz",
                 "Highest SM clock the GPU supports; a busy GPU below it is held back (see clock_event_active).",
                 (Call("nvmlDeviceGetMaxClockInfo", ("NVML_CLOCK_SM",), scale=1e6, sim="clocks"),)),
    DeviceMetric("gpulse_gpu_memory_clock_hertz", "gauge", "hertz", "Current memory clock.",
                 (Call("nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",), scale=1e6, sim="clocks"),)),
    DeviceMetric("gpulse_gpu_fan_speed_ratio", "gauge", "ratio", "Fan speed as a fraction of its maximum.",
                 (Call("nvmlDeviceGetFanSpeed", scale=0.01, sim="fan"),)),
    DeviceMetric("gpulse_gpu_encoder_utilization_ratio", "gauge", "ratio", "Video encoder utilization.",
                 (Call("nvmlDeviceGetEncoderUtilization", pick=0, scale=0.01, sim="encoder"),)),
    DeviceMetric("gpulse_gpu_decoder_utilization_ratio", "gauge", "ratio", "Video decoder utilization.",
                 (Call("nvmlDeviceGetDecoderUtilization", pick=0, scale=0.01, sim="decoder"),)),
    DeviceMetric("gpulse_gpu_tensor_active_ratio", "gauge", "ratio",
                 "Fraction of time the SMs ran tensor-core operations (GPM, Hopper+).",
                 (Gpm("NVML_GPM_METRIC_ANY_TENSOR_UTIL"),), on_mig=False),
    DeviceMetric("gpulse_gpu_dram_active_ratio", "gauge", "ratio",
                 "Device memory bandwidth used, as a fraction of the maximum (GPM, Hopper+).",
                 (Gpm("NVML_GPM_METRIC_DRAM_BW_UTIL"),), on_mig=False),
    DeviceMetric("gpulse_gpu_sm_occupancy_ratio", "gauge", "ratio",
                 "Resident warps as a fraction of the maximum (GPM, Hopper+).",
                 (Gpm("NVML_GPM_METRIC_SM_OCCUPANCY"),), on_mig=False),
    DeviceMetric("gpulse_gpu_clock_event_active", "gauge", "", "1 while a clock event (throttle) reason is active.",
                 (Flags("nvmlDeviceGetCurrentClocksEventReasons", CLOCK_EVENT_REASONS, sim="clock_events"),),
                 label="reason"),
    DeviceMetric("gpulse_gpu_ecc_errors_total", "counter", "", "ECC errors since the last counter reset, by type.",
                 (LabeledFields((("correctable", Field("NVML_FI_DEV_ECC_SBE_AGG_TOTAL", sim="ecc")),
                                 ("uncorrectable", Field("NVML_FI_DEV_ECC_DBE_AGG_TOTAL", sim="ecc")))),),
                 label="type"),
    DeviceMetric("gpulse_gpu_remapped_rows", "gauge", "",
                 "Remapped memory rows by state (correctable, uncorrectable, pending, failure).",
                 (Parts("nvmlDeviceGetRemappedRows", ("correctable", "uncorrectable", "pending", "failure"),
                        sim="remapped_rows"),), label="state"),
    DeviceMetric("gpulse_gpu_xid_errors_total", "counter", "", "XID errors seen since the agent started, by XID code.",
                 (Events("nvmlEventSetWait (XID critical errors)"),), label="xid"),
    DeviceMetric("gpulse_gpu_pcie_tx_bytes_total", "counter", "bytes", "Bytes sent over PCIe.",
                 (Field("NVML_FI_DEV_PCIE_COUNT_TX_BYTES", sim="pcie_bytes"),)),
    DeviceMetric("gpulse_gpu_pcie_rx_bytes_total", "counter", "bytes", "Bytes received over PCIe.",
                 (Field("NVML_FI_DEV_PCIE_COUNT_RX_BYTES", sim="pcie_bytes"),)),
    DeviceMetric("gpulse_gpu_pcie_replay_errors_total", "counter", "", "PCIe replay events.",
                 (Field("NVML_FI_DEV_PCIE_REPLAY_COUNTER", sim="pcie_replay"),)),
    DeviceMetric("gpulse_gpu_nvlink_tx_bytes_total", "counter", "bytes", "Data bytes sent over all NVLinks.",
                 (Field("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", 1024.0, "links", sim="nvlink"),)),
    DeviceMetric("gpulse_gpu_nvlink_rx_bytes_total", "counter", "bytes", "Data bytes received over all NVLinks.",
                 (Field("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", 1024.0, "links", sim="nvlink"),)),
)

MIG_METRICS: tuple[DeviceMetric, ...] = (
    DeviceMetric("gpulse_mig_utilization_ratio", "gauge", "ratio",
                 "Graphics engine activity of a MIG instance, mean over the window (GPM on Hopper+, "
                 "dcgm-exporter on A100/A30).",
                 (Gpm("NVML_GPM_METRIC_GRAPHICS_UTIL"),
                  Events("DCGM_FI_PROF_GR_ENGINE_ACTIVE (co-located dcgm-exporter)")),
                 window="mean", scope="mig"),
    DeviceMetric("gpulse_mig_memory_used_bytes", "gauge", "bytes", "Memory in use on a MIG instance.",
                 (Call("nvmlDeviceGetMemoryInfo", pick="used", sim="memory"),), scope="mig"),
    DeviceMetric("gpulse_mig_memory_total_bytes", "gauge", "bytes", "Memory of a MIG instance.",
                 (Call("nvmlDeviceGetMemoryInfo", pick="total", sim="memory"),), scope="mig"),
)

ALL_METRICS = DEVICE_METRICS + MIG_METRICS
BY_FAMILY = {m.family: m for m in ALL_METRICS}
assert len(BY_FAMILY) == len(ALL_METRICS), "duplicate family in the device metric rows"


def reads(metrics: tuple[DeviceMetric, ...] = ALL_METRICS) -> tuple[Read, ...]:
    """Every distinct read of the rows, fields of labeled reads included, in row order."""
    out: list[Read] = []
    for m in metrics:
        for r in m.reads:
            for one in (tuple(f for _, f in r.fields) if isinstance(r, LabeledFields) else (r,)):
                if one not in out:
                    out.append(one)
    return tuple(out)


def sim_knobs() -> dict[str, str]:
    """NVML function name or field constant -> the scenario knob that switches it off."""
    knobs: dict[str, str] = {}
    for r in reads():
        if isinstance(r, Field):
            if r.sim:
                knobs[r.const] = r.sim
        elif isinstance(r, (Call, Flags, Parts)) and r.sim:
            knobs.setdefault(r.function, r.sim)
    return knobs
