"""Running totals per pod and GPU: energy, power, idle-allocated time and cost.

Contract: Accounts(prices, ...).update(now, reading, gpus, migs, pods, activity, identity)
-> (tuple[PodAccount], tuple[GpuAccount]), called once per tick by the sampler after
attribution. `activity` is the attributor's per-tick split of each shared unit
(Attributor.tick_activity); `gpus`/`migs` are the windowed device values.

- Energy: each GPU's energy this tick is split by gpulse.energy.split between the pods on it
  (allocation for the idle floor, activity for the rest); what no pod can take accrues to
  the GPU's unattributed counter, so pods + unattributed add up to the GPU's counter.
- Idle-allocated time: a pod's unit counts as idle in a tick when its utilization (the
  windowed value gpulse_pod_gpu_utilization_ratio shows) divided by what it was allocated
  stays under --cost.idle-threshold; it accrues seconds x allocated.
- Cost: seconds x the GPU's price per hour x the pod's fraction of the GPU, by allocation
  (--cost.basis=allocation, the norm) or by its share of the GPU's energy this tick.

Counters only grow: a pod's totals live here while the pod holds the unit and are dropped
the tick it is gone (its series vanish; a pod that comes back starts from zero, which
Prometheus reads as a counter reset). Across a gap between ticks longer than max_gap (the
agent was not watching) time and cost accrue nothing and the GPU's energy goes unattributed.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .catalog import POD
from .energy import Claim, IdleFloor, split
from .identity.tables import tables
from .nvml.reading import MIG_UTILIZATION, NvmlReading
from .pricing import Price, PriceTable, pricing_kind
from .snapshot import GpuAccount, GpuState, MigState, PodAccount, PodShare

if TYPE_CHECKING:
    from .attribution import TickActivity
    from .identity.records import GpuRecord
    from .identity.resolver import IdentityView
    from .windowing import UnitKey

ENERGY = "gpulse_gpu_energy_joules_total"
POWER = "gpulse_gpu_power_watts"
MIG_SLICES = 7  # compute slices of every MIG-capable part but the A30 (whose table says 4)
_GI_SLICES = re.compile(r"(\d+)g\.")  # "3g.40gb", "1c.3g.40gb", "1g.10gb+me" -> GPU-instance slices

AccountKey = tuple[str, ...]  # the values of catalog.POD


_POD_VALUES = operator.attrgetter(*POD)  # PodShare has a field for every label (test_accounts checks)


def pod_labels(share: PodShare) -> AccountKey:
    """The label values of a pod series, in catalog.POD order."""
    return tuple(map(str, _POD_VALUES(share)))


def instance_slices(profile: str) -> Optional[int]:
    m = _GI_SLICES.search(profile)
    return int(m.group(1)) if m else None


@functools.lru_cache(maxsize=64)
def gpu_slices(sku: str) -> int:
    """Compute slices of a MIG GPU of this SKU, from the identity tables' MIG profiles."""
    t = tables()
    row = t.skus.get(sku)
    table = t.mig.get(row.mig_table) if row is not None and row.mig_table else None
    if table is not None and table.profiles:
        return max(p.slices for p in table.profiles.values())
    return MIG_SLICES


@dataclass
class _PodTotals:
    energy: float = 0.0
    idle_seconds: float = 0.0
    idle_known: bool = False  # utilization was known at least once: idle time means something
    cost: float = 0.0


@dataclass
class _GpuTotals:
    tick: int = -1  # the update that last read the GPU's energy counter (or its power, without one)
    t: float = 0.0
    counter: Optional[float] = None  # its last energy counter reading
    unattributed: float = 0.0
    has_energy: bool = False  # energy or power has been readable: the energy series mean something


