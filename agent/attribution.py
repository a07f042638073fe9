"""Per-pod GPU shares from what the kubelet allocated and what NVML saw each process do.

Contract: Attributor(window_seconds).update(reading, view, now, unit_util)
-> (tuple[PodShare], {gpu index: unattributed ratio}), called once per tick by the sampler;
`unit_util` is the windowed utilization per unit (gpulse.windowing.unit_utilization).

- A unit is a whole GPU or a MIG instance. A unit held by one container is exclusive:
  that container gets the unit's windowed utilization (GPU utilization, or the MIG
  instance's GPM / dcgm-exporter activity, windowed once in gpulse.windowing) and the
  memory of the pod processes on it.
- A unit with replicas (time-slicing or MPS, `GPU-<uuid>::<n>`) is split by NVML's
  per-process SM utilization: each tick every process's share is tied to a container
  through its cgroup, the shares are scaled down when they add up to more than the
  GPU's own utilization (concurrent MPS clients), and whatever no holder can be tied
  to is unattributed. Every holder and the unattributed rest get exactly one sample
  per tick, so over the window sum(pods) + unattributed == GPU utilization: one GPU's
  value is never copied onto several pods.
- allocated is 1 per whole unit and 1/replicas per shared slot.
- DRA allocations (gpulse.kube.source.ClaimDevice) are units too, once this node's
  ResourceSlices say which GPU or MIG instance the (driver, pool, device) is
  (gpulse.claims). A device held by one container is exclusive; held by several (one
  shared claim, or several claims) it is split like a time-sliced GPU, and `allocated` is
  1/holders. Allocations that name no GPU NVML shows are counted in
  `unresolved_allocations[(allocation, driver, reason)]`.

A process's pod UID (cgroup) is joined to the kubelet's namespace/name through the
view's pod directory (the node's pod list). Without an answer from it, pods are paired
with UIDs by elimination: on a unit where exactly one not-yet-paired pod holds slots
and exactly one not-yet-paired UID runs processes, they are the same pod; repeated
until nothing changes. What stays unpaired is unattributed and counted in
`unresolved[(gpu, reason)]`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Optional, Protocol, Union

from .claims import DRA, UNKNOWN_DEVICE, count, resolve_claims
from .snapshot import PodClaim, PodShare

if TYPE_CHECKING:
    from .kube.cgroup import PidOwner
    from .kube.devices import DeviceId
    from .kube.resourceslices import SliceLookup
    from .kube.source import Allocation, PodIdentity
    from .nvml.reading import DeviceReading, MigReading, NvmlReading, ProcessInfo
    from .windowing import UnitKey

    Owners = Mapping[int, Optional[PidOwner]]  # pid -> its pod and container (None: not in a pod)

_EXCLUSIVE_PROCESS = (3, "exclusive_process", "EXCLUSIVE_PROCESS")  # NVML compute mode of an MPS GPU

# reasons a process's usage stays unattributed
NOT_IN_POD = "not_in_pod"  # host process, or its cgroup could not be read
UNKNOWN_POD = "unknown_pod_uid"  # no directory answer and elimination could not pair it
NO_SLOT = "pod_holds_no_slot"  # the pod holds no device on this GPU
AMBIGUOUS_CONTAINER = "ambiguous_container"  # several containers of the pod share the GPU

# how an allocation reached the container (the pod series' `allocation` label); DRA and the
# reasons an allocation names no GPU (unresolved_allocations) are in gpulse.claims
DEVICE_PLUGIN = "device-plugin"

HolderKey = tuple[str, str, str]  # (namespace, pod, container) holding slots of a unit
PodKey = tuple[str, str]  # (namespace, pod)
HolderShares = Mapping[HolderKey, float]
# What _holder_of finds for one process: (holder, None), or (None, why it stays unattributed).
HolderOrReason = Union[tuple[HolderKey, None], tuple[None, str]]


class AllocationView(Protocol):
    """What the attributor reads of the kubelet's view (gpulse.kube.source.PodView)."""

    @property
    def allocations(self) -> Iterable[Allocation]: ...

    @property
    def allocatable(self) -> Iterable[DeviceId]: ...

    def resolve_pid(self, pid: int) -> Optional[PidOwner]: ...

    def retain_pids(self, pids: set[int]) -> None: ...

    def pod_for_uid(self, uid: str) -> Optional[PodIdentity]: ...

    @property
    def slices(self) -> Optional[SliceLookup]: ...


