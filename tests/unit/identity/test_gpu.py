"""GPU normalization: resolution order, names, vGPU and MIG parsing, family, fallback."""

from __future__ import annotations

import pytest
from gpulse.identity.gpu import family_for, resolve_gpu, split_pci_id


def test_done_when_example():
    rec = resolve_gpu("NVIDIA H100 80GB HBM3", 0x2330, memory_mib=81559)
    assert (rec.model, rec.memory_gb, rec.form_factor, rec.sku) == ("H100", 80, "sxm", "H100-SXM5-80GB")
    assert (rec.source, rec.family, rec.chip, rec.pci_device_id) == ("pciid", "hopper", "GH100", "0x2330")
    assert (rec.memory_mib, rec.compute_capability, rec.vendor) == (81559, "9.0", "nvidia")


def test_pci_id_wins_over_a_misleading_name():
    rec = resolve_gpu("NVIDIA H100", 0x2330, memory_mib=81559)
    assert (rec.sku, rec.source) == ("H100-SXM5-80GB", "pciid")


def test_one_id_several_names_resolve_by_name_and_subsystem():
    assert resolve_gpu("NVIDIA A100-PG509-200", 0x20B0).sku == "A100-SXM4-40GB"
    assert resolve_gpu("NVIDIA PG509-210", 0x20B2).sku == "A100-SXM4-80GB"
    assert resolve_gpu("NVIDIA GH200 120GB", 0x2342).sku == "GH200-96GB-HBM3"
    # a subsystem id the table does not know never loses the part
    assert resolve_gpu("NVIDIA H100 80GB HBM3", 0x233010DE, 0x123410DE).sku == "H100-SXM5-80GB"


def test_one_name_several_ids():
    assert resolve_gpu("Tesla V100-SXM2-16GB", 0x1DB1).sku == resolve_gpu("Tesla V100-SXM2-16GB", 0x1DF5).sku


def test_driver_era_and_gfd_spellings_are_one_part():
    names = ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB", "nvidia a100 sxm4 40gb")
    assert {resolve_gpu(n).sku for n in names} == {"A100-SXM4-40GB"}
    assert resolve_gpu("Tesla-T4").sku == resolve_gpu("Tesla T4").sku == "T4-16GB"


def test_h100_named_plainly():
    # the driver names both the 94 GB and the 64 GB SXM5 part "NVIDIA H100": memory chooses
    rec = resolve_gpu("NVIDIA H100")
    assert (rec.model, rec.memory_gb, rec.form_factor, rec.sku) == ("H100", None, "sxm", "")
    assert resolve_gpu("NVIDIA H100", memory_mib=95830).sku == "H100-SXM5-94GB"
    assert resolve_gpu("NVIDIA H100", memory_mib=65247).sku == "H100-SXM-64GB"
    assert resolve_gpu("NVIDIA H100", 0x2339).sku == "H100-SXM5-94GB"
    # the same bare name on an 80 GB card: memory wins, the form factor stays unknown
    rec = resolve_gpu("NVIDIA H100", memory_mib=81559)
    assert (rec.model, rec.memory_gb, rec.sku, rec.form_factor) == ("H100", 80, "H100-80GB", "")
    assert rec.conflicts == ()


@pytest.mark.parametrize("name,mib,sku", [
    ("Tesla V100-SXM2...", 16152, "V100-SXM2-16GB"),
    ("Tesla V100-SXM2...", 32510, "V100-SXM2-32GB"),
    ("NVIDIA A100-SXM...", 81920, "A100-SXM4-80GB"),
    ("NVIDIA A100-SXM...", 40960, "A100-SXM4-40GB"),
    ("NVIDIA A100 80G...", 81920, "A100-PCIe-80GB"),
    ("NVIDIA RTX 6000 Ada Gene...", 49140, "RTX-6000-Ada-48GB"),
    ("NVIDIA L4...", 23034, "L4-24GB"),
    ("NVIDIA L4…", 46068, None),
])
def test_truncated_names_resolve_with_memory(name, mib, sku):
    rec = resolve_gpu(name, memory_mib=mib)
    if sku is None:  # L40 and L40S are both 48 GB: the size alone cannot choose
        assert rec.model == "" and rec.source == "fallback" and rec.memory_gb == 48
    else:
        assert (rec.sku, rec.source) == (sku, "name")


def test_truncated_name_without_memory_is_not_guessed():
    rec = resolve_gpu("NVIDIA L4...")
    assert rec.source == "fallback" and rec.model == "" and rec.raw_name == "NVIDIA L4..."


def test_model_words_in_an_unknown_name_give_the_model_but_no_specific_sku():
    rec = resolve_gpu("NVIDIA H100 80GB HBM3e")
    assert (rec.model, rec.memory_gb, rec.sku, rec.source) == ("H100", 80, "H100-80GB", "name")
    rec = resolve_gpu("NVIDIA RTX PRO 6000 Blackwell Desktop Edition", memory_mib=97887)
    assert rec.model == "RTX-PRO-6000-Blackwell" and rec.sku == "RTX-PRO-6000-Blackwell-96GB"


