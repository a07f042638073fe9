"""The PCI device-id table: generated from the PCI ID Repository, current, and hand rows only
where pci.ids cannot say.

pciids.csv is what tools/gen_pci_ids.py derives from Debian's pci.ids (`make deb-deps` installs
it, `make pciids` regenerates). pci_ids.csv holds the rows pci.ids cannot give: each must be for an
id the generated table lacks, or one whose generated SKUs miss a variant or leave the memory
variant open. Both must agree with the driver's names wherever both speak.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from gpulse.identity.gpu import resolve_gpu
from gpulse.identity.tables import load_tables, tables

from tests.conftest import ROOT
from tools import gen_pci_ids

DATA = Path(ROOT) / "agent" / "identity" / "data"


def rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


GENERATED = rows("pciids.csv")
HAND = rows("pci_ids.csv")


def generated_skus() -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for r in GENERATED:
        if not r["subsystem_id"]:
            out.setdefault(int(r["device_id"], 16), set()).add(r["sku"])
    return out


def test_generated_table_is_current():
    if not os.path.exists(gen_pci_ids.DEFAULT_PCI_IDS):
        missing = f"{gen_pci_ids.DEFAULT_PCI_IDS} is missing: install Debian's pci.ids (make deb-deps as root)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with open(gen_pci_ids.DEFAULT_PCI_IDS, encoding="utf-8", errors="replace") as fh:
        fresh = gen_pci_ids.generate(fh.read())
    committed = (DATA / "pciids.csv").read_text(encoding="utf-8")
    assert committed == fresh, (f"agent/identity/data/pciids.csv is stale (generated from pci.ids "
                                f"{gen_pci_ids.version_of(committed)}, installed {gen_pci_ids.version_of(fresh)}): "
                                "run make pciids")


def test_generator_reads_pci_ids_lines():
    text = ("#\tVersion: 2099.01.01\n10de  NVIDIA Corporation\n\t1e30  TU102GL [Quadro RTX 6000/8000]\n"
            "\t\t10de 129e  Quadro RTX 8000\n\t\t1028 129e  Some OEM board\n\t2236  GA102GL [A10]\n"
            "\t25b6  GA107GL [A2 / A16]\n\t2520  GA106M [GeForce RTX 3060 Mobile / Max-Q]\n\t2321  GH100\n"
            "10df  Emulex Corporation\n\t2330  Not NVIDIA [H100 SXM5 80GB]\n")
    version, devices = gen_pci_ids.read_pci_ids(text)
    assert version == "2099.01.01" and [d.device_id for d in devices] == [0x1E30, 0x2236, 0x25B6, 0x2520, 0x2321]
    assert devices[0].subsystems == ((0x129E, "Quadro RTX 8000"),)  # NVIDIA's own subsystem lines only
    assert gen_pci_ids.products("TU102GL [Quadro RTX 6000/8000]") == ("TU102GL", ["Quadro RTX 6000", "Quadro RTX 8000"])
    assert gen_pci_ids.products("GH100") == ("", [])
    out = list(gen_pci_ids.iter_rows(gen_pci_ids.generate(text)))
    assert ["0x1E30", "0x129E", "Quadro-RTX-8000-48GB", "TU102GL", "Quadro RTX 8000"] in out
    assert {r[2] for r in out if r[0] == "0x25B6"} == {"A2-PCIe-16GB", "A16-PCIe-16GB"}
    assert not [r for r in out if r[0] in ("0x2520", "0x2321", "0x2330")], "mobile, chip-only and other vendors"


def test_every_hand_row_says_what_pci_ids_cannot():
    gen = generated_skus()
    by_id: dict[int, set[str]] = {}
    for r in HAND:
        by_id.setdefault(int(r["device_id"], 16), set()).add(r["sku"])
    t = tables()
    for device_id, skus in by_id.items():
        subsystem_only = all(r["subsystem_id"] for r in HAND if int(r["device_id"], 16) == device_id)
        if device_id not in gen or subsystem_only:
            continue
        missed = not skus <= gen[device_id]
        narrower = skus < gen[device_id] and all(t.skus[s].memory_gb for s in skus)
        assert missed or narrower, f"0x{device_id:04X}: pci.ids already gives {sorted(gen[device_id])}"


def test_hand_rows_name_their_reason_and_a_driver_name_the_names_table_knows():
    t = tables()
    for r in HAND:
        assert r["why"], r
        if r["nvml_name"]:
            assert r["sku"] in t.names.get(t.name_key(r["nvml_name"]), ()), r


def test_pci_ids_and_the_drivers_names_agree_on_the_model():
    """Where pci.ids and the driver both name an id, pci.ids' product is among the driver's
    (the driver may name more: 0x1DBA is a Quadro GV100 and a TITAN V JHH Special Edition)."""
    gen = generated_skus()
    t = tables()
    hand_models: dict[int, set[str]] = {}
    for r in HAND:
        hand_models.setdefault(int(r["device_id"], 16), set()).add(t.skus[r["sku"]].model)
    for device_id, models in hand_models.items():
        if device_id in gen:
            assert models & {t.skus[s].model for s in gen[device_id]}, f"0x{device_id:04X}: {models}"


@pytest.mark.parametrize("row", HAND, ids=lambda r: f"{r['device_id']}-{r['subsystem_id']}-{r['sku']}")
def test_hand_row_resolves_by_id_and_by_its_driver_name(row):
    device = int(row["device_id"], 16)
    sub = int(row["subsystem_id"], 16) if row["subsystem_id"] else None
    sku = tables().skus[row["sku"]]
    memory = sku.memory_gb * 1024 * 0.99 if sku.memory_gb else None
    for pci, subsystem in ((device, sub), ((device << 16) | 0x10DE, ((sub << 16) | 0x10DE) if sub else None)):
        rec = resolve_gpu(row["nvml_name"], pci, subsystem, memory)
        assert (rec.model, rec.source, rec.pci_device_id, rec.conflicts) == (sku.model, "pciid", f"0x{device:04X}", ())
        if sku.memory_gb:
            assert rec.memory_gb == sku.memory_gb


HAND_IDS = {int(h["device_id"], 16) for h in HAND}  # a hand row replaces its id's generated rows


@pytest.mark.parametrize("row", [r for r in GENERATED if not r["subsystem_id"] and int(r["device_id"], 16) not in HAND_IDS],
                         ids=lambda r: f"{r['device_id']}-{r['sku']}")
def test_generated_row_resolves_by_id(row):
    device = int(row["device_id"], 16)
    sku = tables().skus[row["sku"]]
    memory = sku.memory_gb * 1024 * 0.99 if sku.memory_gb else None
    rec = resolve_gpu("", device, memory_mib=memory)
    assert rec.source == "pciid" and rec.model == sku.model, row


def test_the_tables_load_without_the_generated_file_for_the_generator():
    t = load_tables(generated=False)
    assert t.skus == tables().skus and t.names == tables().names
    assert all(not r.generated for rows_ in t.pci.values() for r in rows_)
