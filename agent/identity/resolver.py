"""IdentityResolver: one NvmlReading (+ the Node object) -> the IdentityView of this node.

Called at start and whenever the set of devices changes. The view is what Snapshot.identity
holds, /identity serves (as_json) and the NFD feature file publishes (labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from .gpu import resolve_gpu
from .labels import SCHEMA, node_labels
from .node import resolve_node
from .records import GpuRecord, NodeRecord


@dataclass(frozen=True)
class IdentityView:
    gpus: Mapping[str, GpuRecord]  # uuid -> record, in NVML index order
    indexes: Mapping[str, int]  # uuid -> NVML index
    node: NodeRecord
    conflicts: tuple = ()  # Conflict

    @property
    def unknown_count(self) -> int:
        return sum(1 for g in self.gpus.values() if g.unknown)

    def labels(self) -> dict:
        return node_labels(self.gpus.values(), self.node, self.conflicts, self.unknown_count)

    def as_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "gpus": [dict(index=self.indexes[uuid], uuid=uuid, **rec.as_json()) for uuid, rec in self.gpus.items()],
            "node": self.node.as_json(),
            "conflicts": [c.as_json() for c in self.conflicts],
            "unknown_count": self.unknown_count,
        }


def record_for_device(device, migs=()) -> GpuRecord:
    """Resolve one DeviceReading from the facts NVML put in device.raw."""
    raw = device.raw or {}
    profiles = raw.get("mig_profiles")
    if profiles is None:
        profiles = [m.profile for m in migs if m.uuid == device.uuid]
    return resolve_gpu(
        raw.get("name") or device.name,
        pci_device_id=raw.get("pci_device_id"),
        pci_subsystem_id=raw.get("pci_subsystem_id"),
        memory_mib=raw.get("memory_mib"),
        compute_capability=raw.get("compute_capability"),
        virtualization_mode=raw.get("virtualization_mode"),
        mig_capable=raw.get("mig_capable"),
        mig_enabled=raw.get("mig_enabled", device.mig_enabled),
        mig_profiles=profiles,
    )


class IdentityResolver:
    def __init__(self, config):
        self.config = config

    def resolve(self, reading, node: Optional[dict] = None) -> IdentityView:
        devices = sorted(reading.devices, key=lambda d: d.index)
        gpus = {d.uuid: record_for_device(d, reading.migs) for d in devices}
        driver = reading.driver_version or next(
            (d.raw.get("driver_version") for d in devices if (d.raw or {}).get("driver_version")), "")
        node_record, conflicts = resolve_node(
            node, gpus.values(),
            sysfs_root=getattr(self.config, "path_sysfs", "/sys"),
            node_name=getattr(self.config, "node_name", ""),
            driver_version=driver,
            cuda_version=reading.cuda_version,
        )
        return IdentityView(gpus, {d.uuid: d.index for d in devices}, node_record, conflicts)
