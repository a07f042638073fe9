"""The simulated GPU models are parts identity knows, with the facts real NVML gives; the one
model that copies NVIDIA's mock NVML is inconsistent on purpose and must come out flagged."""

from __future__ import annotations

import pytest
from gpulse.identity.gpu import resolve_gpu
from gpulse.sim.scenario import hardware_profiles

INCONSISTENT = {"GB200-mock-nvml"}


def record(hw):
    return resolve_gpu(hw["name"], hw["pci_device_id"], hw["pci_subsystem_id"], hw["memory_mib"],
                       hw["compute_capability"])


@pytest.mark.parametrize("model", sorted(set(hardware_profiles()) - INCONSISTENT))
def test_simulated_model_resolves_without_conflict(model):
    rec = record(hardware_profiles()[model])
    assert rec.source == "pciid" and rec.model and rec.conflicts == (), (model, rec.conflicts)


def test_mock_nvml_gb200_resolves_to_gb200_and_flags_its_pci_id():
    rec = record(hardware_profiles()["GB200-mock-nvml"])
    assert (rec.model, rec.sku, rec.memory_gb, rec.family) == ("GB200", "GB200-186GB", 186, "blackwell")
    assert [(c.label, c.label_value, c.field, c.expected) for c in rec.conflicts] == [
        ("nvml:pci_device_id", "0x2330", "model", "H100-SXM5-80GB")]


@pytest.mark.parametrize("model", sorted(m for m, hw in hardware_profiles().items() if hw.get("mig_profiles")))
def test_simulated_mig_instances_report_the_memory_real_nvml_does(model):
    from gpulse.identity.tables import tables
    hw = hardware_profiles()[model]
    t = tables()
    table = t.mig[t.skus[record(hw).sku].mig_table]
    for profile, spec in hw["mig_profiles"].items():
        real = table.profiles[table.canonical(profile)]
        assert spec["max"] == real.max, (model, profile)
        if real.memory_mib:
            assert spec["memory_mib"] in real.memory_mib, (model, profile, spec["memory_mib"], real.memory_mib)
