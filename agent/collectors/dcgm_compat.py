"""dcgm-exporter compatible families (--compat.dcgm): DCGM_FI_* names and labels, so
NVIDIA's Grafana dashboard (grafana.com 12239) and alerts written for dcgm-exporter keep
working on gpulse.

Names, types and units follow dcgm-exporter's default counters (etc/default-counters.csv):
utilization in percent, memory in MiB, clocks in MHz, energy in millijoules. Labels follow
its GPU series: gpu, UUID, pci_bus_id, device ("nvidia<N>"), modelName, Hostname (the
name released dcgm-exporter versions up to 4.5.3-4.8.2 use), DCGM_FI_DRIVER_VERSION (a
"label" field of the default counters), GPU_I_PROFILE/GPU_I_ID on MIG instances, and
container/namespace/pod on devices attributed to one pod.

Unlike dcgm-exporter, a GPU shared by several pods (time-slicing, MPS) carries no pod
labels here: dcgm-exporter labels it with whichever pod the kubelet listed last, which
flaps; gpulse's per-pod shares are in gpulse_pod_gpu_utilization_ratio.

Fields of the default list with no gpulse source are not rendered (never as NaN):
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL (DCGM's own counter unit), DCGM_FI_DEV_VGPU_LICENSE_STATUS,
DCGM_FI_PROF_PCIE_TX_BYTES/RX_BYTES (rates; gpulse exports the byte counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..family import Family

NAME = "dcgm_compat"

MIB = 1024.0 * 1024.0
PERCENT = 100.0

GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID",
              "Hostname", "DCGM_FI_DRIVER_VERSION", "container", "namespace", "pod")


@dataclass(frozen=True)
class Field:
    name: str  # dcgm-exporter metric name
    type: str  # gauge | counter, as in its counters CSV
    help: str  # its help text
    source: str  # gpulse catalog family (GpuState.values / MigState.values key)
    scale: float = 1.0  # gpulse base unit -> DCGM unit
    mig: bool = False  # also rendered per MIG instance from MigState.values


# Per-device fields: value = snapshot value of `source` * scale.
FIELDS = (
    Field("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "gpulse_gpu_sm_clock_hertz", 1e-6),
    Field("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "gpulse_gpu_memory_clock_hertz", 1e-6),
    Field("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "gpulse_gpu_memory_temperature_celsius"),
    Field("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "gpulse_gpu_temperature_celsius"),
    Field("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "gpulse_gpu_power_watts"),
    Field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).",
          "gpulse_gpu_energy_joules_total", 1000.0),
    Field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", "gpulse_gpu_pcie_replay_errors_total"),
    Field("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "gpulse_gpu_utilization_ratio", PERCENT),
    Field("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "gpulse_gpu_memory_utilization_ratio", PERCENT),
    Field("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", "gpulse_gpu_encoder_utilization_ratio", PERCENT),
    Field("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", "gpulse_gpu_decoder_utilization_ratio", PERCENT),
    Field("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "gpulse_gpu_memory_used_bytes", 1 / MIB, mig=True),
    # Whole-GPU engine activity comes from GPM on Hopper+ (gpulse_gpu_tensor_active_ratio,
    # gpulse_gpu_dram_active_ratio once the gpu collector reads them); MIG instances' graphics
    # activity is gpulse_mig_utilization_ratio (GPM or a co-located dcgm-exporter).
    Field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
          "gpulse_mig_utilization_ratio", mig=True),
    Field("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.",
          "gpulse_gpu_tensor_active_ratio"),
    Field("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
          "Ratio of cycles the device memory interface is active sending or receiving data.",
          "gpulse_gpu_dram_active_ratio"),
)

# Fields derived from more than one gpulse value: (name, type, help, function of GpuState).
ROW_STATE = "gpulse_gpu_remapped_rows"


def _remapped(state: str) -> Callable:
    return lambda g: g.labeled.get(ROW_STATE, {}).get((state,))


def _fb_free(g) -> Optional[float]:
    total, used = g.values.get("gpulse_gpu_memory_total_bytes"), g.values.get("gpulse_gpu_memory_used_bytes")
    if total is None or used is None:
        return None
    return max(total - used, 0.0) / MIB


def _last_xid(g) -> Optional[float]:
    """dcgm-exporter's XID gauge holds the last XID code, 0 when none was seen. gpulse counts
    XIDs per code; the last one is unambiguous only when one code was seen."""
    codes = [labels[0] for labels, n in g.labeled.get("gpulse_gpu_xid_errors_total", {}).items() if n > 0]
    if not codes:
        return 0.0
    if len(codes) == 1:
        return float(codes[0])
    return None


DERIVED = (
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", _last_xid),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", _fb_free),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors",
     _remapped("uncorrectable")),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors",
     _remapped("correctable")),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed", _remapped("failure")),
)


def _single_pods(snapshot) -> dict:
    """Device key -> (container, namespace, pod) for devices that exactly one container holds.
    Keys: ("gpu", uuid) for whole GPUs, ("mig", uuid, gpu_instance) for MIG instances."""
    holders: dict = {}
    for share in snapshot.pods:
        key = ("mig", share.uuid, str(share.gpu_instance)) if share.gpu_instance != "" else ("gpu", share.uuid)
        holders.setdefault(key, set()).add((share.container, share.namespace, share.pod))
    return {key: next(iter(who)) for key, who in holders.items() if len(who) == 1}


def collect(snapshot, config):
    if not getattr(config, "compat_dcgm", False):
        return
    families = {f.name: Family(f.name, f.type, f.help, GPU_LABELS) for f in FIELDS}
    for name, type_, help_, _ in DERIVED:
        families[name] = Family(name, type_, help_, GPU_LABELS)
    owners = _single_pods(snapshot)
    gpus = {}
    for g in snapshot.gpus:
        if not g.up:
            continue  # a lost GPU reports nothing; dcgm-exporter drops it too
        base = (str(g.index), g.uuid, g.pci_bus_id, f"nvidia{g.index}", g.name)
        tail = (snapshot.node_name, str(g.raw.get("driver_version", "") or ""))
        gpus[g.uuid] = (base, tail)
        pod = owners.get(("gpu", g.uuid), ("", "", ""))
        labels = base + ("", "") + tail + pod
        for f in FIELDS:
            families[f.name].add(labels, _scaled(g.values.get(f.source), f.scale))
        for name, _, _, value in DERIVED:
            families[name].add(labels, value(g))
    for m in snapshot.migs:
        if m.uuid not in gpus:
            continue
        base, tail = gpus[m.uuid]
        pod = owners.get(("mig", m.uuid, str(m.gpu_instance)), ("", "", ""))
        labels = base + (m.profile, str(m.gpu_instance)) + tail + pod
        for f in FIELDS:
            if f.mig:
                families[f.name].add(labels, _scaled(m.values.get(_mig_source(f.source)), f.scale))
    yield from families.values()


def _mig_source(source: str) -> str:
    return source.replace("gpulse_gpu_", "gpulse_mig_", 1)


def _scaled(value, scale):
    # Rounded to 9 decimals so unit changes do not print float noise (63.59999999999999).
    return None if value is None else round(value * scale, 9)
