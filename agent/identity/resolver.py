"""IdentityResolver: one NvmlReading (+ the Node object) -> the IdentityView of this node.

Called at start and whenever the set of devices changes. The view is what Snapshot.identity
holds, /identity serves (as_json) and the NFD feature file publishes (labels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

from ..nvml.reading import DeviceReading, MigReading, NvmlReading
from .gpu import resolve_gpu
from .labels import SCHEMA, node_labels
from .node import resolve_node
from .records import Conflict, GpuRecord, JsonObject, NodeRecord


@dataclass(frozen=True)
class MigDevice:
    """A MIG device as identity sees it: its parent and the record its own NVML name resolves to."""
    uuid: str  # MIG-...
    gpu: int  # the parent's NVML index
    parent_uuid: str
    record: GpuRecord

    def as_json(self) -> JsonObject:
        return dict(gpu=self.gpu, uuid=self.uuid, parent_uuid=self.parent_uuid, **self.record.as_json())


@dataclass(frozen=True)
class IdentityView:
    gpus: Mapping[str, GpuRecord]  # uuid -> record, in NVML index order
    indexes: Mapping[str, int]  # uuid -> NVML index
    node: NodeRecord
    conflicts: tuple[Conflict, ...] = ()
    migs: tuple[MigDevice, ...] = ()  # MIG devices of MIG-enabled GPUs, in NVML order

    @property
    def unknown_count(self) -> int:
        return sum(1 for g in self.gpus.values() if g.unknown)

    def labels(self) -> dict[str, str]:
        return node_labels(self.gpus.values(), self.node, self.conflicts, self.unknown_count)

    def as_json(self) -> JsonObject:
        return {
            "schema": SCHEMA,
            "gpus": [dict(index=self.indexes[uuid], uuid=uuid, **rec.as_json()) for uuid, rec in self.gpus.items()],
            "node": self.node.as_json(),
            "conflicts": [c.as_json() for c in self.conflicts],
            "unknown_count": self.unknown_count,
            "migs": [m.as_json() for m in self.migs],
        }


def record_for_device(device: DeviceReading, migs: Iterable[MigReading] = ()) -> GpuRecord:
    """Resolve one DeviceReading from the facts NVML gave at discovery."""
    f = device.facts
    profiles: Iterable[str] = f.mig_profiles or [m.profile for m in migs if m.uuid == device.uuid]
    return resolve_gpu(
        f.name or device.name,
        pci_device_id=f.pci_device_id,
        pci_subsystem_id=f.pci_subsystem_id,
        memory_mib=f.memory_mib,
        compute_capability=f.compute_capability,
        virtualization_mode=f.virtualization_mode,
        mig_capable=f.mig_capable,
        mig_enabled=f.mig_enabled or device.mig_enabled,
        mig_profiles=list(profiles),
    )


def record_for_mig(mig: MigReading, parent: Optional[DeviceReading]) -> GpuRecord:
    """A MIG device from its own NVML name ("<parent name> MIG <profile>"), with the parent's
    PCI id and compute capability: the parent's part and the instance's profile."""
    f = parent.facts if parent is not None else None
    return resolve_gpu(mig.name or f"MIG {mig.profile}",
                       pci_device_id=f.pci_device_id if f else None,
                       compute_capability=f.compute_capability if f else None,
                       virtualization_mode=f.virtualization_mode if f else None,
                       mig_capable=True, mig_enabled=True)


class IdentityResolver:
    def __init__(self, sysfs_root: str = "/sys", node_name: str = ""):
        self.sysfs_root = sysfs_root
        self.node_name = node_name

    def resolve(self, reading: NvmlReading, node: Optional[dict[str, Any]] = None) -> IdentityView:
        devices = sorted(reading.devices, key=lambda d: d.index)
        gpus = {d.uuid: record_for_device(d, reading.migs) for d in devices}
        driver = reading.driver_version or next((d.facts.driver_version for d in devices if d.facts.driver_version), "")
        node_record, conflicts = resolve_node(
            node, gpus.values(),
            sysfs_root=self.sysfs_root,
            node_name=self.node_name,
            driver_version=driver,
            cuda_version=reading.cuda_version,
        )
        # a GPU's own disagreements (name vs PCI id vs memory vs compute capability) are
        # published with the node's, tied to the GPU
        own = tuple(replace(c, gpu=str(d.index), uuid=d.uuid) for d in devices for c in gpus[d.uuid].conflicts)
        parents = {d.uuid: d for d in devices}
        migs = tuple(MigDevice(m.mig_uuid, m.gpu, m.uuid, record_for_mig(m, parents.get(m.uuid)))
                     for m in sorted(reading.migs, key=lambda m: (m.gpu, m.gpu_instance, m.compute_instance)))
        return IdentityView(gpus, {d.uuid: d.index for d in devices}, node_record, own + conflicts, migs)