class Accounts:
    def __init__(self, prices: PriceTable, *, idle_threshold: float = 0.05, basis: str = "allocation",
                 pricing_kind_setting: str = "auto",
                 node_labels: Optional[Callable[[], Mapping[str, str]]] = None, max_gap: float = 30.0) -> None:
        self.prices = prices
        self.idle_threshold = idle_threshold
        self.basis = basis
        self.pricing_kind_setting = pricing_kind_setting
        self.node_labels = node_labels
        self.max_gap = max_gap
        self.floor = IdleFloor()
        self._tick = 0
        self._last: Optional[float] = None
        self._pods: dict[AccountKey, _PodTotals] = {}
        self._gpus: dict[str, _GpuTotals] = {}

    # --- the tick -------------------------------------------------------------------------
    def update(self, now: float, reading: NvmlReading, gpus: tuple[GpuState, ...], migs: tuple[MigState, ...],
               pods: tuple[PodShare, ...], activity: Mapping[UnitKey, TickActivity],
               identity: Optional[IdentityView]) -> tuple[tuple[PodAccount, ...], tuple[GpuAccount, ...]]:
        self._tick += 1
        elapsed = now - self._last if self._last is not None else 0.0
        dt = elapsed if 0.0 < elapsed <= self.max_gap else 0.0  # seconds that accrue time and cost
        self._last = now
        records = identity.gpus if identity is not None else {}
        cloud = identity.node.cloud if identity is not None else ""
        kind = pricing_kind(self.pricing_kind_setting, self.node_labels() if self.node_labels else {})

        labels = [pod_labels(s) for s in pods]  # once per share: the key of its totals and series
        by_gpu: dict[str, tuple[list[PodShare], list[AccountKey]]] = {}
        for s, key in zip(pods, labels, strict=True):
            shares_keys = by_gpu.setdefault(s.uuid, ([], []))
            shares_keys[0].append(s)
            shares_keys[1].append(key)
        raw_util = {d.uuid: d.utilization for d in reading.devices}
        mig = _mig_instances(reading, migs)

        energy_parts: dict[AccountKey, float] = {}
        power_parts: dict[AccountKey, float] = {}
        fractions: dict[AccountKey, float] = {}  # the pod's fraction of its GPU (cost by allocation)
        energy_fraction: dict[AccountKey, float] = {}  # the pod's share of the GPU's energy this tick
        gpu_out: list[GpuAccount] = []
        for g in gpus:
            record = records.get(g.uuid)
            shares, keys = by_gpu.get(g.uuid, ([], []))
            claims, rest, gpu_activity = self._claims(g, shares, record, raw_util.get(g.uuid), mig, activity)
            for key, c in zip(keys, claims, strict=True):
                fractions[key] = c.allocation
            totals = self._gpus.setdefault(g.uuid, _GpuTotals())
            power = g.values.get(POWER) if g.up else None
            if power is not None and power <= 0.0:
                power = None  # a powered GPU never draws 0 W: a sensor not ready, as IdleFloor reads it
            self.floor.observe(g.uuid, power, gpu_activity)
            estimate = self.floor.estimate(g.uuid)
            floor_watts = estimate[0] if estimate is not None else 0.0
            delta, seconds, splittable = self._energy_delta(g, totals, now, power)
            if delta is not None and not splittable:
                totals.unattributed += delta
            elif delta is not None:
                parts, left = split(delta, floor_watts * seconds, claims, rest)
                totals.unattributed += left
                for key, part in zip(keys, parts, strict=True):
                    energy_parts[key] = part
                    energy_fraction[key] = part / delta if delta > 0 else 0.0
            if power is not None:
                parts, _ = split(power, floor_watts, claims, rest)
                for key, part in zip(keys, parts, strict=True):
                    power_parts[key] = part
            price = _price(self.prices, record, cloud, kind)
            gpu_out.append(GpuAccount(
                g.index, g.uuid,
                unattributed_energy_joules=totals.unattributed if totals.has_energy else None,
                idle_power_watts=estimate[0] if estimate is not None else None,
                idle_power_estimate=estimate[1] if estimate is not None else "",
                **(_price_fields(price, cloud) if price is not None else {})))
        live_gpus = {g.uuid for g in gpus}
        for uuid in [u for u in self._gpus if u not in live_gpus]:
            del self._gpus[uuid]
        self.floor.retain(live_gpus)
        prices = {a.uuid: a.price_per_hour for a in gpu_out}
        return self._pod_accounts(pods, labels, dt, energy_parts, power_parts, fractions, energy_fraction, prices), \
            tuple(gpu_out)

    # --- one GPU ----------------------------------------------------------------------------
    def _claims(self, g: GpuState, shares: list[PodShare], record: Optional[GpuRecord], util: Optional[float],
                mig: Mapping[tuple[int, int], tuple[Optional[float], int]],
                activity: Mapping[UnitKey, TickActivity]
                ) -> tuple[list[Claim], Optional[float], Optional[float]]:
        """(claims, activity no claim can take (None: unknown), the GPU's activity)."""
        if g.mig_enabled or any(s.mig_uuid for s in shares):
            return _mig_claims(g.index, shares, gpu_slices(record.sku if record is not None else ""), mig)
        util = min(max(util, 0.0), 1.0) if util is not None else None
        unit = activity.get(("gpu", g.index))  # this tick's split of a shared GPU
        claims: list[Claim] = []
        for s in shares:
            if s.sharing == "exclusive":
                claims.append(Claim(s.allocated, util or 0.0))
            else:
                claims.append(Claim(s.allocated, unit[0].get((s.namespace, s.pod, s.container), 0.0)
                                    if unit is not None else 0.0))
        rest: Optional[float]
        if not shares:
            rest = util  # nobody holds the GPU: whatever ran is nobody's
        elif any(s.sharing != "exclusive" for s in shares):
            rest = unit[1] if unit is not None else None
        else:
            rest = 0.0 if util is not None else None
        return claims, rest, util

    def _energy_delta(self, g: GpuState, totals: _GpuTotals, now: float,
                      power: Optional[float]) -> tuple[Optional[float], float, bool]:
        """(joules since the last reading, the seconds they cover, whether this tick's claims
        may split them). A GPU with an energy counter is accounted by its counter alone: a
        tick without a reading accrues nothing and the next reading covers it; energy across
        a gap the agent did not watch (NVML down, the agent paused) is the GPU's but no pod's.
        A GPU without a counter accrues power x seconds between consecutive ticks."""
        counter = g.values.get(ENERGY) if g.up else None
        seconds = now - totals.t
        watched = 0.0 < seconds <= self.max_gap
        if counter is not None or totals.counter is not None:
            if counter is None:
                return None, 0.0, False
            delta = counter - totals.counter if totals.counter is not None and counter >= totals.counter else None
            totals.tick, totals.t, totals.counter, totals.has_energy = self._tick, now, counter, True
            return delta, seconds, watched  # None: the first reading, or a driver reload reset it
        if power is None:
            return None, 0.0, False
        consecutive = watched and totals.tick == self._tick - 1
        totals.tick, totals.t, totals.has_energy = self._tick, now, True
        return (power * seconds if consecutive else None), seconds, True

    # --- per pod ------------------------------------------------------------------------------
    def _pod_accounts(self, pods: tuple[PodShare, ...], labels: list[AccountKey], dt: float,
                      energy: Mapping[AccountKey, float],
                      power: Mapping[AccountKey, float], fractions: Mapping[AccountKey, float],
                      energy_fraction: Mapping[AccountKey, float],
                      prices: Mapping[str, Optional[float]]) -> tuple[PodAccount, ...]:
        out: list[PodAccount] = []
        live: set[AccountKey] = set()
        for s, key in zip(pods, labels, strict=True):
            if key in live:
                continue  # one series per label set, as the pods collector renders it
            live.add(key)
            totals = self._pods.get(key)
            if totals is None:
                totals = self._pods[key] = _PodTotals()
            totals.energy += energy.get(key, 0.0)
            if s.utilization is not None and s.allocated > 0:
                totals.idle_known = True
                if s.utilization / s.allocated < self.idle_threshold:
                    totals.idle_seconds += dt * s.allocated
            price = prices.get(s.uuid)
            if price is not None:
                share = energy_fraction.get(key, 0.0) if self.basis == "energy" else fractions.get(key, 0.0)
                totals.cost += price * share * dt / 3600.0
            gpu = self._gpus.get(s.uuid)
            has_energy = gpu is not None and gpu.has_energy
            out.append(PodAccount(key, energy_joules=totals.energy if has_energy else None,
                                  power_watts=power.get(key),
                                  idle_seconds=totals.idle_seconds if totals.idle_known else None,
                                  cost=totals.cost if price is not None else None))
        for key in [k for k in self._pods if k not in live]:
            del self._pods[key]
        return tuple(out)


