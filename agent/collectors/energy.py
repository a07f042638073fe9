"""Energy families: each container's part of its GPU's energy and power, the rest no pod
could take, and the idle floor the split used (gpulse.accounts keeps the totals).

A value not known is omitted: a GPU without energy or power readings has no energy series.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector


def collect(snapshot: Snapshot) -> Iterator[Family]:
    energy = catalog.family("gpulse_pod_gpu_energy_joules_total")
    power = catalog.family("gpulse_pod_gpu_power_watts")
    for a in snapshot.pod_accounts:
        energy.add(a.labels, a.energy_joules)
        power.add(a.labels, a.power_watts)
    yield energy
    yield power

    unattributed = catalog.family("gpulse_gpu_unattributed_energy_joules_total")
    idle = catalog.family("gpulse_gpu_idle_power_watts")
    for g in snapshot.gpu_accounts:
        unattributed.add((str(g.gpu), g.uuid), g.unattributed_energy_joules)
        if g.idle_power_estimate:
            idle.add((str(g.gpu), g.uuid, g.idle_power_estimate), g.idle_power_watts)
    yield unattributed
    yield idle


COLLECTOR = FunctionCollector("energy", (
    "gpulse_pod_gpu_energy_joules_total", "gpulse_pod_gpu_power_watts",
    "gpulse_gpu_unattributed_energy_joules_total", "gpulse_gpu_idle_power_watts"), collect)