class _ShareWindow:
    """Per-tick shares of one shared unit over the window, as running sums.

    Every tick adds one record; a holder absent from a record counts as 0 for that
    tick, so means of holders and of the unattributed rest share one denominator."""

    __slots__ = ("horizon", "records", "sums", "unattributed_sum")

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self.records: deque[tuple[float, HolderShares, float]] = deque()  # (t, shares, unattributed)
        self.sums: dict[HolderKey, float] = {}
        self.unattributed_sum = 0.0

    def add(self, t: float, shares: HolderShares, unattributed: float) -> None:
        self.records.append((t, shares, unattributed))
        for key, v in shares.items():
            self.sums[key] = self.sums.get(key, 0.0) + v
        self.unattributed_sum += unattributed

    def expire(self, now: float) -> None:
        cutoff = now - self.horizon
        records, sums = self.records, self.sums
        while records and records[0][0] <= cutoff:
            _, shares, unattributed = records.popleft()
            for key, v in shares.items():
                left = sums[key] - v
                sums[key] = left if left > 1e-12 else 0.0
            self.unattributed_sum = max(0.0, self.unattributed_sum - unattributed)
        if not records:
            sums.clear()
            self.unattributed_sum = 0.0

    def mean(self, key: HolderKey) -> Optional[float]:
        return self.sums.get(key, 0.0) / len(self.records) if self.records else None

    def unattributed_mean(self) -> Optional[float]:
        return self.unattributed_sum / len(self.records) if self.records else None


class _Unit:
    """One GPU or MIG instance as this tick sees it."""

    __slots__ = ("key", "gpu", "uuid", "device", "mig", "holders", "dra", "replicas", "shared")

    def __init__(self, key: UnitKey, device: DeviceReading, mig: Optional[MigReading]) -> None:
        self.key = key
        self.device = device
        self.mig = mig
        self.gpu = device.index
        self.uuid = device.uuid
        self.holders: dict[HolderKey, int] = {}  # (namespace, pod, container) -> slots held
        self.dra: set[HolderKey] = set()  # holders through a DRA claim
        self.replicas = 1
        self.shared = False

    def processes(self) -> tuple[ProcessInfo, ...]:
        return self.mig.processes if self.mig is not None else self.device.processes