def _price(prices: PriceTable, record: Optional[GpuRecord], cloud: str, kind: str) -> Optional[Price]:
    if record is None or record.unknown or record.virtualization == "vgpu":
        return None  # an unknown part or a vGPU slice has no list price of its own
    return prices.lookup(record.sku, record.model, cloud, kind)


def _price_fields(price: Price, cloud: str) -> dict[str, Any]:
    """GpuAccount's price fields from the row (a GPU without one keeps their defaults)."""
    return {"price_per_hour": price.per_gpu_hour, "price_key": price.sku or price.model, "cloud": cloud,
            "pricing_kind": price.kind, "currency": price.currency, "price_region": price.region,
            "price_source": price.source, "price_as_of": price.as_of}


def _mig_claims(gpu: int, shares: list[PodShare], total: int,
                mig: Mapping[tuple[int, int], tuple[Optional[float], int]]
                ) -> tuple[list[Claim], Optional[float], Optional[float]]:
    """Claims on a MIG GPU: an instance of n slices is n/total of the GPU, its activity counts
    in that proportion, and several holders of one instance split it by what they hold.
    Returns (claims, activity of instances nobody holds, the GPU's activity); both None when
    an instance's activity is unknown."""
    instances = {gi: v for (g, gi), v in mig.items() if g == gpu}
    known = all(a is not None for a, _ in instances.values())
    claims: list[Claim] = []
    held: set[int] = set()
    for s in shares:
        gi = int(s.gpu_instance) if s.gpu_instance.isdigit() else -1
        held.add(gi)
        a, n = instances.get(gi, (None, instance_slices(s.mig_profile) or 1))
        if a is None:
            known = False
        fraction = n / total * s.allocated
        claims.append(Claim(fraction, (a or 0.0) * fraction))
    if not known or not instances:
        return claims, None, None
    busy = sum((a or 0.0) * n / total for a, n in instances.values())
    rest = sum((a or 0.0) * n / total for gi, (a, n) in instances.items() if gi not in held)
    return claims, rest, busy


def _mig_instances(reading: NvmlReading, migs: tuple[MigState, ...]
                   ) -> dict[tuple[int, int], tuple[Optional[float], int]]:
    """(gpu, gpu instance) -> (this tick's activity, its slices). Activity is GPM's reading,
    else the windowed value (a co-located dcgm-exporter's, refreshed on its own cadence), else
    None."""
    windowed = {(m.gpu, m.gpu_instance): m.values.get(MIG_UTILIZATION) for m in migs}
    out: dict[tuple[int, int], tuple[Optional[float], int]] = {}
    for m in reading.migs:
        v = m.utilization
        if v is None:
            v = windowed.get((m.gpu, m.gpu_instance))
        out[(m.gpu, m.gpu_instance)] = (min(max(v, 0.0), 1.0) if v is not None else None,
                                        instance_slices(m.profile) or 1)
    return out
