"""Cost families: each container's idle-allocated time and cost, and each GPU's price per
hour with the row it came from (gpulse.accounts accrues them, gpulse.pricing finds prices).

A GPU without a price row has no price series and its pods no cost series: never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector


def collect(snapshot: Snapshot) -> Iterator[Family]:
    idle = catalog.family("gpulse_pod_gpu_allocated_idle_seconds_total")
    cost = catalog.family("gpulse_pod_gpu_cost_total")
    for a in snapshot.pod_accounts:
        idle.add(a.labels, a.idle_seconds)
        cost.add(a.labels, a.cost)
    yield idle
    yield cost

    price = catalog.family("gpulse_gpu_price_per_hour")
    for g in snapshot.gpu_accounts:
        price.add((str(g.gpu), g.uuid, g.price_key, g.cloud, g.pricing_kind, g.currency, g.price_region,
                   g.price_source, g.price_as_of), g.price_per_hour)
    yield price


COLLECTOR = FunctionCollector("cost", (
    "gpulse_pod_gpu_allocated_idle_seconds_total", "gpulse_pod_gpu_cost_total", "gpulse_gpu_price_per_hour"),
    collect)
