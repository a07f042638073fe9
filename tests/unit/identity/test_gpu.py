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


# --- MIG device names: the parent's part, the instance's profile -----------------------------
@pytest.mark.parametrize("name,model,memory_gb,form_factor,profile", [
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "A100", 40, "sxm", "1g.5gb"),
    ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "A100", 80, "sxm", "3g.40gb"),  # "40gb" is the instance's
    ("NVIDIA A100 80GB PCIe MIG 1g.10gb", "A100", 80, "pcie", "1g.10gb"),
    ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", "H100", 80, "sxm", "3g.40gb"),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "H100", 80, "sxm", "1g.10gb+me"),
    ("NVIDIA H100 NVL MIG 1g.12gb", "H100", 94, "nvl", "1g.12gb"),
    ("NVIDIA H100 MIG 1g.12gb", "H100", 94, "sxm", "1g.12gb"),  # "NVIDIA H100" is 94 or 64 GB: the profile says 94
    ("NVIDIA H200 MIG 1g.18gb", "H200", 141, "sxm", "1g.18gb"),
    ("NVIDIA GH200 480GB MIG 2g.24gb", "GH200", 96, "superchip", "2g.24gb"),
    ("NVIDIA B200 MIG 1g.23gb", "B200", 180, "sxm", "1g.23gb"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition MIG 1g.24gb", "RTX-PRO-6000-Blackwell", 96, "pcie", "1g.24gb"),
    ("A100-SXM4-40GB MIG 4c.7g.40gb", "A100", 40, "sxm", "7g.40gb"),  # R450 name, compute-instance split
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "A100", 40, "sxm", "1g.5gb"),  # GPU Feature Discovery's spelling
])
def test_mig_device_names_resolve_to_the_parent(name, model, memory_gb, form_factor, profile):
    for mib in (None, 9856, 81559):  # the instance's memory, or the parent's: neither picks the part
        rec = resolve_gpu(name, memory_mib=mib)
        assert (rec.model, rec.memory_gb, rec.form_factor, rec.mig_profile) == (model, memory_gb, form_factor, profile)
        assert rec.mig_enabled and rec.mig_capable and rec.source == "name" and rec.conflicts == ()


