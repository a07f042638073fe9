"""--compat.dcgm: dcgm-exporter's names, units, types and labels from a hand-built Snapshot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from gpulse.catalog import BY_NAME, DCGM_DERIVED, DCGM_FIELDS, DCGM_LABELS
from gpulse.collectors import dcgm_compat
from gpulse.config import Config
from gpulse.kernels import ExpositionEncoder
from gpulse.nvml.reading import DeviceFacts
from gpulse.snapshot import GpuState, MigState, PodShare, Snapshot
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, load_flags, shared_path

ROOT = Path(ROOT)
GIB = 1024 ** 3



def _gpu(index, uuid, **values):
    labeled = values.pop("labeled", {})
    return GpuState(index=index, uuid=uuid, name="NVIDIA H100 80GB HBM3", pci_bus_id=f"00000000:{index + 0x18:02X}:00.0",
                    values=values, labeled=labeled, facts=DeviceFacts(driver_version="570.86.15"))


def snapshot():
    gpus = (
        _gpu(0, "GPU-aaaa", gpulse_gpu_utilization_ratio=0.42, gpulse_gpu_memory_used_bytes=2 * GIB,
             gpulse_gpu_memory_total_bytes=80 * GIB, gpulse_gpu_sm_clock_hertz=1.98e9,
             gpulse_gpu_energy_joules_total=5.5, gpulse_gpu_power_watts=312.5, gpulse_gpu_temperature_celsius=61,
             labeled={"gpulse_gpu_remapped_rows": {("correctable",): 2.0, ("uncorrectable",): 0.0,
                                                   ("pending",): 0.0, ("failure",): 0.0},
                      "gpulse_gpu_xid_errors_total": {("63",): 1.0}}),
        _gpu(1, "GPU-bbbb", gpulse_gpu_utilization_ratio=0.9,
             labeled={"gpulse_gpu_xid_errors_total": {("13",): 2.0, ("31",): 1.0}}),
        GpuState(index=2, uuid="GPU-cccc", name="NVIDIA H100 80GB HBM3", up=False,
                 values={"gpulse_gpu_utilization_ratio": 0.0}),
        _gpu(3, "GPU-dddd", gpulse_gpu_temperature_celsius=40),
    )
    migs = (MigState(gpu=3, uuid="GPU-dddd", gpu_instance=7, compute_instance=0, profile="1g.10gb", mig_uuid="MIG-1",
                     values={"gpulse_mig_utilization_ratio": 0.25, "gpulse_mig_memory_used_bytes": 512 * 1024 ** 2}),)
    pods = (
        PodShare("ml", "train-0", "trainer", 0, "GPU-aaaa", "exclusive", 1.0, 0.42),
        PodShare("llm", "chat-0", "vllm", 1, "GPU-bbbb", "time-slicing", 0.5, 0.5),
        PodShare("llm", "chat-1", "vllm", 1, "GPU-bbbb", "time-slicing", 0.5, 0.4),
        PodShare("llm", "tiny-0", "vllm", 3, "GPU-dddd", "mig", 1.0, 0.25, gpu_instance="7", compute_instance="0",
                 mig_profile="1g.10gb", mig_uuid="MIG-1"),
    )
    return Snapshot(timestamp=1.0, node_name="gpu-node-1", gpus=gpus, migs=migs, pods=pods)


def samples(snap=None):
    """{(name, frozenset(labels)): value} from the rendered and parsed exposition."""
    text = ExpositionEncoder().render(list(dcgm_compat.collect(snap or snapshot()))).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            # The parser names counter samples <family>_total; dcgm-exporter's counters
            # have no suffix, and the text must carry them as they are.
            name = fam.name if fam.type == "counter" and s.name == fam.name + "_total" else s.name
            if name != s.name:
                assert f"\n{name}{{" in text, name
            out[(name, frozenset(s.labels.items()))] = s.value
    return out


def find(all_samples, name, **labels):
    hits = [(dict(k[1]), v) for k, v in all_samples.items()
            if k[0] == name and all(dict(k[1]).get(l) == str(x) for l, x in labels.items())]
    return hits


def test_off_by_default_and_on_with_either_switch():
    from gpulse.collectors import REGISTRY
    assert "dcgm_compat" not in {c.name for c in REGISTRY.enabled(Config())}
    for flag in ("--collector.dcgm_compat", "--compat.dcgm", "--compat.dcgm=true"):
        cfg = load_flags([flag])
        assert "dcgm_compat" in {c.name for c in REGISTRY.enabled(cfg)}, flag
    assert "dcgm_compat" not in {c.name for c in REGISTRY.enabled(load_flags(["--compat.dcgm", "--no-compat.dcgm"]))}


def test_units_are_dcgm_units():
    s = samples()
    assert find(s, "DCGM_FI_DEV_GPU_UTIL", gpu=0)[0][1] == pytest.approx(42.0)
    assert find(s, "DCGM_FI_DEV_FB_USED", gpu=0, UUID="GPU-aaaa")[0][1] == 2048
    assert find(s, "DCGM_FI_DEV_FB_FREE", gpu=0)[0][1] == 78 * 1024
    assert find(s, "DCGM_FI_DEV_SM_CLOCK", gpu=0)[0][1] == pytest.approx(1980)
    assert find(s, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu=0)[0][1] == 5500
    assert find(s, "DCGM_FI_DEV_POWER_USAGE", gpu=0)[0][1] == 312.5
    assert find(s, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", gpu=0)[0][1] == 2
    assert find(s, "DCGM_FI_DEV_ROW_REMAP_FAILURE", gpu=0)[0][1] == 0


def test_gpu_labels_and_exclusive_pod():
    (labels, _), = find(samples(), "DCGM_FI_DEV_GPU_UTIL", gpu=0)
    assert labels == {"gpu": "0", "UUID": "GPU-aaaa", "pci_bus_id": "00000000:18:00.0", "device": "nvidia0",
                      "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-node-1",
                      "DCGM_FI_DRIVER_VERSION": "570.86.15",
                      "container": "trainer", "namespace": "ml", "pod": "train-0"}


def test_shared_gpu_has_no_single_pod_label():
    (labels, value), = find(samples(), "DCGM_FI_DEV_GPU_UTIL", gpu=1)
    assert value == pytest.approx(90.0)
    assert "pod" not in labels and "namespace" not in labels


def test_mig_instance_series():
    s = samples()
    (labels, value), = find(s, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpu=3)
    assert value == 0.25
    assert labels["GPU_I_PROFILE"] == "1g.10gb" and labels["GPU_I_ID"] == "7" and labels["UUID"] == "GPU-dddd"
    assert (labels["namespace"], labels["pod"], labels["container"]) == ("llm", "tiny-0", "vllm")
    (_, used), = find(s, "DCGM_FI_DEV_FB_USED", gpu=3, GPU_I_ID=7)
    assert used == 512
    # The parent GPU's own series carry no MIG labels.
    (parent, _), = find(s, "DCGM_FI_DEV_GPU_TEMP", gpu=3)
    assert "GPU_I_ID" not in parent


def test_unknown_values_are_omitted_not_nan():
    s = samples()
    assert find(s, "DCGM_FI_DEV_GPU_UTIL", gpu=3) == []  # no utilization known for GPU 3
    assert find(s, "DCGM_FI_DEV_GPU_UTIL", gpu=2) == []  # lost GPU
    assert all(v == v for v in s.values())


def test_last_xid():
    s = samples()
    assert find(s, "DCGM_FI_DEV_XID_ERRORS", gpu=0)[0][1] == 63  # one code seen: it is the last
    assert find(s, "DCGM_FI_DEV_XID_ERRORS", gpu=3)[0][1] == 0  # none seen
    assert find(s, "DCGM_FI_DEV_XID_ERRORS", gpu=1) == []  # two codes: which was last is unknown


def test_sources_are_catalog_families():
    for f in DCGM_FIELDS:
        assert f.source in BY_NAME, f.source
        if f.mig:
            assert dcgm_compat._mig_source(f.source) in BY_NAME, f.source


def test_names_and_types_match_dcgm_exporter_default_counters():
    enabled = {}
    with open(shared_path("anchors", "dcgm-exporter", "default-counters.csv")) as fh:
        for row in csv.reader(fh):
            if row and not row[0].lstrip().startswith("#") and len(row) >= 2:
                enabled[row[0].strip()] = row[1].strip()
    ours = {f.name: f.type for f in DCGM_FIELDS}
    ours.update({name: type_ for name, type_, _, _ in DCGM_DERIVED})
    for name, type_ in ours.items():
        assert enabled.get(name) == type_, f"{name}: dcgm-exporter has {enabled.get(name)!r}, we have {type_!r}"
    assert "DCGM_FI_DRIVER_VERSION" in DCGM_LABELS and enabled["DCGM_FI_DRIVER_VERSION"] == "label"
