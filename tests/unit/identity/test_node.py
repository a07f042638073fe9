"""Node context: cloud detection, instance types, cloud GPU labels cross-checked with NVML,
and the resolver over the built-in scenarios' nodes."""

from __future__ import annotations

import os

import pytest
from gpulse.identity import IdentityResolver
from gpulse.identity.gpu import resolve_gpu
from gpulse.identity.node import detect_cloud, format_cuda_version, read_dmi, resolve_node
from gpulse.nvml.reading import DeviceFacts, DeviceReading, MigReading, NvmlReading


def write_dmi(root, **files) -> str:
    base = os.path.join(root, "class", "dmi", "id")
    os.makedirs(base, exist_ok=True)
    for name, value in files.items():
        with open(os.path.join(base, name), "w") as fh:
            fh.write(value + "\n")
    return str(root)


def k8s_node(name="n1", provider_id="", **labels) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"providerID": provider_id} if provider_id else {}}


def gpus(name, pci, mib, n):
    return [resolve_gpu(name, pci, memory_mib=mib)] * n


H100 = ("NVIDIA H100 80GB HBM3", 0x2330, 81559)
A10G = ("NVIDIA A10G", 0x2237, 23028)
A100_80 = ("NVIDIA A100-SXM4-80GB", 0x20B2, 81920)


