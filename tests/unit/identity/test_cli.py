"""`gpulse identify`, `gpulse labels` and the identity collector."""

from __future__ import annotations

import argparse
import io
import json
import re

import pytest
from gpulse.catalog import BY_NAME
from gpulse.collectors import identity as identity_collector
from gpulse.config import Config
from gpulse.identity import IdentityResolver
from gpulse.identity.cli import add_identify_arguments, add_labels_arguments, identify_main, labels_main
from gpulse.nvml.reading import DeviceFacts, DeviceReading, MigReading, NvmlReading
from gpulse.snapshot import Snapshot


def parse(args, add=add_identify_arguments):
    parser = argparse.ArgumentParser(prog="gpulse identify")
    add(parser)
    return parser.parse_args(args)


def run(main, args, provider=None, add=add_identify_arguments):
    out = io.StringIO()
    code = main(parse(args, add), Config(), provider, out=out)
    return code, out.getvalue()


def test_done_when_identify_offline_json():
    code, out = run(identify_main, ["--name", "NVIDIA H100 80GB HBM3", "--pci-device-id", "0x2330",
                                    "--memory-mib", "81559", "--json"])
    rec = json.loads(out)
    assert code == 0
    assert (rec["model"], rec["memory_gb"], rec["form_factor"], rec["sku"]) == ("H100", 80, "sxm", "H100-SXM5-80GB")
    assert rec["source"] == "pciid" and rec["mig_supported_profiles"]["1g.10gb"] == 7


def test_identify_offline_unknown_part_is_not_an_error():
    code, out = run(identify_main, ["--name", "Quantum Accelerator 1", "--memory-mib", "40000", "--json"])
    rec = json.loads(out)
    assert code == 0 and rec["source"] == "fallback" and rec["raw_name"] == "Quantum Accelerator 1"
    assert rec["memory_gb"] == 40 and rec["mig_supported_profiles"] == {}


def test_identify_offline_text():
    code, out = run(identify_main, ["--name", "Tesla T4"])
    assert code == 0 and "T4-16GB" in out and "turing" in out


@pytest.mark.parametrize("args", [["--name", "x", "--pci-device-id", "zz"], ["--name", "x", "--memory-mib", "-1"],
                                  ["--name", "x", "--memory-mib", "lots"]])
def test_identify_bad_flags_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --" in err and ("invalid" in err or "must be positive" in err)


def test_identify_flags_without_name_and_without_a_node(capsys):
    assert run(identify_main, ["--memory-mib", "100"])[0] == 2
    assert run(identify_main, [])[0] == 2
    assert "--name" in capsys.readouterr().err


def view_of(n=2, name="NVIDIA A10G", pci=0x2237, node=None):
    devices = tuple(DeviceReading(index=i, uuid=f"GPU-{i}", name=name, facts=DeviceFacts(
        name=name, pci_device_id=pci, memory_mib=23028, compute_capability="8.6")) for i in range(n))
    return IdentityResolver("/nonexistent").resolve(
        NvmlReading(timestamp=0, devices=devices, driver_version="535.183.01", cuda_version="12020"), node)


