"""What a DRA GPU driver shows the world, modelled on NVIDIA's (gpu.nvidia.com,
kubernetes-sigs/dra-driver-nvidia-gpu v0.4): the ResourceSlices it publishes for this node
and the names the kubelet reports for allocated devices.

Facts (cmd/gpu-kubelet-plugin deviceinfo.go, mig.go, cdi.go and driver.go of that
repository; the scheduler's extended-resource claims: kubernetes/enhancements KEP-5004):
- one pool per node, named after the node; the slice's generateName is `<node>-<driver>-`;
- a whole GPU is `gpu-<minor>`; a static MIG device is `gpu-<parent minor>-mig-<profile
  without dots>-<GI profile id>-<placement start>`; a MIG-enabled GPU publishes only its
  MIG devices;
- GPU attributes: type "gpu", uuid, productName, architecture, cudaComputeCapability,
  driverVersion and cudaDriverVersion (semver versions), resource.kubernetes.io/pciBusID;
  capacity memory;
- MIG attributes: type "mig", uuid (static MIG only), parentUUID, profile and the parent's
  productName, architecture, versions and pciBusID; capacity memory;
- CDI device names: `k8s.<driver>/claim=<claim uid>-<device name>`;
- a pod's `nvidia.com/gpu` request served by DRA (KEP-5004) gets a claim the scheduler
  creates with generateName `<pod>-extended-resources-`.
Other driver names reuse the same shapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .scenario import GpuSpec, MigInstanceSpec, Scenario

NVIDIA_DRIVER = "gpu.nvidia.com"
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what generateName suffixes are drawn from
# GPU-instance profile ids as `nvidia-smi mig -lgip` lists them on A100/H100 80GB parts, by
# compute slices (1g with double memory: 15); placement only has to be unique here.
_GI_PROFILE_IDS = {1: 19, 2: 14, 3: 9, 4: 5, 7: 0}
_ARCHITECTURE = {"7.0": "Volta", "7.5": "Turing", "8.0": "Ampere", "8.6": "Ampere", "8.7": "Ampere",
                 "8.9": "Ada Lovelace", "9.0": "Hopper", "10.0": "Blackwell", "12.0": "Blackwell"}


def generated_suffix(*parts: str) -> str:
    """A stable 5-character suffix like the API server's generateName draws."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(_GENERATE_ALPHABET[b % len(_GENERATE_ALPHABET)] for b in digest[:5])


def extended_resource_claim(pod: str) -> str:
    """The claim the scheduler creates for a pod's DRA-backed extended resource request."""
    return f"{pod}-extended-resources-{generated_suffix('extended', pod)}"


def claim_uid(namespace: str, claim: str) -> str:
    digest = hashlib.sha256(f"claim/{namespace}/{claim}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"


def _slices(gpu: GpuSpec, mig: MigInstanceSpec) -> int:
    return int(gpu.mig_profiles.get(mig.profile, {}).get("slices", 1))


def device_name(gpu: GpuSpec, mig: Optional[int] = None) -> str:
    if mig is None:
        return f"gpu-{gpu.index}"  # the fake NVML's minor number is the index
    inst = gpu.mig_instances[mig]
    start = sum(_slices(gpu, m) for m in gpu.mig_instances[:mig])
    profile_id = _GI_PROFILE_IDS.get(_slices(gpu, inst), 0)
    if inst.profile.startswith("1g.") and inst.memory_mib > 12 * 1024:
        profile_id = 15
    return f"gpu-{gpu.index}-mig-{inst.profile.replace('.', '')}-{profile_id}-{start}"


def cdi_device(driver: str, namespace: str, claim: str, device: str) -> str:
    return f"k8s.{driver}/claim={claim_uid(namespace, claim)}-{device}"


def _semver(version: str) -> str:
    parts = [str(int(p)) for p in version.split(".") if p.isdigit()][:3]
    return ".".join(parts + ["0"] * (3 - len(parts)))


def _common(gpu: GpuSpec, scenario: Scenario) -> dict[str, Any]:
    cuda = scenario.driver.cuda_version
    return {
        "productName": {"string": gpu.name},
        "architecture": {"string": _ARCHITECTURE.get(gpu.compute_capability, "")},
        "cudaComputeCapability": {"version": _semver(gpu.compute_capability)},
        "driverVersion": {"version": _semver(scenario.driver.version)},
        "cudaDriverVersion": {"version": f"{cuda // 1000}.{cuda % 1000 // 10}.0"},
        "resource.kubernetes.io/pciBusID": {"string": gpu.pci_bus_id[4:].lower()},  # sysfs form 0000:18:00.0
    }


def devices(gpu: GpuSpec, scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The devices the driver publishes for one GPU."""
    if not gpu.mig_enabled:
        yield {"name": device_name(gpu), "attributes": {"type": {"string": "gpu"}, "uuid": {"string": gpu.uuid},
                                                        **_common(gpu, scenario)},
               "capacity": {"memory": {"value": f"{gpu.memory_mib}Mi"}}}
        return
    for i, inst in enumerate(gpu.mig_instances):
        yield {"name": device_name(gpu, i),
               "attributes": {"type": {"string": "mig"}, "uuid": {"string": inst.uuid},
                              "parentUUID": {"string": gpu.uuid}, "profile": {"string": inst.profile},
                              **_common(gpu, scenario)},
               "capacity": {"memory": {"value": f"{inst.memory_mib}Mi"}}}


def resource_slices(scenario: Scenario) -> list[dict[str, Any]]:
    """One ResourceSlice per driver for this node: every GPU the scenario hands out through it."""
    node = scenario.node.name
    drivers: dict[str, list[GpuSpec]] = {}
    for gpu in scenario.gpus:
        if gpu.dra_driver:
            drivers.setdefault(gpu.dra_driver, []).append(gpu)
    out = []
    for driver, gpus in drivers.items():
        out.append({
            "kind": "ResourceSlice", "apiVersion": "resource.k8s.io/v1",
            "metadata": {"name": f"{node}-{driver}-{generated_suffix('slice', node, driver)}",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node}]},
            "spec": {"driver": driver, "nodeName": node,
                     "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": [d for gpu in gpus for d in devices(gpu, scenario)]},
        })
    return out
