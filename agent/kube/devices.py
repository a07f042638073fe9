"""Device ids as the kubelet reports them, parsed into what they name.

Forms (from the NVIDIA device plugin and GKE's):
  GPU-<uuid>                    a whole GPU
  GPU-<uuid>::<n>               replica n of a time-sliced or MPS GPU
  MIG-<uuid>[::<n>]             a MIG instance (R470+ drivers), optionally shared
  MIG-GPU-<uuid>/<gi>/<ci>      a MIG instance, pre-R470 drivers
  nvidia<N>[/gi<M>][/vgpu<K>]   GKE: device minor N, GPU instance M, shared replica K
Anything else is malformed and parse_device_id answers None.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Optional

GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_REPLICA = r"(?:::(?P<replica>\d+))?"
_GPU = re.compile(rf"^(?P<uuid>GPU-{_UUID}){_REPLICA}$")
_MIG = re.compile(rf"^(?P<uuid>MIG-{_UUID}){_REPLICA}$")
_MIG_LEGACY = re.compile(rf"^MIG-(?P<uuid>GPU-{_UUID})/(?P<gi>\d+)/(?P<ci>\d+){_REPLICA}$")
_GKE = re.compile(r"^nvidia(?P<minor>\d+)(?:/gi(?P<gi>\d+))?(?:/vgpu(?P<replica>\d+))?$")


@dataclass(frozen=True, slots=True)
class DeviceId:
    """What one kubelet device id names. Unknown parts stay "" / None."""
    raw: str
    gpu_uuid: str = ""  # GPU-..., when the id carries it
    mig_uuid: str = ""  # MIG-..., when the id carries it
    gpu_minor: Optional[int] = None  # GKE /dev/nvidia<N>
    gpu_instance: Optional[int] = None
    compute_instance: Optional[int] = None
    replica: Optional[int] = None  # time-slicing / MPS replica

def _int(text: Optional[str]) -> Optional[int]:
    return None if text is None else int(text)


def parse_device_id(text: str) -> Optional[DeviceId]:
    """One kubelet device id -> DeviceId, or None when it is none of the known forms."""
    m = _GPU.match(text)
    if m:
        return DeviceId(text, gpu_uuid=m["uuid"], replica=_int(m["replica"]))
    m = _MIG.match(text)
    if m:
        return DeviceId(text, mig_uuid=m["uuid"], replica=_int(m["replica"]))
    m = _MIG_LEGACY.match(text)
    if m:
        return DeviceId(text, gpu_uuid=m["uuid"], gpu_instance=int(m["gi"]),
                        compute_instance=int(m["ci"]), replica=_int(m["replica"]))
    m = _GKE.match(text)
    if m:
        return DeviceId(text, gpu_minor=int(m["minor"]), gpu_instance=_int(m["gi"]),
                        replica=_int(m["replica"]))
    return None


def is_gpu_resource(name: str, extra_names: Container[str] = ()) -> bool:
    """Resources gpulse attributes: the NVIDIA plugin's names plus configured ones."""
    return name in GPU_RESOURCES or name.startswith(MIG_RESOURCE_PREFIX) or name in extra_names