def test_mig_device_name_with_the_parents_pci_id():
    rec = resolve_gpu("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 0x20B2, memory_mib=9856, compute_capability="8.0")
    assert (rec.sku, rec.source, rec.mig_profile, rec.conflicts) == ("A100-SXM4-80GB", "pciid", "1g.10gb", ())


# --- vGPU types: the board and the type --------------------------------------------------------
@pytest.mark.parametrize("name,model,memory_gb,form_factor,profile", [
    ("GRID V100D-8C", "V100", 32, "pcie", "V100D-8C"),
    ("GRID V100DX-32C", "V100", 32, "sxm", "V100DX-32C"),
    ("GRID RTX6000-1Q", "Quadro-RTX-6000", 24, "pcie", "RTX6000-1Q"),
    ("NVIDIA A100-40C", "A100", 40, "", "A100-40C"),
    ("NVIDIA A100DX-80C", "A100", 80, "sxm", "A100DX-80C"),
    ("GRID A100D-1-20C", "A100", 80, "", "A100D-1-20C"),
    ("NVIDIA A10-24Q", "A10", 24, "pcie", "A10-24Q"),
    ("NVIDIA H100XM-80C", "H100", 80, "sxm", "H100XM-80C"),
    ("NVIDIA H100L-94C", "H100", 94, "nvl", "H100L-94C"),
    ("NVIDIA H200-70C", "H200", 141, "nvl", "H200-70C"),
    ("H20X-141C", "H20", 141, "sxm", "H20X-141C"),  # bare: counts because the board is known
    ("GRID T4-8C", "T4", 16, "pcie", "T4-8C"),
    ("GRID M60-0B", "M60", 8, "pcie", "M60-0B"),
    ("NVIDIA L40S-48C", "L40S", 48, "pcie", "L40S-48C"),
])
def test_vgpu_types_resolve_their_board(name, model, memory_gb, form_factor, profile):
    rec = resolve_gpu(name, memory_mib=8192)
    assert (rec.model, rec.memory_gb, rec.form_factor, rec.vgpu_profile) == (model, memory_gb, form_factor, profile)
    assert rec.virtualization == "vgpu" and rec.conflicts == ()


def test_a_bare_type_like_name_of_an_unknown_board_is_not_a_vgpu():
    assert resolve_gpu("X9000-8Q").virtualization == "none"


# --- names outside the tables: grammar, model words, form-factor words --------------------------
@pytest.mark.parametrize("name,mib,model,memory_gb,form_factor", [
    ("NVIDIA GeForce RTX 4090 D", 24564, "RTX-4090-D", 24, "pcie"),
    ("NVIDIA GeForce RTX 5090 D v2", 24463, "RTX-5090-D", 24, "pcie"),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", 16376, "RTX-4070-Ti-SUPER", 16, "pcie"),
    ("NVIDIA GeForce RTX 2080 with Max-Q Design", 8192, "RTX-2080-Laptop", 8, ""),
    ("NVIDIA GeForce RTX 5080 Laptop GPU", 16303, "RTX-5080-Laptop", 16, ""),
    ("NVIDIA GeForce RTX 3060 Lite Hash Rate", 12288, "RTX-3060", 12, "pcie"),
    ("NVIDIA GeForce GTX 1650 Ti", 4096, "GTX-1650-Ti", 4, ""),
    ("NVIDIA GeForce MX450", 2048, "MX-450", 2, "pcie"),
    ("NVIDIA RTX 3500 Ada Generation Laptop GPU", 12282, "RTX-3500-Ada-Laptop", 12, ""),
    ("NVIDIA RTX A3000 12GB Laptop GPU", 12288, "RTX-A3000-Laptop", 12, ""),
    ("NVIDIA T500", 2048, "T500", 2, "pcie"),
    ("Tesla V100-SXM3-32GB", None, "V100", 32, "sxm"),
    ("Tesla V100-SXMX-32GB", None, "V100", 32, ""),
    ("NVIDIA H100 SXM5 80GB", None, "H100", 80, "sxm"),  # a form factor word the tables need not list
    ("NVIDIA B200 SXM6", None, "B200", 180, "sxm"),
])
def test_names_outside_the_tables_keep_what_their_words_say(name, mib, model, memory_gb, form_factor):
    rec = resolve_gpu(name, memory_mib=mib)
    assert (rec.model, rec.memory_gb, rec.form_factor, rec.source) == (model, memory_gb, form_factor, "name")


@pytest.mark.parametrize("name,mib,model,memory_gb", [
    ("NVIDIA GeForce RTX 5080 ...", 16303, "RTX-5080-Laptop", 16),  # cut after a space: a longer name
    ("NVIDIA TITAN X ...", 12192, "TITAN-X-Pascal", 12),  # not the TITAN Xp
    ("GeForce GTX 106...", 6064, "GTX-1060", 6),
    ("Tesla V100S-PCI...", 32510, "V100S", 32),
])
def test_truncation_keeps_the_words_it_shows(name, mib, model, memory_gb):
    rec = resolve_gpu(name, memory_mib=mib)
    assert (rec.model, rec.memory_gb) == (model, memory_gb)


# --- disagreements: the majority decides, the rest is published ------------------------------
def conflicts(rec):
    return [(c.label, c.label_value, c.field, c.expected, c.nvml_value) for c in rec.conflicts]


def test_nvidias_mock_gb200_on_the_h100_pci_id_is_a_gb200_with_a_conflict():
    rec = resolve_gpu("NVIDIA GB200", 0x233010DE, 0x181710DE, 196608, "10.0")
    assert (rec.model, rec.sku, rec.memory_gb, rec.family, rec.source) == ("GB200", "GB200-186GB", 186, "blackwell", "name")
    assert rec.pci_device_id == "0x2330"  # published as NVML said it
    assert conflicts(rec) == [("nvml:pci_device_id", "0x2330", "model", "H100-SXM5-80GB", "GB200-186GB")]


def test_the_pci_id_wins_a_tie_and_the_name_is_flagged():
    # NVIDIA's mock L40S profile uses the L40's id: both 48 GB, CC 8.9 -- nothing breaks the tie
    rec = resolve_gpu("NVIDIA L40S", 0x26B5, memory_mib=49152, compute_capability="8.9")
    assert (rec.model, rec.source) == ("L40", "pciid")
    assert conflicts(rec) == [("nvml:name", "NVIDIA L40S", "model", "L40S-48GB", "L40-48GB")]


def test_a_name_stating_another_variant_of_the_ids_model_is_flagged():
    rec = resolve_gpu("NVIDIA A100-SXM4-80GB", 0x20B5, memory_mib=81920)
    assert (rec.sku, rec.form_factor) == ("A100-PCIe-80GB", "pcie")
    assert conflicts(rec) == [("nvml:name", "NVIDIA A100-SXM4-80GB", "form_factor", "sxm", "pcie")]


def test_a_compute_capability_the_part_cannot_have_is_flagged():
    rec = resolve_gpu("NVIDIA H100 80GB HBM3", 0x2330, memory_mib=81559, compute_capability="8.0")
    assert (rec.model, rec.compute_capability, rec.family) == ("H100", "8.0", "ampere")  # as NVML says
    assert conflicts(rec) == [("nvml:compute_capability", "8.0", "compute_capability", "8.0", "9.0")]


def test_more_memory_than_the_part_is_published_and_flagged():
    rec = resolve_gpu("NVIDIA GeForce RTX 4090 D", memory_mib=49140)
    assert (rec.model, rec.memory_gb, rec.sku) == ("RTX-4090-D", 48, "RTX-4090-D-48GB")
    assert conflicts(rec) == [("nvml:memory_total", "49140MiB", "memory_gb", "48", "24")]
    rec = resolve_gpu("NVIDIA GeForce RTX 2080 Ti", memory_mib=22528)
    assert (rec.memory_gb, conflicts(rec)) == (22, [("nvml:memory_total", "22528MiB", "memory_gb", "22", "11")])


def test_less_memory_than_the_part_keeps_the_part_and_is_flagged():
    rec = resolve_gpu("NVIDIA L20", memory_mib=8376)
    assert (rec.model, rec.memory_gb) == ("L20", 48)
    assert conflicts(rec) == [("nvml:memory_total", "8376MiB", "memory_gb", "8", "48")]


@pytest.mark.parametrize("name,pci,mib,cc", [
    ("NVIDIA H100 80GB HBM3", 0x2330, 81559, "9.0"), ("NVIDIA A100-SXM4-40GB", 0x20B0, 40960, "8.0"),
    ("NVIDIA GB200", 0x2941, 189471, "10.0"), ("NVIDIA GB200", 0x2941, 196608, "10.0"),  # OCI reports 192 GiB
    ("Tesla T4", 0x1EB8, 15079, "7.5"), ("NVIDIA GB10", 0x2E12, 121856, "12.1"), ("NVIDIA B300 SXM6 AC", 0x3182, 275040, "10.3"),
    ("NVIDIA GeForce RTX 3060", 0x2487, 12288, "8.6"), ("NVIDIA GeForce RTX 3060", 0x2544, 8192, "8.6"),
])
def test_consistent_real_identities_raise_no_conflict(name, pci, mib, cc):
    rec = resolve_gpu(name, pci, memory_mib=mib, compute_capability=cc)
    assert rec.conflicts == () and rec.source == "pciid", conflicts(rec)


def test_compute_capability_is_normalized():
    from gpulse.identity.gpu import normalize_compute_capability
    assert [normalize_compute_capability(v) for v in ("9.0", (9, 0), "9.0a", "[N/A]", None, "12.1")] == [
        "9.0", "9.0", "9.0", "", "", "12.1"]


@pytest.mark.parametrize("printed,name", [
    ("b'Tesla T4'", "Tesla T4"),  # pynvml before 11.5 returned bytes
    ("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5a4b0e0c-0000-0000-0000-000000000000)", "NVIDIA A100-SXM4-40GB"),
    ("  MIG 3g.40gb     Device  0: (UUID: MIG-5a4b0e0c)", "MIG 3g.40gb"),
    ("NVIDIA H100 80GB HBM3          On", "NVIDIA H100 80GB HBM3"),
    ("NVIDIA GeForce RTX 3060 Off", "NVIDIA GeForce RTX 3060 Off"),  # one space: part of a name
])
def test_what_tools_print_around_a_name_is_not_the_name(printed, name):
    from gpulse.identity.rawname import unwrap
    assert unwrap(printed) == name
    rec = resolve_gpu(printed, memory_mib=40448 if "MIG" in printed else None)
    assert rec.raw_name == printed.strip() and rec.source != "fallback"


def test_a_vgpu_guest_s_memory_never_picks_the_part():
    # NVML says vGPU although the name is the board's: the framebuffer is a slice
    rec = resolve_gpu("NVIDIA A100-SXM4-40GB", memory_mib=20480, virtualization_mode="vgpu")
    assert (rec.model, rec.memory_gb, rec.virtualization, rec.conflicts) == ("A100", 40, "vgpu", ())
