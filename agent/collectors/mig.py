"""MIG families: one sample per MIG instance per MIG row with a known value
(MigState.values, keyed by family name). A value not known is omitted, never NaN."""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..family import Family
from ..nvml.metrics import MIG_METRICS
from ..snapshot import Snapshot
from .base import FunctionCollector

_FAMILIES = tuple(r.family for r in MIG_METRICS)


def collect(snapshot: Snapshot) -> Iterator[Family]:
    for name in _FAMILIES:
        fam = catalog.family(name)
        for m in snapshot.migs:
            fam.add((str(m.gpu), m.uuid, str(m.gpu_instance), str(m.compute_instance), m.profile, m.mig_uuid),
                    m.values.get(name))
        yield fam


COLLECTOR = FunctionCollector("mig", _FAMILIES, collect)
