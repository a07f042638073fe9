"""Rolling windows over the NVML rows: this tick's raw values -> the values a scrape shows.

A row's `window` says what is published: "last" (the value as read), "mean" (mean over
--collect.window) or "max" (the maximum of another row's observations). This is the one
place utilization is windowed and the one place a MIG instance's activity falls back to a
co-located dcgm-exporter when NVML has no GPM; attribution reads the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Optional, Union

from . import kernels
from .config import WINDOW_SAMPLES
from .nvml.metrics import DEVICE_METRICS, MIG_METRICS, MIG_UTILIZATION
from .nvml.reading import NvmlReading
from .snapshot import GpuState, MigState

_XID = "gpulse_gpu_xid_errors_total"
_GPU_MEAN = tuple(r.family for r in DEVICE_METRICS if r.window == "mean")
_GPU_MAX = tuple((r.family, r.of) for r in DEVICE_METRICS if r.window == "max")
_MIG_MEAN = tuple(r.family for r in MIG_METRICS if r.window == "mean")

UnitKey = Union[tuple[str, int], tuple[str, int, int]]  # ("gpu", index) | ("mig", index, gpu_instance)
WindowKey = Union[tuple[str, int], tuple[str, int, int]]  # (family, index) | (family, gpu, gpu_instance)
MigActivity = Mapping[tuple[str, Optional[int]], float]  # (parent uuid, gpu instance) -> ratio


class DeviceWindows:
    def __init__(self, window_seconds: float, capacity: int = WINDOW_SAMPLES) -> None:
        self._windows = kernels.WindowSet(window_seconds, capacity=capacity)

    def apply(self, reading: NvmlReading, now: float, mig_activity: Optional[MigActivity] = None
              ) -> tuple[tuple[GpuState, ...], tuple[MigState, ...]]:
        w = self._windows
        live: list[WindowKey] = []
        gpus: list[GpuState] = []
        for d in reading.devices:
            values = dict(d.values)
            for family in _GPU_MEAN:
                key: WindowKey = (family, d.index)
                live.append(key)
                raw = values.pop(family, None)
                if raw is not None:
                    w.observe(key, now, raw)
                if d.up:
                    mean = w.mean(key, now)
                    if mean is not None:
                        values[family] = mean
            for family, of in _GPU_MAX:
                peak = w.max((of, d.index), now) if d.up else None
                if peak is not None:
                    values[family] = peak
            labeled = d.labeled if d.up else {k: v for k, v in d.labeled.items() if k == _XID}
            gpus.append(GpuState(d.index, d.uuid, d.name, d.pci_bus_id, d.up, d.mig_enabled,
                                 MappingProxyType(values if d.up else {}),
                                 MappingProxyType({k: MappingProxyType(dict(v)) for k, v in labeled.items()}),
                                 d.facts))
        migs: list[MigState] = []
        for m in reading.migs:
            values = dict(m.values)
            for family in _MIG_MEAN:
                key = (family, m.gpu, m.gpu_instance)
                live.append(key)
                raw = values.pop(family, None)
                if raw is None and family == MIG_UTILIZATION and mig_activity:
                    raw = mig_activity.get((m.uuid, m.gpu_instance))
                if raw is not None:
                    w.observe(key, now, raw)
                mean = w.mean(key, now)
                if mean is not None:
                    values[family] = mean
            migs.append(MigState(m.gpu, m.uuid, m.gpu_instance, m.compute_instance, m.profile, m.mig_uuid,
                                 MappingProxyType(values)))
        w.retain(live)
        return tuple(gpus), tuple(migs)


def unit_utilization(gpus: tuple[GpuState, ...], migs: tuple[MigState, ...]) -> dict[UnitKey, float]:
    """Windowed utilization per attribution unit: a whole GPU, or a MIG instance."""
    out: dict[UnitKey, float] = {}
    for g in gpus:
        v = g.values.get("gpulse_gpu_utilization_ratio")
        if v is not None:
            out[("gpu", g.index)] = v
    for m in migs:
        v = m.values.get(MIG_UTILIZATION)
        if v is not None:
            out[("mig", m.gpu, m.gpu_instance)] = v
    return out
