"""Every real identity in the real-names corpus resolves to the part a person wrote down.

tests/fixtures/identity/real_names_corpus.csv holds raw names as NVML, nvidia-smi, CUDA and PyTorch
print them (MIG devices, vGPU guests, truncated table names, pre-R470 spellings, GeForce and
workstation cards, China-market parts), each with its public source. A row resolves when model,
memory, form factor, virtualization and the MIG / vGPU profile all match what it states, and the
identity conflicts it raises are exactly the ones it expects (a board built with more memory than
its part raises one on memory_gb; no other row may raise any).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from gpulse.identity.gpu import resolve_gpu

from tests.conftest import ROOT

CORPUS = Path(ROOT) / "tests" / "fixtures" / "identity" / "real_names_corpus.csv"


def corpus_rows() -> list[dict[str, str]]:
    with open(CORPUS, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


ROWS = corpus_rows()


def resolve(row: dict[str, str]):
    return resolve_gpu(row["raw_name"], row["pci_device_id"] or None, row["pci_subsystem_id"] or None,
                       int(row["memory_mib"]) if row["memory_mib"] else None, row["compute_capability"] or None,
                       virtualization_mode=row["virtualization_mode"] or None)


def test_corpus_size_and_sources():
    assert len(ROWS) >= 250
    kinds = Counter(r["source_kind"] for r in ROWS)
    assert set(kinds) <= {"vendor-doc", "issue-paste", "test-data", "other"}, kinds
    assert kinds["issue-paste"] >= 100 and kinds["vendor-doc"] >= 100
    assert all(r["source"].strip() for r in ROWS)
    # the field's hard cases are all present
    assert sum(1 for r in ROWS if r["expected_mig_profile"]) >= 50
    assert sum(1 for r in ROWS if r["expected_vgpu_profile"]) >= 30
    assert sum(1 for r in ROWS if r["raw_name"].endswith("...")) >= 15


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{r['raw_name']}" for i, r in enumerate(ROWS)])
def test_real_name_resolves_to_its_part(row):
    rec = resolve(row)
    where = f"{row['raw_name']!r} ({row['source'][:80]})"
    assert rec.source in ("pciid", "name"), where
    assert rec.model == row["expected_model"], where
    if row["expected_memory_gb"]:
        assert rec.memory_gb == int(row["expected_memory_gb"]), where
    if row["expected_form_factor"]:
        assert rec.form_factor == row["expected_form_factor"], where
    assert rec.virtualization == row["expected_virtualization"], where
    assert rec.vgpu_profile == row["expected_vgpu_profile"], where
    assert rec.mig_profile == row["expected_mig_profile"], where
    assert {c.field for c in rec.conflicts} == ({row["expected_conflict"]} - {""}), (where, rec.conflicts)
    assert rec.family, where


def test_a_mig_device_never_takes_its_size_from_the_profile():
    for row in ROWS:
        if row["expected_mig_profile"] and row["raw_name"].split(" MIG")[0]:
            rec = resolve(row)
            assert rec.mig_enabled and rec.mig_profile and rec.memory_gb == int(row["expected_memory_gb"]), row