CONFLICTING_NODE = {"metadata": {"name": "n1", "labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}},
                    "spec": {"providerID": "gce://p/us-central1-a/n1"}}


def test_identify_this_node_table_and_json():
    code, out = run(identify_main, [], lambda: view_of(node=CONFLICTING_NODE))
    assert code == 0
    assert "cloud gcp" in out and "A10G-24GB" in out and "GPU-1" in out
    assert "conflict: cloud.google.com/gke-accelerator=nvidia-tesla-t4" in out
    code, out = run(identify_main, ["--json"], lambda: view_of())
    data = json.loads(out)
    assert [g["uuid"] for g in data["gpus"]] == ["GPU-0", "GPU-1"] and data["unknown_count"] == 0


@pytest.mark.parametrize("args,provided", [(["--name", "Quantum Accelerator 1"], False),
                                           (["--name", "NVIDIA H100 80GB HBM3"], False), ([], True)])
def test_text_output_uses_json_words_not_python(args, provided):
    """None, True and False are Python's spelling; the text output says -, true and false."""
    code, out = run(identify_main, args, (lambda: view_of(node=CONFLICTING_NODE)) if provided else None)
    words = set(re.findall(r"[A-Za-z]+", out))
    assert code == 0 and not words & {"None", "True", "False"}, out
    assert re.search(r"\b(true|false)\b", out)
    if args:
        assert re.search(r"^memory_mib +-$", out, re.M) and re.search(r"^mig_capable +(true|false)$", out, re.M)


def test_labels_prints_the_label_set():
    code, out = run(labels_main, [], lambda: view_of(), add_labels_arguments)
    lines = out.splitlines()
    assert code == 0 and "gpulse.dev/model=A10G" in lines and "gpulse.dev/count=2" in lines
    code, out = run(labels_main, ["--json"], lambda: view_of(), add_labels_arguments)
    assert json.loads(out)["gpulse.dev/sku"] == "A10G-24GB"


def test_collector_yields_nothing_before_identity():
    assert list(identity_collector.collect(Snapshot(timestamp=0, node_name="n"))) == []


def test_collector_families_follow_the_catalog():
    view = view_of(node=CONFLICTING_NODE)
    fams = {f.name: f for f in identity_collector.collect(Snapshot(timestamp=0, node_name="n", identity=view))}
    assert set(fams) == {"gpulse_gpu_info", "gpulse_node_info", "gpulse_identity_conflict", "gpulse_identity_unknown_gpus"}
    for fam in fams.values():
        assert fam.labelnames == BY_NAME[fam.name].labels
        assert all(len(values) == len(fam.labelnames) for values, _ in fam.samples)
    info = [dict(zip(fams["gpulse_gpu_info"].labelnames, v)) for v, _ in fams["gpulse_gpu_info"].samples]
    assert [(i["gpu"], i["uuid"], i["model"], i["sku"], i["memory_gb"], i["mig_capable"]) for i in info] == [
        ("0", "GPU-0", "A10G", "A10G-24GB", "24", "false"), ("1", "GPU-1", "A10G", "A10G-24GB", "24", "false")]
    node = dict(zip(fams["gpulse_node_info"].labelnames, fams["gpulse_node_info"].samples[0][0]))
    assert (node["node"], node["cloud"], node["gpu_model"], node["gpu_count"], node["cuda_version"]) == (
        "n1", "gcp", "A10G", "2", "12.2")
    (conflict, value), = fams["gpulse_identity_conflict"].samples
    assert dict(zip(fams["gpulse_identity_conflict"].labelnames, conflict)) == {
        "node": "n1", "label": "cloud.google.com/gke-accelerator", "label_value": "nvidia-tesla-t4",
        "nvml_value": "A10G-24GB", "field": "model", "gpu": "", "uuid": ""} and value == 1
    assert fams["gpulse_identity_unknown_gpus"].samples == [(("n1",), 0.0)]


def test_identify_offline_mig_device_name_resolves_to_its_parent():
    code, out = run(identify_main, ["--name", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", "--json"])
    rec = json.loads(out)
    assert code == 0
    assert (rec["model"], rec["memory_gb"], rec["form_factor"], rec["sku"]) == ("H100", 80, "sxm", "H100-SXM5-80GB")
    assert rec["mig_profile"] == "3g.40gb" and rec["mig_enabled"] and rec["conflicts"] == []
    code, out = run(identify_main, ["--name", "NVIDIA A100-SXM4-40GB MIG 1g.5gb"])
    assert code == 0 and "mig_profile" in out and "1g.5gb" in out and "A100-SXM4-40GB" in out


def test_identify_offline_vgpu_name_resolves_its_board():
    code, out = run(identify_main, ["--name", "GRID V100D-8C", "--memory-mib", "8192", "--json"])
    rec = json.loads(out)
    assert (rec["model"], rec["memory_gb"], rec["virtualization"], rec["vgpu_profile"]) == ("V100", 32, "vgpu", "V100D-8C")


def test_identify_offline_flags_a_contradictory_identity():
    # NVIDIA's mock NVML: a GB200 by name, memory and compute capability on the H100's PCI id
    args = ["--name", "NVIDIA GB200", "--pci-device-id", "0x233010DE", "--memory-mib", "196608",
            "--compute-capability", "10.0"]
    code, out = run(identify_main, args + ["--json"])
    rec = json.loads(out)
    assert code == 0 and rec["model"] == "GB200" and rec["sku"] == "GB200-186GB"
    assert [(c["label"], c["label_value"], c["field"]) for c in rec["conflicts"]] == [
        ("nvml:pci_device_id", "0x2330", "model")]
    code, out = run(identify_main, args)
    assert "nvml:pci_device_id" in out


def gb200_mock_view() -> object:
    mock = DeviceFacts(name="NVIDIA GB200", pci_device_id=0x2330, pci_subsystem_id=0x1817, memory_mib=196608,
                       compute_capability="10.0", virtualization_mode="none")
    devices = tuple(DeviceReading(i, f"GPU-{i}", "NVIDIA GB200", facts=mock) for i in range(2))
    return IdentityResolver(sysfs_root="/nonexistent").resolve(NvmlReading(timestamp=0, devices=devices),
                                                               {"metadata": {"name": "n1"}})


def test_a_gpus_own_disagreement_is_published_per_gpu():
    view = gb200_mock_view()
    assert {g.model for g in view.gpus.values()} == {"GB200"}
    fams = {f.name: f for f in identity_collector.collect(Snapshot(timestamp=0, node_name="n1", identity=view))}
    rows = [dict(zip(fams["gpulse_identity_conflict"].labelnames, v)) for v, _ in fams["gpulse_identity_conflict"].samples]
    assert [(r["gpu"], r["uuid"], r["label"], r["label_value"], r["field"], r["nvml_value"]) for r in rows] == [
        ("0", "GPU-0", "nvml:pci_device_id", "0x2330", "model", "GB200-186GB"),
        ("1", "GPU-1", "nvml:pci_device_id", "0x2330", "model", "GB200-186GB")]
    assert view.labels()["gpulse.dev/identity-conflicts"] == "2"
    code, out = run(identify_main, [], lambda: view)
    assert "conflict: GPU 0: nvml:pci_device_id=0x2330 implies model H100-SXM5-80GB" in out


def test_identify_lists_mig_devices_with_their_parents_part():
    facts = DeviceFacts(name="NVIDIA A100-SXM4-80GB", pci_device_id=0x20B2, memory_mib=81920,
                        compute_capability="8.0", mig_capable=True, mig_enabled=True,
                        mig_profiles=("1g.10gb", "3g.40gb"))
    device = DeviceReading(0, "GPU-0", facts.name, mig_enabled=True, facts=facts)
    migs = (MigReading(0, "GPU-0", 9, 0, "1g.10gb", "MIG-a", name="NVIDIA A100-SXM4-80GB MIG 1g.10gb"),
            MigReading(0, "GPU-0", 2, 0, "3g.40gb", "MIG-b", name="NVIDIA A100-SXM4-80GB MIG 3g.40gb"))
    view = IdentityResolver(sysfs_root="/nonexistent").resolve(NvmlReading(timestamp=0, devices=(device,), migs=migs))
    data = view.as_json()
    assert [(m["uuid"], m["mig_profile"], m["model"], m["memory_gb"], m["form_factor"]) for m in data["migs"]] == [
        ("MIG-b", "3g.40gb", "A100", 80, "sxm"), ("MIG-a", "1g.10gb", "A100", 80, "sxm")]
    code, out = run(identify_main, [], lambda: view)
    assert "MIG devices:" in out and "3g.40gb" in out and "MIG-a" in out
