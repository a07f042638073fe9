"""The canonical identity records (DESIGN section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

# A JSON object as as_json() returns it: values are JSON-encodable (str, int, bool, None,
# lists and objects of those).
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class GpuRecord:
    vendor: str  # "nvidia"
    family: str  # from compute capability: "hopper", ... ("" when unknown)
    chip: str  # "GH100"
    model: str  # "H100", "RTX-6000-Ada"; "" when unknown
    sku: str  # "H100-SXM5-80GB"; "<model>-<GB>GB" when the form factor is not known
    form_factor: str  # sxm | pcie | nvl | superchip | ""
    memory_gb: Optional[int]  # nominal size of the physical part
    memory_mib: Optional[int]  # as reported (a vGPU guest sees its framebuffer)
    compute_capability: str  # "9.0"
    pci_device_id: str  # "0x2330"
    virtualization: str  # none | passthrough | vgpu
    vgpu_profile: str  # "A10-4Q"
    mig_capable: bool
    mig_enabled: bool
    mig_profiles: tuple[tuple[str, int], ...]  # ((canonical profile, count), ...) present on the GPU, sorted
    source: str  # pciid | name | fallback: what decided
    raw_name: str  # as NVML said it
    mig_profile: str = ""  # a MIG device's own GPU-instance profile, as its name gives it ("3g.40gb")
    conflicts: tuple[Conflict, ...] = ()  # NVML facts the majority outvoted (name, PCI id, memory, CC)

    @property
    def unknown(self) -> bool:
        return self.source == "fallback"

    def as_json(self) -> JsonObject:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["mig_profiles"] = dict(self.mig_profiles)
        d["conflicts"] = [c.as_json() for c in self.conflicts]
        return d


@dataclass(frozen=True)
class Conflict:
    """An identity disagreement. Either a node label (or the instance type) whose GPU identity
    disagrees with NVML, or one of a GPU's own NVML facts that the others outvote (a PCI id of
    one part under the name, memory and compute capability of another)."""
    label: str  # label key; "dmi:product_name" for an instance type read from DMI; "nvml:<fact>"
    #             (nvml:name, nvml:pci_device_id, nvml:memory_total, nvml:compute_capability) for a GPU's own fact
    label_value: str
    field: str  # model | memory_gb | form_factor | compute_capability | vendor | count
    expected: str  # what the label (or the outvoted fact) implies for that field
    nvml_value: str  # what NVML shows: the GPU's sku or the count; for a GPU's own fact, what its
    #                  consistent majority (the part published) says for that field
    gpu: str = ""  # NVML index of the GPU whose own facts disagree; "" for a node label
    uuid: str = ""

    def as_json(self) -> JsonObject:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class CloudGpuLabel:
    """A cloud's own GPU label, normalized."""
    label: str
    value: str
    model: str  # "" when the value is not in the vocabulary
    sku: str
    memory_gb: Optional[int]
    form_factor: str
    recognized: bool

    def as_json(self) -> JsonObject:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class NodeRecord:
    name: str
    cloud: str  # aws | gcp | azure | oci | coreweave | ... | onprem | unknown
    cloud_source: str  # providerID | dmi | labels | none
    region: str
    zone: str
    instance_type: str
    instance_type_source: str  # dmi | labels | ""
    expected_sku: str  # what the instance type table says the node carries
    expected_gpu_count: Optional[int]
    gpu_model: str  # one model, "mixed", or "" without GPUs
    gpu_sku: str
    gpu_count: int
    driver_version: str
    cuda_version: str  # "12.4"
    cloud_gpu_labels: tuple[CloudGpuLabel, ...] = ()

    def as_json(self) -> JsonObject:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["cloud_gpu_labels"] = [c.as_json() for c in self.cloud_gpu_labels]
        return d
