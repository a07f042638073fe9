"""Every raw identity in the research corpus and every PCI id row resolves to its part.

The corpus (tests/fixtures/identity/gpu_names_corpus.csv, copied from the research notes with
the public source of every row) holds raw NVML names, cloud vocabulary
values and memory as reported, with the canonical part a person wrote down. Its
canonical_model column is free text: its first token ("H100-SXM5-80GB", "A100-80GB", "K80")
is read as a SKU from the table, or as model [+ form factor] [+ size].
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from gpulse.identity.gpu import family_for, nominal_memory_gb, resolve_gpu
from gpulse.identity.node import lookup_instance_type, normalize_cloud_label
from gpulse.identity.tables import tables

from tests.conftest import ROOT

REPO = Path(ROOT)
CORPUS = REPO / "tests" / "fixtures" / "identity" / "gpu_names_corpus.csv"

# Rows that identify no part by themselves, and why.
EXPECTED_FALLBACK = {
    "Graphics Device": "old drivers' placeholder for boards they do not know; no PCI id in the row",
}

# Which vocabularies a row from each cloud may come from, tried in order; a row whose value
# is in none of them is a raw NVML name.
CLOUD_VOCABULARIES = {
    "aws": ("karpenter.k8s.aws/instance-gpu-name", "catalog:ec2"),
    "gcp": ("cloud.google.com/gke-accelerator",),
    "coreweave": ("gpu.nvidia.com/class", "gpu.nvidia.com/model"),
    "oci": ("catalog:oci",),
}

FORM_FACTOR_WORDS = {"SXM": "sxm", "SXM2": "sxm", "SXM4": "sxm", "SXM5": "sxm", "PCIE": "pcie", "NVL": "nvl"}


def corpus_rows():
    with open(CORPUS, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def expected_part(canonical: str) -> dict:
    token = re.match(r"[A-Za-z0-9][A-Za-z0-9-]*", canonical).group(0)
    t = tables()
    if token in t.skus:
        s = t.skus[token]
        return {"model": s.model, "memory_gb": s.memory_gb, "form_factor": s.form_factor, "sku": s.sku}
    models = sorted({s.model for s in t.skus.values()}, key=len, reverse=True)
    model = next((m for m in models if token == m or token.startswith(m + "-")), None)
    assert model, f"corpus canonical {canonical!r}: no known model in {token!r}"
    rest = token[len(model):].split("-")
    mem = next((int(w[:-2]) for w in rest if re.fullmatch(r"\d+GB", w)), None)
    ff = next((FORM_FACTOR_WORDS[w.upper()] for w in rest if w.upper() in FORM_FACTOR_WORDS), "")
    return {"model": model, "memory_gb": mem, "form_factor": ff, "sku": ""}


def resolve_row(row: dict):
    """(model, sku, memory_gb, form_factor, record or None) for one corpus row."""
    memory = int(row["memory_mib"]) if row["memory_mib"] else None
    cloud = row["cloud"].split()[0] if row["cloud"] else ""
    for key in CLOUD_VOCABULARIES.get(cloud, ()):
        vocab = tables().labels[key]
        labels = {vocab.memory_label: str(memory)} if vocab.memory_label and memory else {}
        hit = normalize_cloud_label(key, row["raw_name"], labels)
        if hit is not None and hit.recognized:
            # on a node, the instance type (when the table knows it) adds what the label leaves open
            it = lookup_instance_type(cloud, re.split(r"[ /(]", row["instance_type"])[0])
            part = tables().skus_matching(it.part) if it is not None else []
            form_factor = hit.form_factor or (part[0].form_factor if len({s.form_factor for s in part}) == 1 else "")
            return hit.model, hit.sku, hit.memory_gb, form_factor, None
    rec = resolve_gpu(row["raw_name"], pci_device_id=row["pci_device_id"] or None, memory_mib=memory)
    return rec.model, rec.sku, rec.memory_gb, rec.form_factor, rec


ROWS = corpus_rows()


def test_corpus_is_not_empty():
    assert len(ROWS) > 50


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{r['raw_name']}" for i, r in enumerate(ROWS)])
def test_corpus_row_resolves_to_its_part(row):
    model, sku, memory_gb, form_factor, rec = resolve_row(row)
    if row["raw_name"] in EXPECTED_FALLBACK:
        assert rec is not None and rec.source == "fallback" and rec.raw_name == row["raw_name"]
        return
    want = expected_part(row["canonical_model"])
    where = f"{row['raw_name']!r} ({row['source'][:60]})"
    assert model == want["model"], where
    if want["memory_gb"] is not None:
        assert memory_gb == want["memory_gb"], where
    if want["form_factor"] and not row["raw_name"].startswith("MIG "):  # a bare MIG name has no parent name
        assert form_factor == want["form_factor"], where
    if want["sku"] and rec is not None and rec.source == "pciid":
        assert sku == want["sku"], where
    if rec is not None:
        assert rec.source in ("pciid", "name"), where
        assert rec.vendor == "nvidia" and rec.family, where


def test_corpus_special_rows_keep_what_the_name_says():
    for row in ROWS:
        name = row["raw_name"]
        if name.startswith("MIG "):
            rec = resolve_gpu(name, memory_mib=int(row["memory_mib"]))
            profile = name.split()[-1].split("c.", 1)[-1] if "c." in name else name.split()[-1]
            assert dict(rec.mig_profiles) == {profile: 1}, name
            assert rec.mig_enabled and rec.mig_capable, name
        if name.startswith("GRID ") or re.search(r"-\d+[ABCQ]$", name):
            rec = resolve_gpu(name)
            assert rec.virtualization == "vgpu" and rec.vgpu_profile, name


def test_truncated_names_with_memory_resolve_to_the_right_size():
    truncated = [r for r in ROWS if r["raw_name"].endswith("...") and r["memory_mib"]]
    assert len(truncated) >= 3
    for row in truncated:
        rec = resolve_gpu(row["raw_name"], memory_mib=int(row["memory_mib"]))  # name + memory only
        want = expected_part(row["canonical_model"])
        assert (rec.model, rec.memory_gb) == (want["model"], want["memory_gb"]), row["raw_name"]
        assert rec.source == "name"


# NVML memory observed on real parts (reference/identity.md section 3.1 table).
OBSERVED_MIB = [
    (0x102D, 11441, "K80-12GB"), (0x1DB1, 16152, "V100-SXM2-16GB"), (0x1EB8, 15360, "T4-16GB"),
    (0x20B0, 40960, "A100-SXM4-40GB"), (0x20B0, 39538, "A100-SXM4-40GB"), (0x20B2, 81920, "A100-SXM4-80GB"),
    (0x20B5, 81920, "A100-PCIe-80GB"), (0x20F3, 81920, "A800-SXM4-80GB"), (0x2235, 46068, "A40-48GB"),
    (0x2236, 23028, "A10-24GB"), (0x2237, 23028, "A10G-24GB"), (0x27B8, 23034, "L4-24GB"),
    (0x26B9, 46068, "L40S-48GB"), (0x26B1, 49140, "RTX-6000-Ada-48GB"), (0x2330, 81559, "H100-SXM5-80GB"),
    (0x2321, 95830, "H100-NVL-94GB"), (0x2335, 143771, "H200-SXM5-141GB"), (0x2342, 97871, "GH200-96GB-HBM3"),
    (0x2901, 183359, "B200-180GB"), (0x2BB5, 97887, "RTX-PRO-6000-Blackwell-Server-Edition-96GB"),
]


# K80's 11441 MiB (12 GB less ECC) lies nearer the 11 GB of GTX 1080 Ti / RTX 2080 Ti: without an
# id or a name, memory cannot tell it.
MEMORY_ALONE_AMBIGUOUS = {"K80-12GB"}


@pytest.mark.parametrize("device,mib,sku", OBSERVED_MIB)
def test_observed_memory_buckets_to_the_nominal_size(device, mib, sku):
    want = tables().skus[sku].memory_gb
    assert resolve_gpu("", device, memory_mib=mib).sku == sku
    if sku in MEMORY_ALONE_AMBIGUOUS:
        return
    # memory alone, over every nominal size in the table
    assert nominal_memory_gb(mib, {s.memory_gb for s in tables().skus.values()}) == want
    # an unknown name keeps its raw name but still gets the nominal size
    rec = resolve_gpu("Some Future Board", memory_mib=mib)
    assert (rec.source, rec.memory_gb, rec.raw_name) == ("fallback", want, "Some Future Board")


def test_every_sku_is_reachable_from_the_tables():
    t = tables()
    reachable = {s for rows in t.pci.values() for r in rows for s in [r.sku]}
    reachable |= {s for skus in t.names.values() for s in skus}
    for vocab in t.labels.values():
        reachable |= {p.sku for p in vocab.values.values() if p.sku}
    for types in t.instance_types.values():
        reachable |= {it.part.sku for it in types.values() if it.part.sku}
    assert set(t.skus) <= reachable, sorted(set(t.skus) - reachable)


def test_reference_parts_from_k80_to_gb200_and_rtx_pro_are_covered():
    models = {s.model for s in tables().skus.values()}
    for model in ("K80", "P4", "P40", "P100", "V100", "T4", "A100", "A30", "A40", "A10", "A10G", "L4", "L40",
                  "L40S", "H100", "H800", "H20", "H200", "GH200", "B200", "GB200", "B300", "GB300",
                  "RTX-6000-Ada", "RTX-A6000", "RTX-A5000", "RTX-A4000", "Quadro-RTX-5000",
                  "RTX-PRO-6000-Blackwell"):
        assert model in models, model


@pytest.mark.parametrize("model", [
    # data center, Maxwell's last boards to Blackwell, and the China-market parts
    "M10", "M40", "M60", "P6", "P100", "V100S", "T4", "A2", "A16", "A30", "A100", "A800", "AX800", "H100", "H800",
    "H20", "H200", "L2", "L20", "L40S", "GH200", "B200", "B300", "GB200", "GB300", "GB10",
    # workstation
    "Quadro-GP100", "Quadro-P6000", "Quadro-P2000", "Quadro-GV100", "Quadro-RTX-4000", "Quadro-RTX-8000",
    "T400", "T1000", "RTX-A400", "RTX-A2000", "RTX-A4500", "RTX-A5500", "RTX-2000-Ada", "RTX-4000-SFF-Ada",
    "RTX-5880-Ada", "RTX-PRO-2000-Blackwell", "RTX-PRO-4500-Blackwell", "RTX-PRO-5000-Blackwell", "RTX-6000D",
    # GeForce and TITAN, Pascal to Blackwell, the China-market D cards and laptops
    "GTX-1050", "GTX-1060", "GTX-1080-Ti", "TITAN-Xp", "TITAN-V", "GTX-1660-SUPER", "RTX-2080-Ti", "TITAN-RTX",
    "RTX-3060", "RTX-3090-Ti", "RTX-4060-Ti", "RTX-4090", "RTX-4090-D", "RTX-5060-Ti", "RTX-5090", "RTX-5090-D",
    "RTX-4090-Laptop", "RTX-5080-Laptop",
])
def test_every_part_since_pascal_is_in_the_tables(model):
    skus = [s for s in tables().skus.values() if s.model == model]
    assert skus, model
    for s in skus:
        assert family_for(s.compute_capability), s
        assert s.form_factor == "" if model.endswith("-Laptop") else True, s


def test_every_sku_has_a_family_and_a_known_form_factor():
    for s in tables().skus.values():
        assert family_for(s.compute_capability) and s.form_factor in ("", "sxm", "pcie", "nvl", "superchip"), s


def test_skus_fit_kubernetes_label_values():
    for sku in tables().skus:
        assert len(sku) <= 63 and re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]", sku), sku