def test_read_dmi_reads_what_is_readable(tmp_path):
    root = write_dmi(tmp_path, sys_vendor="Amazon EC2", product_name="p5.48xlarge")
    assert read_dmi(root) == {"sys_vendor": "Amazon EC2", "product_name": "p5.48xlarge"}
    assert read_dmi(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize("provider_id,cloud,zone,region", [
    ("aws:///us-east-1a/i-0abc", "aws", "us-east-1a", "us-east-1"),
    ("gce://proj/europe-west4-a/node-1", "gcp", "europe-west4-a", "europe-west4"),
    ("azure:///subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/0", "azure", "", ""),
    ("oci://ocid1.instance.oc1.iad.xyz", "oci", "", ""),
    ("cn-hangzhou.i-bp1abcdef", "alibaba", "", "cn-hangzhou"),
    ("hcloud://12345", "hetzner", "", ""),
])
def test_cloud_from_provider_id(provider_id, cloud, zone, region):
    got = detect_cloud(provider_id, {}, {})
    assert (got["cloud"], got["cloud_source"], got["zone"], got["region"]) == (cloud, "providerID", zone, region)


@pytest.mark.parametrize("dmi,cloud", [
    ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp"),
    ({"sys_vendor": "Microsoft Corporation", "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "azure"),
    ({"chassis_asset_tag": "OracleCloud.com"}, "oci"),
    ({"sys_vendor": "Amazon EC2", "product_name": "g5.12xlarge"}, "aws"),
    ({"sys_vendor": "Supermicro", "product_name": "SYS-821GE-TNHR"}, "onprem"),
    ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}, "unknown"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"}, "unknown"),
    ({}, "unknown"),
])
def test_cloud_from_dmi(dmi, cloud):
    assert detect_cloud("", dmi, {})["cloud"] == cloud


def test_instance_type_from_dmi_only_when_it_looks_like_one():
    got = detect_cloud("", {"sys_vendor": "Amazon EC2", "product_name": "p4d.24xlarge"}, {})
    assert (got["instance_type"], got["instance_type_source"]) == ("p4d.24xlarge", "dmi")
    got = detect_cloud("", {"bios_version": "4.2.amazon", "product_name": "HVM domU"},
                       {"node.kubernetes.io/instance-type": "p3.16xlarge"})
    assert (got["cloud"], got["instance_type"], got["instance_type_source"]) == ("aws", "p3.16xlarge", "labels")


def test_cloud_from_labels_when_nothing_else_tells():
    got = detect_cloud("", {}, {"node.coreweave.cloud/cpu": "xeon", "topology.kubernetes.io/zone": "LGA1"})
    assert (got["cloud"], got["cloud_source"], got["zone"]) == ("coreweave", "labels", "LGA1")


def test_cuda_version_formats():
    assert format_cuda_version(12040) == "12.4"
    assert format_cuda_version("11040") == "11.4"
    assert format_cuda_version("12.2") == "12.2"
    assert format_cuda_version("") == ""


def conflicts_of(node, records, **kw):
    _, conflicts = resolve_node(node, records, dmi={}, **kw)
    return [(c.label, c.field, c.expected, c.nvml_value) for c in conflicts]


def test_agreeing_cloud_labels_give_no_conflict():
    node = k8s_node(provider_id="aws:///us-east-1a/i-1", **{
        "node.kubernetes.io/instance-type": "p5.48xlarge", "karpenter.k8s.aws/instance-gpu-name": "h100",
        "karpenter.k8s.aws/instance-gpu-count": "8", "karpenter.k8s.aws/instance-gpu-memory": "81920",
        "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    assert conflicts_of(node, gpus(*H100, 8)) == []


def test_gke_accelerator_naming_another_model_is_a_conflict():
    node = k8s_node(provider_id="gce://p/us-central1-a/n", **{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
    assert conflicts_of(node, gpus(*A10G, 1)) == [
        ("cloud.google.com/gke-accelerator", "model", "T4", "A10G-24GB")]


def test_gke_accelerator_naming_another_size_is_a_conflict():
    node = k8s_node(**{"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"})  # the 40 GB part
    assert conflicts_of(node, gpus(*A100_80, 8)) == [
        ("cloud.google.com/gke-accelerator", "memory_gb", "40", "A100-SXM4-80GB")]


def test_karpenter_memory_label_picks_the_size():
    labels = {"karpenter.k8s.aws/instance-gpu-name": "a100", "karpenter.k8s.aws/instance-gpu-memory": "40960"}
    assert conflicts_of(k8s_node(**labels), gpus(*A100_80, 8)) == [
        ("karpenter.k8s.aws/instance-gpu-name", "memory_gb", "40", "A100-SXM4-80GB")]
    labels["karpenter.k8s.aws/instance-gpu-memory"] = "81920"
    assert conflicts_of(k8s_node(**labels), gpus(*A100_80, 8)) == []


def test_gfd_product_label_is_normalized_like_nvml_names():
    node = k8s_node(**{"nvidia.com/gpu.product": "NVIDIA-A10G-SHARED"})
    assert conflicts_of(node, gpus(*A10G, 4)) == []
    node = k8s_node(**{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"})
    assert conflicts_of(node, gpus(*A100_80, 1)) == []
    node = k8s_node(**{"nvidia.com/gpu.product": "Tesla-T4"})
    assert conflicts_of(node, gpus(*A10G, 1)) == [("nvidia.com/gpu.product", "model", "T4", "A10G-24GB")]


def test_instance_type_disagreeing_with_nvml_is_a_conflict():
    node = k8s_node(**{"node.kubernetes.io/instance-type": "g5.12xlarge"})
    assert conflicts_of(node, gpus(*H100, 4)) == [
        ("node.kubernetes.io/instance-type", "model", "A10G", "H100-SXM5-80GB")]


def test_a_missing_gpu_shows_as_a_count_conflict():
    node = k8s_node(**{"node.kubernetes.io/instance-type": "p5.48xlarge",
                       "karpenter.k8s.aws/instance-gpu-count": "8"})
    assert sorted(conflicts_of(node, gpus(*H100, 7))) == [
        ("karpenter.k8s.aws/instance-gpu-count", "count", "8", "7"),
        ("node.kubernetes.io/instance-type", "count", "8", "7")]


def test_a_gpu_label_on_a_node_where_nvml_sees_none():
    node = k8s_node(**{"cloud.google.com/gke-accelerator": "nvidia-l4"})
    assert conflicts_of(node, []) == [("cloud.google.com/gke-accelerator", "model", "L4", "none")]


def test_unrecognized_label_values_are_kept_but_not_conflicts():
    node = k8s_node(**{"cloud.google.com/gke-accelerator": "nvidia-future-9000",
                       "kubernetes.azure.com/accelerator": "nvidia"})
    record, conflicts = resolve_node(node, gpus(*A10G, 1), dmi={})
    assert conflicts == ()
    (label,) = record.cloud_gpu_labels
    assert (label.value, label.recognized) == ("nvidia-future-9000", False)


def test_vendor_label_naming_another_vendor_is_a_conflict():
    node = k8s_node(**{"karpenter.k8s.aws/instance-gpu-manufacturer": "amd"})
    assert conflicts_of(node, gpus(*A10G, 1)) == [
        ("karpenter.k8s.aws/instance-gpu-manufacturer", "vendor", "amd", "nvidia")]


def test_fractional_instance_types_expect_no_whole_gpu_count():
    node = k8s_node(**{"node.kubernetes.io/instance-type": "Standard_NV6ads_A10_v5"})
    assert conflicts_of(node, [resolve_gpu("NVIDIA A10-4Q", memory_mib=4096)]) == []


def test_node_record_fields(tmp_path):
    root = write_dmi(tmp_path, sys_vendor="Amazon EC2", product_name="p5.48xlarge")
    record, _ = resolve_node(k8s_node("ip-1", "aws:///us-east-1a/i-1"), gpus(*H100, 8), sysfs_root=root,
                             driver_version="550.90.07", cuda_version=12040)
    assert (record.name, record.cloud, record.instance_type, record.instance_type_source) == (
        "ip-1", "aws", "p5.48xlarge", "dmi")
    assert (record.expected_sku, record.expected_gpu_count, record.gpu_model, record.gpu_count) == (
        "H100-SXM5-80GB", 8, "H100", 8)
    assert (record.driver_version, record.cuda_version) == ("550.90.07", "12.4")
    mixed, _ = resolve_node(None, gpus(*H100, 1) + gpus(*A10G, 1), dmi={})
    assert (mixed.gpu_model, mixed.gpu_sku, mixed.cloud) == ("mixed", "mixed", "unknown")


# --- the built-in scenarios' nodes, as NVML and the Kubernetes API would show them ---

def reading(name, pci, mib, cc, n, mig=None, driver="535.183.01", cuda="12020"):
    devices, migs = [], []
    for i in range(n):
        profiles = list((mig or {}).get(i, ()))
        devices.append(DeviceReading(index=i, uuid=f"GPU-{i:04d}", name=name, mig_enabled=bool(profiles),
                                     facts=DeviceFacts(name=name, pci_device_id=pci, pci_subsystem_id=0, memory_mib=mib,
                                                       compute_capability=cc, mig_capable=cc in ("8.0", "9.0"),
                                                       mig_enabled=bool(profiles), driver_version=driver)))
        migs += [MigReading(i, f"GPU-{i:04d}", 1, 0, p, f"MIG-{i}-{j}") for j, p in enumerate(profiles)]
    return NvmlReading(timestamp=0.0, devices=tuple(devices), migs=tuple(migs), driver_version=driver, cuda_version=cuda)


SCENARIOS = {
    "reference": (
        reading("NVIDIA H100 80GB HBM3", 0x2330, 81559, "9.0", 8, mig={i: ["1g.10gb"] * 7 for i in range(4)}),
        k8s_node("ip-10-0-12-34.ec2.internal", "aws:///us-east-1a/i-0abc1234def567890", **{
            "node.kubernetes.io/instance-type": "p5.48xlarge", "topology.kubernetes.io/region": "us-east-1",
            "topology.kubernetes.io/zone": "us-east-1a", "karpenter.k8s.aws/instance-gpu-name": "h100",
            "karpenter.k8s.aws/instance-gpu-count": "8", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
        {"sys_vendor": "Amazon EC2", "product_name": "p5.48xlarge"},
        ("aws", "p5.48xlarge", "H100", "H100-SXM5-80GB", 8, {"1g.10gb": 28}),
    ),
    "g5-timeslice": (
        reading("NVIDIA A10G", 0x2237, 23028, "8.6", 4),
        k8s_node("ip-10-0-40-7", "aws:///us-west-2b/i-0fedcba9876543210", **{
            "node.kubernetes.io/instance-type": "g5.12xlarge", "karpenter.k8s.aws/instance-gpu-name": "a10g",
            "nvidia.com/gpu.product": "NVIDIA-A10G-SHARED"}),
        {"sys_vendor": "Amazon EC2", "product_name": "g5.12xlarge"},
        ("aws", "g5.12xlarge", "A10G", "A10G-24GB", 4, {}),
    ),
    "a100-mig-mixed": (
        reading("NVIDIA A100-SXM4-80GB", 0x20B2, 81920, "8.0", 8, mig={
            0: ["1g.10gb"] * 7, 1: ["1g.10gb"] * 7, 2: ["2g.20gb"] * 3 + ["1g.10gb"],
            3: ["2g.20gb"] * 3 + ["1g.10gb"], 4: ["3g.40gb"] * 2, 5: ["3g.40gb"] * 2, 6: ["7g.80gb"]}),
        k8s_node("gke-ml-a2-ultra", "gce://ml-prod/us-central1-c/gke-ml-a2-ultra", **{
            "node.kubernetes.io/instance-type": "a2-ultragpu-8g",
            "cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}),
        {"sys_vendor": "Google", "product_name": "Google Compute Engine"},
        ("gcp", "a2-ultragpu-8g", "A100", "A100-SXM4-80GB", 8,
         {"1g.10gb": 16, "2g.20gb": 6, "3g.40gb": 4, "7g.80gb": 1}),
    ),
    "t4-legacy": (
        reading("Tesla T4", 0x1EB8, 15360, "7.5", 2, driver="470.256.02", cuda="11040"),
        k8s_node("gke-legacy-t4", "gce://legacy-proj/europe-west4-a/gke-legacy-t4", **{
            "node.kubernetes.io/instance-type": "n1-standard-8",
            "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}),
        {"sys_vendor": "Google", "product_name": "Google Compute Engine"},
        ("gcp", "n1-standard-8", "T4", "T4-16GB", 2, {}),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_nodes_are_consistent(scenario, tmp_path):
    nvml, node, dmi, want = SCENARIOS[scenario]
    view = IdentityResolver(write_dmi(tmp_path, **dmi)).resolve(nvml, node)
    cloud, instance_type, model, sku, count, migs = want
    assert (view.node.cloud, view.node.instance_type, view.node.gpu_model, view.node.gpu_sku,
            view.node.gpu_count) == (cloud, instance_type, model, sku, count)
    assert view.conflicts == () and view.unknown_count == 0
    labels = view.labels()
    assert labels["gpulse.dev/model"] == model and labels["gpulse.dev/sku"] == sku
    assert labels["gpulse.dev/count"] == str(count) and labels["gpulse.dev/cloud"] == cloud
    assert {k.split(".", 2)[2].rsplit(".count", 1)[0]: int(v) for k, v in labels.items()
            if k.startswith("gpulse.dev/mig.") and k.endswith(".count")} == migs
    assert [g["index"] for g in view.as_json()["gpus"]] == list(range(count))


def test_reference_scenario_with_a_conflicting_cloud_label(tmp_path):
    nvml, node, dmi, _ = SCENARIOS["reference"]
    node = {**node, "metadata": {**node["metadata"], "labels": {
        **node["metadata"]["labels"], "karpenter.k8s.aws/instance-gpu-name": "a100"}}}
    view = IdentityResolver(write_dmi(tmp_path, **dmi)).resolve(nvml, node)
    assert [(c.label, c.label_value, c.nvml_value) for c in view.conflicts] == [
        ("karpenter.k8s.aws/instance-gpu-name", "a100", "H100-SXM5-80GB")]
    assert view.labels()["gpulse.dev/identity-conflicts"] == "1"
    assert view.as_json()["conflicts"][0]["field"] == "model"


def test_unknown_gpus_are_counted(tmp_path):
    nvml = reading("NVIDIA Mystery X", 0xFFF0, 50000, "9.0", 2)
    view = IdentityResolver(str(tmp_path)).resolve(nvml, None)
    assert view.unknown_count == 2
    assert {g.raw_name for g in view.gpus.values()} == {"NVIDIA Mystery X"}
    assert view.labels()["gpulse.dev/unknown-gpus"] == "2"
