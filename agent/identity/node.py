"""Node context: cloud, region, zone and instance type, and the cloud's own GPU labels
normalized and cross-checked against what NVML shows.

Sources in order: spec.providerID, DMI files under the configured sysfs root, node labels.
Reads only local files and the Node object it is given; no network calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

from .gpu import PartClaim, PartFields, SkuFields, merge, nominal_memory_gb, resolve_gpu
from .records import CloudGpuLabel, Conflict, GpuRecord, NodeRecord
from .tables import DmiRule, InstanceType, PartSpec, Tables, tables

DMI_FILES = ("sys_vendor", "product_name", "product_version", "board_vendor", "board_asset_tag",
             "chassis_asset_tag", "bios_vendor", "bios_version")


def read_dmi(sysfs_root: str) -> dict[str, str]:
    """The readable DMI files under <sysfs_root>/class/dmi/id; missing or root-only ones are
    simply absent."""
    base = os.path.join(sysfs_root or "/sys", "class", "dmi", "id")
    out: dict[str, str] = {}
    for name in DMI_FILES:
        try:
            with open(os.path.join(base, name), encoding="utf-8", errors="replace") as fh:
                value = fh.read(256).strip()
        except OSError:
            continue
        if value:
            out[name] = value
    return out


def _dmi_rule_matches(rule: DmiRule, dmi: Mapping[str, str]) -> bool:
    value = dmi.get(rule["file"], "")
    if not value:
        return False
    if "equals" in rule:
        return value == str(rule["equals"])
    if "startswith" in rule:
        return value.startswith(str(rule["startswith"]))
    return str(rule["contains"]).lower() in value.lower()


def detect_cloud(provider_id: str, dmi: Mapping[str, str], labels: Mapping[str, str],
                 t: Optional[Tables] = None) -> dict[str, str]:
    """{cloud, cloud_source, zone, region, instance_type, instance_type_source} from what is
    known locally; cloud is 'onprem' for an OEM machine, 'unknown' when nothing tells."""
    t = t or tables()
    c = t.clouds
    out = {"cloud": "", "cloud_source": "none", "zone": "", "region": "",
           "instance_type": "", "instance_type_source": ""}
    for rule in c["provider_id"]:
        m = rule["pattern"].match(provider_id or "")
        if m:
            groups = m.groupdict()
            out.update(cloud=rule["cloud"], cloud_source="providerID",
                       zone=groups.get("zone") or "", region=groups.get("region") or "")
            break
    dmi_rule = next((r for r in c["dmi"] if _dmi_rule_matches(r, dmi)), None)
    if dmi_rule and not out["cloud"]:
        out.update(cloud=dmi_rule["cloud"], cloud_source="dmi")
    if not out["cloud"]:
        for key in labels:
            hit = next((cl for prefix, cl in c["label_prefixes"].items() if key.startswith(prefix)), None)
            if hit:
                out.update(cloud=hit, cloud_source="labels")
                break
    if not out["cloud"]:
        vendor = dmi.get("sys_vendor", "")
        virtual = any(vendor.startswith(h) for h in c["hypervisor_vendors"])
        out["cloud"] = "onprem" if vendor and not virtual else "unknown"

    if dmi_rule and dmi_rule.get("instance_type_from") and dmi_rule["cloud"] == out["cloud"]:
        candidate = dmi.get(dmi_rule["instance_type_from"], "")
        if c["instance_type_pattern"].match(candidate):
            out.update(instance_type=candidate, instance_type_source="dmi")
    if not out["instance_type"]:
        key = next((k for k in c["instance_type_labels"] if labels.get(k)), "")
        if key:
            out.update(instance_type=labels[key], instance_type_source="labels")
    if not out["zone"]:
        out["zone"] = next((labels[k] for k in c["zone_labels"] if labels.get(k)), "")
    if not out["region"]:
        out["region"] = next((labels[k] for k in c["region_labels"] if labels.get(k)), "")
    if not out["region"] and out["zone"] and out["cloud"] in c["region_from_zone"]:
        m = c["region_from_zone"][out["cloud"]].match(out["zone"])
        out["region"] = m["region"] if m else ""
    return out


def lookup_instance_type(cloud: str, name: str, t: Optional[Tables] = None) -> Optional[InstanceType]:
    """The table entry for an instance type: the node's cloud first, then any cloud."""
    t = t or tables()
    if not name:
        return None
    folded = name.lower()
    if folded in t.instance_types.get(cloud, {}):
        return t.instance_types[cloud][folded]
    return next((types[folded] for types in t.instance_types.values() if folded in types), None)


def _part_fields(part: PartSpec, memory_mib: Optional[float], t: Tables) -> SkuFields:
    """What a PartSpec pins down, using the cloud's memory figure to choose a size."""
    skus = t.skus_matching(part)
    if memory_mib and part.memory_gb is None and not part.sku:
        size = nominal_memory_gb(memory_mib, {s.memory_gb for s in skus}, t)
        skus = [s for s in skus if s.memory_gb == size] or skus
    fields = merge(skus)
    if not part.sku:  # only what the vocabulary states, not what its candidates share
        fields["form_factor"] = part.form_factor or (fields["form_factor"] if len(skus) == 1 else "")
    return fields


