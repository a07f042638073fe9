"""Device id forms the kubelet reports, parsed by one pure function."""

import pytest
from gpulse.kube.devices import DeviceId, is_gpu_resource, parse_device_id

U = "a1b2c3d4-e5f6-4789-8abc-def012345678"

CASES = [
    (f"GPU-{U}", DeviceId(f"GPU-{U}", gpu_uuid=f"GPU-{U}")),
    (f"GPU-{U}::0", DeviceId(f"GPU-{U}::0", gpu_uuid=f"GPU-{U}", replica=0)),
    (f"GPU-{U}::12", DeviceId(f"GPU-{U}::12", gpu_uuid=f"GPU-{U}", replica=12)),
    (f"MIG-{U}", DeviceId(f"MIG-{U}", mig_uuid=f"MIG-{U}")),
    (f"MIG-{U}::3", DeviceId(f"MIG-{U}::3", mig_uuid=f"MIG-{U}", replica=3)),
    (f"MIG-GPU-{U}/7/0", DeviceId(f"MIG-GPU-{U}/7/0", gpu_uuid=f"GPU-{U}", gpu_instance=7, compute_instance=0)),
    ("nvidia0", DeviceId("nvidia0", gpu_minor=0)),
    ("nvidia3/gi2", DeviceId("nvidia3/gi2", gpu_minor=3, gpu_instance=2)),
    ("nvidia1/vgpu4", DeviceId("nvidia1/vgpu4", gpu_minor=1, replica=4)),
    ("nvidia1/gi1/vgpu2", DeviceId("nvidia1/gi1/vgpu2", gpu_minor=1, gpu_instance=1, replica=2)),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_known_forms(text, expected):
    assert parse_device_id(text) == expected


@pytest.mark.parametrize("text", [
    "", "GPU-", "GPU-xyz", f"GPU-{U}::", f"GPU-{U}::-1", f"GPU-{U}::1::2", f"gpu-{U}x",
    f"MIG-{U}/1", "nvidia", "nvidiaX", "nvidia0/gi", "nvidia0/ci1", f" GPU-{U}", "0000:3b:00.0",
])
def test_malformed_ids_are_none(text):
    assert parse_device_id(text) is None


def test_mig_flag():
    assert parse_device_id(f"MIG-{U}").mig_uuid == f"MIG-{U}"
    assert parse_device_id("nvidia0/gi1").gpu_instance == 1
    assert parse_device_id(f"GPU-{U}::1").gpu_instance is None and not parse_device_id(f"GPU-{U}::1").mig_uuid


def test_resource_names():
    assert is_gpu_resource("nvidia.com/gpu")
    assert is_gpu_resource("nvidia.com/gpu.shared")
    assert is_gpu_resource("nvidia.com/mig-1g.10gb")
    assert not is_gpu_resource("nvidia.com/a100")
    assert is_gpu_resource("nvidia.com/a100", ("nvidia.com/a100",))
    assert not is_gpu_resource("cpu")
