"""DRA claim devices -> the GPU or MIG instance NVML shows them as.

The kubelet names a DRA allocation by (driver, pool, device) only; this node's
ResourceSlices (gpulse.kube.resourceslices) say what that device is. A device is tied to
NVML by, in order:
  uuid        its own UUID attribute (GPU-... or MIG-...; a bare UUID NVML knows as either),
  parentUUID + profile
              a MIG device that carries no UUID (NVIDIA's dynamic MIG announces devices
              before creating them): the one instance of that profile on that GPU that no
              other DRA device names, when exactly one is left and one device asks for it,
  pciBusID    resource.kubernetes.io/pciBusID against NVML's PCI bus id.
What cannot be tied is counted by (allocation, driver, reason): slice_not_seen when no
slice describes the device yet (or no API is watched), ambiguous_device, and
unknown_device when the device names a GPU NVML does not show (the caller counts UUIDs
that name no unit the same way). Devices of drivers that publish no slices on this node
(not node-local) and devices whose slice names no GPU (a NIC) are none of gpulse's
business and are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Optional

from .kube.devices import DeviceId

if TYPE_CHECKING:
    from .kube.resourceslices import SliceDevice, SliceLookup
    from .kube.source import Allocation
    from .nvml.reading import DeviceReading, MigReading, NvmlReading

DRA = "dra"
UNKNOWN_DEVICE = "unknown_device"  # names a GPU or MIG instance NVML does not show
SLICE_NOT_SEEN = "slice_not_seen"  # no ResourceSlice describes the DRA device (yet)
AMBIGUOUS_DEVICE = "ambiguous_device"  # a MIG device by parent and profile, with several candidates

Unresolved = MutableMapping[tuple[str, str, str], int]  # (allocation, driver, reason) -> allocations


def count(unresolved: Unresolved, allocation: str, driver: str, reason: str) -> None:
    key = (allocation, driver, reason)
    unresolved[key] = unresolved.get(key, 0) + 1


def _uuid_kind(uuid: str) -> str:
    return "mig" if uuid.startswith("MIG-") else "gpu" if uuid.startswith("GPU-") else ""


def _pci_key(bus_id: str) -> str:
    """'00000000:18:00.0' (NVML) and '0000:18:00.0' (sysfs, DRA) -> one form."""
    domain, sep, rest = bus_id.lower().partition(":")
    return f"{int(domain, 16):x}:{rest}" if sep and domain and all(c in "0123456789abcdef" for c in domain) else ""


def resolve_claims(allocations: Iterable[Allocation], reading: NvmlReading, slices: Optional[SliceLookup],
                   unresolved: Unresolved) -> list[tuple[Allocation, DeviceId]]:
    """Each DRA allocation (a.claim set) whose device could be tied to NVML, with a DeviceId
    naming its GPU (gpu_uuid) or MIG instance (mig_uuid); the rest counted in `unresolved`."""
    out: list[tuple[Allocation, DeviceId]] = []
    gpu_uuids = {d.uuid for d in reading.devices}
    mig_uuids = {m.mig_uuid for m in reading.migs}
    by_pci: Optional[dict[str, DeviceReading]] = None
    pending: list[tuple[Allocation, SliceDevice]] = []  # MIG by parent + profile
    taken: set[str] = set()  # MIG uuids that DRA devices name outright
    for a in allocations:
        claim = a.claim
        assert claim is not None
        dev = slices.device(claim.driver, claim.pool, claim.device) if slices is not None else None
        if dev is None:
            if slices is None or not slices.synced or slices.has_driver(claim.driver):
                count(unresolved, DRA, claim.driver, SLICE_NOT_SEEN)
            continue  # else a driver with no slices on this node: not a local device, not a GPU
        uuid = dev.uuid
        if uuid and not _uuid_kind(uuid):  # a driver may publish the bare UUID
            uuid = next((p + uuid for p in ("GPU-", "MIG-") if p + uuid in gpu_uuids or p + uuid in mig_uuids), "")
        kind = _uuid_kind(uuid)
        if kind == "mig":
            taken.add(uuid)
            out.append((a, DeviceId(a.device.raw, mig_uuid=uuid)))
        elif kind == "gpu":
            out.append((a, DeviceId(a.device.raw, gpu_uuid=uuid)))
        elif dev.parent_uuid and dev.profile:
            pending.append((a, dev))
        elif dev.pci_bus_id:
            if by_pci is None:
                by_pci = {_pci_key(d.pci_bus_id): d for d in reading.devices if d.pci_bus_id}
            found = by_pci.get(_pci_key(dev.pci_bus_id))
            if found is not None:
                out.append((a, DeviceId(a.device.raw, gpu_uuid=found.uuid)))
            # else not a GPU NVML shows (a NIC publishes pciBusID too)
    if pending:
        out += _by_parent_and_profile(pending, reading.migs, taken, unresolved)
    return out


def _by_parent_and_profile(pending: list[tuple[Allocation, SliceDevice]], migs: Iterable[MigReading],
                           taken: set[str], unresolved: Unresolved) -> list[tuple[Allocation, DeviceId]]:
    free: dict[tuple[str, str], list[MigReading]] = {}
    for m in migs:
        if m.mig_uuid not in taken:
            free.setdefault((m.uuid, m.profile), []).append(m)
    wanted: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
    for _, dev in pending:
        wanted.setdefault((dev.parent_uuid, dev.profile), set()).add((dev.driver, dev.pool, dev.name))
    out: list[tuple[Allocation, DeviceId]] = []
    for a, dev in pending:
        key = (dev.parent_uuid, dev.profile)
        candidates = free.get(key, [])
        if not candidates:
            count(unresolved, DRA, dev.driver, UNKNOWN_DEVICE)
        elif len(candidates) > 1 or len(wanted[key]) > 1:
            count(unresolved, DRA, dev.driver, AMBIGUOUS_DEVICE)
        else:
            out.append((a, DeviceId(a.device.raw, mig_uuid=candidates[0].mig_uuid)))
    return out
