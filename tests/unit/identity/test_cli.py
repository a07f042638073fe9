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
from gpulse.nvml.reading import DeviceFacts, DeviceReading, NvmlReading
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
        "nvml_value": "A10G-24GB", "field": "model"} and value == 1
    assert fams["gpulse_identity_unknown_gpus"].samples == [(("n1",), 0.0)]
