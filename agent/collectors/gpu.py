"""Device families: gpulse_gpu_up, then one sample per GPU per NVML row with a known value.

Data-driven from the rows (gpulse.nvml.metrics): a family with no extra label takes its
value from GpuState.values; one with an extra label takes {extra labels: value} from
GpuState.labeled. A value NVML could not give is absent and its sample omitted, never NaN.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..family import Family
from ..nvml.metrics import DEVICE_METRICS
from ..snapshot import Snapshot
from .base import FunctionCollector

_ROWS = tuple((r.family, bool(r.label)) for r in DEVICE_METRICS)


def collect(snapshot: Snapshot) -> Iterator[Family]:
    up = catalog.family("gpulse_gpu_up")
    for g in snapshot.gpus:
        up.add((str(g.index), g.uuid), 1.0 if g.up else 0.0)
    yield up
    for name, labeled in _ROWS:
        fam = catalog.family(name)
        for g in snapshot.gpus:
            base = (str(g.index), g.uuid)
            if labeled:
                for labels, value in g.labeled.get(name, {}).items():
                    fam.add(base + labels, value)
            else:
                fam.add(base, g.values.get(name))
        yield fam


COLLECTOR = FunctionCollector("gpu", ("gpulse_gpu_up",) + tuple(n for n, _ in _ROWS), collect)
