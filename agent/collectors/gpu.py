"""Device families: one sample per GPU per catalog family with a known value.

Data-driven from the catalog: a family whose labels are (gpu, uuid) takes its value from
GpuState.values; one with an extra label takes {extra labels: value} from GpuState.labeled.
A value NVML could not give is absent and its sample omitted, never NaN.
"""

from __future__ import annotations

from .. import catalog

NAME = "gpu"
_SPECS = tuple(s for s in catalog.for_collector(NAME) if s.name != "gpulse_gpu_up")


def collect(snapshot, config):
    up = catalog.family("gpulse_gpu_up")
    for g in snapshot.gpus:
        up.add((str(g.index), g.uuid), 1.0 if g.up else 0.0)
    yield up
    for spec in _SPECS:
        fam = catalog.family(spec.name)
        extra = len(spec.labels) > 2
        for g in snapshot.gpus:
            base = (str(g.index), g.uuid)
            if extra:
                for labels, value in g.labeled.get(spec.name, {}).items():
                    fam.add(base + labels, value)
            else:
                fam.add(base, g.values.get(spec.name))
        yield fam