@pytest.mark.parametrize("name,model,memory_gb,profile", [
    ("NVIDIA A10-4Q", "A10", 24, "A10-4Q"),
    ("GRID A100D-4C", "A100", 80, "A100D-4C"),
    ("GRID A100D-1-10C", "A100", 80, "A100D-1-10C"),
    ("GRID A100-2C", "A100", 40, "A100-2C"),
    ("GRID P4-1Q", "P4", 8, "P4-1Q"),
    ("GRID P40-2B", "P40", 24, "P40-2B"),
    ("NVIDIA RTX Pro 6000 Blackwell DC-1-3Q", "RTX-PRO-6000-Blackwell", 96, "RTX-Pro-6000-Blackwell-DC-1-3Q"),
])
def test_vgpu_names_are_parsed(name, model, memory_gb, profile):
    rec = resolve_gpu(name, memory_mib=4096)  # the guest's framebuffer must not choose the part
    assert (rec.model, rec.memory_gb, rec.vgpu_profile, rec.virtualization) == (model, memory_gb, profile, "vgpu")
    assert rec.memory_mib == 4096 and rec.source == "name"


def test_vgpu_of_an_unknown_board_keeps_the_profile():
    rec = resolve_gpu("GRID X9000-8Q")
    assert (rec.source, rec.virtualization, rec.vgpu_profile) == ("fallback", "vgpu", "X9000-8Q")


def test_mig_device_names_and_driver_dependent_profile_names():
    rec = resolve_gpu("MIG 3g.40gb", memory_mib=40448)
    assert (rec.model, rec.memory_gb, dict(rec.mig_profiles)) == ("H100", 80, {"3g.40gb": 1})
    rec = resolve_gpu("MIG 3g.40gb", memory_mib=40192)
    assert rec.model == "A100"
    # R535/R545 call A100-80GB's 3g.40gb "3g.39gb": one canonical name
    rec = resolve_gpu("NVIDIA A100-SXM4-80GB", 0x20B2, mig_capable=True, mig_enabled=True,
                      mig_profiles=["3g.39gb", "3g.40gb", "1g.10gb"])
    assert dict(rec.mig_profiles) == {"3g.40gb": 2, "1g.10gb": 1}
    # some GB200 boards say 1g.23gb for 1g.24gb
    rec = resolve_gpu("NVIDIA GB200", 0x2941, mig_enabled=True, mig_profiles=["1g.23gb"] * 7)
    assert dict(rec.mig_profiles) == {"1g.24gb": 7}


def test_mig_capability_from_nvml_or_the_table():
    assert resolve_gpu("NVIDIA A100-SXM4-80GB", 0x20B2).mig_capable is True
    assert resolve_gpu("NVIDIA A10G", 0x2237).mig_capable is False
    assert resolve_gpu("NVIDIA A100-SXM4-80GB", 0x20B2, mig_capable=False).mig_capable is False
    rec = resolve_gpu("NVIDIA H100 80GB HBM3", 0x2330, mig_enabled=False, mig_profiles=[])
    assert rec.mig_enabled is False and rec.mig_profiles == ()


@pytest.mark.parametrize("cc,family", [
    ("3.7", "kepler"), ("6.1", "pascal"), ("7.0", "volta"), ("7.5", "turing"), ("8.0", "ampere"),
    ("8.6", "ampere"), ("8.9", "ada-lovelace"), ("9.0", "hopper"), ("10.0", "blackwell"),
    ("12.0", "blackwell"), ("13.0", "rubin"), ("4.0", ""), ("x", ""),
])
def test_family_from_compute_capability(cc, family):
    assert family_for(cc) == family


def test_nvml_compute_capability_decides_the_family():
    rec = resolve_gpu("Some Unknown Board", compute_capability="9.0")
    assert (rec.family, rec.source, rec.model) == ("hopper", "fallback", "")


@pytest.mark.parametrize("mode,want", [("passthrough", "passthrough"), ("vgpu", "vgpu"), ("none", "none"),
                                       (1, "passthrough"), ("HOST_VGPU", "none"), (None, "none"), ("weird", "none")])
def test_virtualization_mode(mode, want):
    assert resolve_gpu("NVIDIA L4", 0x27B8, virtualization_mode=mode).virtualization == want


@pytest.mark.parametrize("name", ["", "Graphics Device", "Unknown", "Totally New Accelerator 9000", "???"])
def test_unknown_parts_fall_back_and_never_raise(name):
    rec = resolve_gpu(name, memory_mib=12345)
    assert rec.source == "fallback" and rec.raw_name == name.strip() and rec.unknown
    assert rec.model == "" and rec.sku == "" and rec.memory_mib == 12345


def test_unknown_pci_id_falls_through_to_the_name():
    rec = resolve_gpu("NVIDIA L40S", 0xFFFE, memory_mib=46068)
    assert (rec.sku, rec.source, rec.pci_device_id) == ("L40S-48GB", "name", "0xFFFE")


def test_split_pci_id():
    assert split_pci_id(0x233010DE) == (0x2330, 0x10DE)
    assert split_pci_id(0x2330) == (0x2330, None)
    assert split_pci_id("0x20B2") == (0x20B2, None)
    assert split_pci_id(None) == (None, None)
    assert resolve_gpu("x", 0x12341002).vendor == "0x1002"


def test_records_are_frozen_and_json_ready():
    rec = resolve_gpu("NVIDIA H100 80GB HBM3", 0x2330)
    with pytest.raises(Exception):
        rec.model = "other"
    data = rec.as_json()
    assert set(data) >= {"vendor", "family", "chip", "model", "sku", "form_factor", "memory_gb", "memory_mib",
                         "compute_capability", "pci_device_id", "virtualization", "vgpu_profile",
                         "mig_capable", "mig_enabled", "mig_profiles", "source", "raw_name"}
    assert isinstance(data["mig_profiles"], dict)