class Attributor:
    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = float(window_seconds)
        self._share_windows: dict[UnitKey, _ShareWindow] = {}
        self._last_process_util: dict[UnitKey, dict[int, float]] = {}  # {pid: ratio}, held over sample-less ticks
        self.unresolved: dict[tuple[int, str], int] = {}  # (gpu index, reason) -> processes this tick
        self.uid_pairs: dict[str, PodKey] = {}  # pod uid -> (namespace, pod), this tick's join
        self._identities: dict[str, PodIdentity] = {}  # pod uid -> its identity from the directory, this tick
        self.claims: tuple[PodClaim, ...] = ()  # DRA holders' claims, this tick
        # (allocation, driver, reason) -> allocations that named no GPU this tick
        self.unresolved_allocations: dict[tuple[str, str, str], int] = {}

    # --- the tick ---------------------------------------------------------------------
    def update(self, reading: NvmlReading, view: AllocationView, now: float,
               unit_util: Optional[Mapping[UnitKey, float]] = None) -> tuple[tuple[PodShare, ...], dict[int, float]]:
        units = self._units(reading, view)
        self.unresolved = {}
        seen_pids: set[int] = set()
        for unit in units.values():
            for p in unit.processes():
                seen_pids.add(p.pid)
        owners = {pid: view.resolve_pid(pid) for pid in seen_pids}
        view.retain_pids(seen_pids)
        self.uid_pairs = self._pair_uids(units, owners, view)

        shares: list[PodShare] = []
        unattributed: dict[int, float] = {}
        live_shared: list[UnitKey] = []
        for unit in units.values():
            if unit.shared:
                live_shared.append(unit.key)
                shares += self._shared_unit(unit, owners, now, unattributed)
            else:
                shares += self._exclusive_unit(unit, owners, unit_util or {})
        for key in [k for k in self._share_windows if k not in live_shared]:
            del self._share_windows[key]
            self._last_process_util.pop(key, None)
        return tuple(shares), unattributed

    # --- allocation -> units ----------------------------------------------------------
    def _units(self, reading: NvmlReading, view: AllocationView) -> dict[UnitKey, _Unit]:
        by_uuid = {d.uuid: d for d in reading.devices}
        by_minor = {d.facts.minor_number if d.facts.minor_number is not None else d.index: d for d in reading.devices}
        by_index = {d.index: d for d in reading.devices}
        mig_by_uuid = {m.mig_uuid: m for m in reading.migs}
        mig_by_gi = {(m.uuid, m.gpu_instance): m for m in reading.migs}
        units: dict[UnitKey, _Unit] = {}

        def unit_for(dev_id: DeviceId) -> Optional[_Unit]:
            device = by_uuid.get(dev_id.gpu_uuid) if dev_id.gpu_uuid else (
                by_minor.get(dev_id.gpu_minor) if dev_id.gpu_minor is not None else None)
            mig: Optional[MigReading] = None
            if dev_id.mig_uuid:
                mig = mig_by_uuid.get(dev_id.mig_uuid)
                if mig is None:
                    return None
                device = by_index.get(mig.gpu)
            elif dev_id.gpu_instance is not None and device is not None:
                mig = mig_by_gi.get((device.uuid, dev_id.gpu_instance))
                if mig is None:
                    return None
            if device is None:
                return None
            key: UnitKey = ("mig", device.index, mig.gpu_instance) if mig is not None else ("gpu", device.index)
            unit = units.get(key)
            if unit is None:
                unit = units[key] = _Unit(key, device, mig)
            return unit

        unresolved: dict[tuple[str, str, str], int] = {}
        dra: list[Allocation] = []
        for a in view.allocations:
            if a.claim is not None:
                dra.append(a)
                continue
            unit = unit_for(a.device)  # a device-plugin id
            if unit is None:
                count(unresolved, DEVICE_PLUGIN, "", UNKNOWN_DEVICE)  # a device this node's NVML does not show (yet)
                continue
            holder = (a.namespace, a.pod, a.container)
            unit.holders[holder] = unit.holders.get(holder, 0) + 1
            if a.device.replica is not None:
                unit.shared = True
                unit.replicas = max(unit.replicas, a.device.replica + 1)
        claims: dict[PodClaim, None] = {}
        for a, dev_id in resolve_claims(dra, reading, view.slices, unresolved) if dra else ():
            unit = unit_for(dev_id)
            claim = a.claim
            assert claim is not None
            if unit is None:
                count(unresolved, DRA, claim.driver, UNKNOWN_DEVICE)
                continue
            holder = (a.namespace, a.pod, a.container)
            unit.holders[holder] = unit.holders.get(holder, 0) + 1
            unit.dra.add(holder)
            claims[PodClaim(a.namespace, a.pod, a.container, claim.claim_namespace, claim.claim,
                            claim.driver, claim.pool, claim.device, unit.uuid)] = None
        self.unresolved_allocations = unresolved
        self.claims = tuple(claims)
        replicas: dict[UnitKey, int] = {}
        for dev_id in view.allocatable:
            if dev_id.replica is None:
                continue
            unit = unit_for(dev_id)
            if unit is not None:
                replicas[unit.key] = replicas.get(unit.key, 0) + 1
        for key, n in replicas.items():
            unit = units[key]
            unit.shared = True  # a shared GPU stays shared (and reports unattributed) with no holder
            unit.replicas = max(n, 1)
        for unit in units.values():
            if len(unit.holders) > 1:
                unit.shared = True
        return units

    # --- UID -> pod -------------------------------------------------------------------
    def _pair_uids(self, units: Mapping[UnitKey, _Unit], owners: Owners, view: AllocationView) -> dict[str, PodKey]:
        pairs: dict[str, PodKey] = {}
        paired_pods: set[PodKey] = set()
        uid_units: dict[str, set[UnitKey]] = {}
        for unit in units.values():
            for p in unit.processes():
                owner = owners.get(p.pid)
                if owner is not None:
                    uid_units.setdefault(owner.pod_uid, set()).add(unit.key)
        self._identities = {}
        for uid in uid_units:
            ident = view.pod_for_uid(uid)
            if ident is not None:
                self._identities[uid] = ident
                pairs[uid] = (ident.namespace, ident.name)
                paired_pods.add(pairs[uid])
        unit_pods = {u.key: {(ns, pod) for ns, pod, _ in u.holders} for u in units.values()}
        unit_uids: dict[UnitKey, set[str]] = {}
        for uid, keys in uid_units.items():
            for key in keys:
                unit_uids.setdefault(key, set()).add(uid)
        progress = True
        while progress:
            progress = False
            for key, uids in unit_uids.items():
                free_uids = [u for u in uids if u not in pairs]
                free_pods = [p for p in unit_pods.get(key, ()) if p not in paired_pods]
                if len(free_uids) == 1 and len(free_pods) == 1:
                    pairs[free_uids[0]] = free_pods[0]
                    paired_pods.add(free_pods[0])
                    progress = True
        return pairs

    def _holder_of(self, unit: _Unit, owner: Optional[PidOwner]) -> HolderOrReason:
        """(holder key, None) or (None, reason) for one process on a unit."""
        if owner is None:
            return None, NOT_IN_POD
        pod = self.uid_pairs.get(owner.pod_uid)
        if pod is None:
            return None, UNKNOWN_POD
        candidates = [h for h in unit.holders if h[0] == pod[0] and h[1] == pod[1]]
        if not candidates:
            return None, NO_SLOT
        if len(candidates) == 1:
            return candidates[0], None
        ident = self._identities.get(owner.pod_uid)
        name = ident.containers.get(owner.container_id) if ident is not None else None
        for h in candidates:
            if h[2] == name:
                return h, None
        return None, AMBIGUOUS_CONTAINER

    def _count(self, gpu: int, reason: str) -> None:
        key = (gpu, reason)
        self.unresolved[key] = self.unresolved.get(key, 0) + 1

    # --- shares -----------------------------------------------------------------------
    def _share(self, unit: _Unit, holder: HolderKey, sharing: str, allocated: float, util: Optional[float],
               memory: float) -> PodShare:
        mig = unit.mig
        allocation = DRA if holder in unit.dra else DEVICE_PLUGIN
        if mig is None:
            return PodShare(holder[0], holder[1], holder[2], unit.gpu, unit.uuid, sharing, allocated, util, memory,
                            allocation=allocation)
        return PodShare(holder[0], holder[1], holder[2], unit.gpu, unit.uuid, sharing, allocated, util, memory,
                        str(mig.gpu_instance), str(mig.compute_instance), mig.profile, mig.mig_uuid, allocation)

    def _exclusive_unit(self, unit: _Unit, owners: Owners, unit_util: Mapping[UnitKey, float]) -> list[PodShare]:
        if not unit.holders:
            return []
        mean = unit_util.get(unit.key)
        (holder, _), = unit.holders.items()
        memory = 0.0
        for p in unit.processes():
            owner = owners.get(p.pid)
            if owner is None:
                continue  # a host process on the GPU is not the pod's memory
            pod = self.uid_pairs.get(owner.pod_uid)
            if pod is not None and pod != holder[:2]:
                continue
            if p.used_memory_bytes is not None:
                memory += p.used_memory_bytes
        sharing = "mig" if unit.mig is not None else "exclusive"
        return [self._share(unit, holder, sharing, 1.0, mean, memory)]

    def _process_util(self, unit: _Unit) -> dict[int, float]:
        """This tick's SM utilization ratio per PID on a shared (non-MIG) unit."""
        samples = unit.device.process_utilization if unit.mig is None else ()
        if not samples:
            present = {p.pid for p in unit.processes()}
            last = self._last_process_util.get(unit.key, {})
            return {pid: v for pid, v in last.items() if pid in present}
        # The reader already folded the driver's samples to one mean per PID.
        util = {s.pid: min(1.0, max(0.0, s.sm_util / 100.0)) for s in samples}
        self._last_process_util[unit.key] = util
        return util

    def _shared_unit(self, unit: _Unit, owners: Owners, now: float,
                     unattributed_out: dict[int, float]) -> list[PodShare]:
        window = self._share_windows.get(unit.key)
        if window is None:
            window = self._share_windows[unit.key] = _ShareWindow(self.window_seconds)
        memory = {h: 0.0 for h in unit.holders}
        for p in unit.processes():
            holder, _ = self._holder_of(unit, owners.get(p.pid))
            if holder is not None and p.used_memory_bytes is not None:
                memory[holder] += p.used_memory_bytes

        per_pid = self._process_util(unit) if unit.mig is None else {}
        gpu_util = unit.device.utilization if unit.mig is None else None
        splittable = unit.mig is None and (gpu_util is not None or per_pid)
        if splittable:
            raw: dict[HolderKey, float] = {}
            total = 0.0
            for pid, u in per_pid.items():
                total += u
                found = self._holder_of(unit, owners.get(pid))
                if found[0] is None:
                    self._count(unit.gpu, found[1])
                else:
                    raw[found[0]] = raw.get(found[0], 0.0) + u
            if gpu_util is None:
                gpu_util = min(1.0, total)
            scale = gpu_util / total if total > gpu_util else 1.0
            tick_shares = {h: v * scale for h, v in raw.items()}
            rest = max(0.0, gpu_util - sum(tick_shares.values()))
            window.add(now, tick_shares, rest)
        window.expire(now)

        sharing = "mps" if unit.device.facts.compute_mode in _EXCLUSIVE_PROCESS else "time-slicing"
        out: list[PodShare] = []
        for holder, slots in unit.holders.items():
            util = window.mean(holder) if unit.mig is None else None
            # a DRA holder's part is its fraction of the holders; a device-plugin slot's, 1/replicas
            allocated = 1.0 / len(unit.holders) if holder in unit.dra else slots / unit.replicas
            out.append(self._share(unit, holder, sharing, allocated, util, memory[holder]))
        if unit.mig is None:
            rest_mean = window.unattributed_mean()
            if rest_mean is not None:
                unattributed_out[unit.gpu] = rest_mean
        return out