def normalize_cloud_label(key: str, value: str, labels: Optional[Mapping[str, str]] = None,
                          t: Optional[Tables] = None) -> Optional[CloudGpuLabel]:
    """A cloud GPU label's value in canonical terms; None when the key is not a GPU label."""
    t = t or tables()
    labels = labels or {}
    vocab = t.labels.get(key)
    if vocab is None or vocab.kind not in ("vocabulary", "nvml-name"):
        return None
    fields: Optional[PartFields] = None
    if vocab.kind == "vocabulary":
        part = vocab.lookup(value)
        if part is not None:
            memory = labels.get(vocab.memory_label) if vocab.memory_label else None
            fields = _part_fields(part, _int(memory), t)
    else:
        name = value
        for suffix in vocab.strip_suffixes:
            name = suffix.sub("", name)
        rec = resolve_gpu(name)
        if not rec.unknown:
            fields = {"model": rec.model, "sku": rec.sku, "memory_gb": rec.memory_gb,
                      "form_factor": rec.form_factor}
    if not fields or not fields["model"]:
        return CloudGpuLabel(key, value, "", "", None, "", False)
    return CloudGpuLabel(key, value, fields["model"], fields["sku"], fields["memory_gb"],
                         fields["form_factor"], True)


def _int(text: object) -> Optional[int]:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _disagreement(claim: PartClaim, gpus: Iterable[GpuRecord]) -> Optional[tuple[str, str, str]]:
    """(field, expected, nvml value) when no GPU agrees with every field the claim states."""
    gpus = list(gpus)
    if not gpus:
        return "model", claim["model"], "none"
    first: Optional[tuple[str, str, str]] = None
    for gpu in gpus:
        for f in ("model", "memory_gb", "form_factor"):
            want, have = claim.get(f), getattr(gpu, f)
            if want not in (None, "") and have not in (None, "") and want != have:
                first = first or (f, str(want), gpu.sku or gpu.model or gpu.raw_name)
                break
        else:
            return None
    return first


def _common(values: list[str], mixed: str = "mixed") -> str:
    distinct = set(values)
    if not distinct:
        return ""
    return distinct.pop() if len(distinct) == 1 else mixed


def format_cuda_version(value: Union[int, str, None]) -> str:
    """NVML's nvmlSystemGetCudaDriverVersion integer (12040) -> '12.4'; '12.4' stays."""
    text = str(value or "").strip()
    if text.isdigit() and int(text) >= 1000:
        v = int(text)
        return f"{v // 1000}.{(v % 1000) // 10}"
    return text


def resolve_node(node: Optional[Mapping[str, Any]], gpus: Iterable[GpuRecord], *, sysfs_root: str = "/sys",
                 node_name: str = "", driver_version: str = "", cuda_version: Union[int, str, None] = "",
                 dmi: Optional[Mapping[str, str]] = None) -> tuple[NodeRecord, tuple[Conflict, ...]]:
    """(NodeRecord, conflicts) for this node. node is the Kubernetes Node object as a dict or
    None; gpus are this node's resolved records. A cloud label or instance type that
    disagrees with NVML is returned as a Conflict, never dropped."""
    t = tables()
    gpus = list(gpus)
    node = node or {}
    meta = node.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    provider_id = str((node.get("spec") or {}).get("providerID") or "")
    dmi = read_dmi(sysfs_root) if dmi is None else dmi
    where = detect_cloud(provider_id, dmi, labels, t)
    conflicts: list[Conflict] = []

    cloud_labels: list[CloudGpuLabel] = []
    for key in sorted(labels):
        normalized = normalize_cloud_label(key, labels[key], labels, t)
        if normalized is None:
            vocab = t.labels.get(key)
            if vocab is not None and vocab.kind == "vendor" and labels[key].lower() != "nvidia" and gpus:
                conflicts.append(Conflict(key, labels[key], "vendor", labels[key].lower(), gpus[0].vendor))
            continue
        cloud_labels.append(normalized)
        if normalized.recognized:
            claim: PartClaim = {"model": normalized.model, "memory_gb": normalized.memory_gb,
                                "form_factor": normalized.form_factor}
            bad = _disagreement(claim, gpus)
            if bad:
                conflicts.append(Conflict(key, labels[key], *bad))

    count_label = "karpenter.k8s.aws/instance-gpu-count"
    if _int(labels.get(count_label)) is not None and _int(labels[count_label]) != len(gpus):
        conflicts.append(Conflict(count_label, labels[count_label], "count", labels[count_label], str(len(gpus))))

    expected = lookup_instance_type(where["cloud"], where["instance_type"], t)
    expected_sku, expected_count = "", None
    if expected is not None:
        source_label = ("dmi:product_name" if where["instance_type_source"] == "dmi"
                        else next(k for k in t.clouds["instance_type_labels"] if labels.get(k)))
        fields = _part_fields(expected.part, None, t)
        expected_sku, expected_count = fields["sku"], expected.count
        bad = _disagreement(fields, gpus)
        if bad:
            conflicts.append(Conflict(source_label, where["instance_type"], *bad))
        elif not expected.fractional and expected.count != len(gpus):
            conflicts.append(Conflict(source_label, where["instance_type"], "count",
                                      str(expected.count), str(len(gpus))))

    record = NodeRecord(
        name=node_name or str(meta.get("name") or ""),
        cloud=where["cloud"], cloud_source=where["cloud_source"],
        region=where["region"], zone=where["zone"],
        instance_type=where["instance_type"], instance_type_source=where["instance_type_source"],
        expected_sku=expected_sku, expected_gpu_count=expected_count,
        gpu_model=_common([g.model or g.raw_name for g in gpus]),
        gpu_sku=_common([g.sku or g.raw_name for g in gpus]),
        gpu_count=len(gpus),
        driver_version=str(driver_version or ""),
        cuda_version=format_cuda_version(cuda_version),
        cloud_gpu_labels=tuple(cloud_labels),
    )
    return record, tuple(conflicts)
