"""dcgm-exporter compatible families (--collector.dcgm_compat, alias --compat.dcgm):
DCGM_FI_* names and labels, so NVIDIA's Grafana dashboard (grafana.com 12239) and alerts
written for dcgm-exporter keep working on gpulse. The names, types, help texts and scales
are catalog data (gpulse.catalog.DCGM_FIELDS); this module only renders them.

Unlike dcgm-exporter, a GPU shared by several pods (time-slicing, MPS) carries no pod
labels here: dcgm-exporter labels it with whichever pod the kubelet listed last, which
flaps; gpulse's per-pod shares are in gpulse_pod_gpu_utilization_ratio.

Fields of the default list with no gpulse source are not rendered (never as NaN):
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL (DCGM's own counter unit), DCGM_FI_DEV_VGPU_LICENSE_STATUS,
DCGM_FI_PROF_PCIE_TX_BYTES/RX_BYTES (rates; gpulse exports the byte counters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Optional

from ..catalog import DCGM_DERIVED, DCGM_FIELDS, DCGM_LABELS, MIB
from ..family import Family
from ..snapshot import GpuState, Snapshot
from .base import FunctionCollector

ROW_STATE = "gpulse_gpu_remapped_rows"


def _remapped(state: str) -> Callable[[GpuState], Optional[float]]:
    return lambda g: g.labeled.get(ROW_STATE, {}).get((state,))


def _fb_free(g: GpuState) -> Optional[float]:
    total, used = g.values.get("gpulse_gpu_memory_total_bytes"), g.values.get("gpulse_gpu_memory_used_bytes")
    if total is None or used is None:
        return None
    return max(total - used, 0.0) / MIB


def _last_xid(g: GpuState) -> Optional[float]:
    """dcgm-exporter's XID gauge holds the last XID code, 0 when none was seen. gpulse counts
    XIDs per code; the last one is unambiguous only when one code was seen."""
    codes = [labels[0] for labels, n in g.labeled.get("gpulse_gpu_xid_errors_total", {}).items() if n > 0]
    if not codes:
        return 0.0
    if len(codes) == 1:
        return float(codes[0])
    return None


_DERIVE: dict[str, Callable[[GpuState], Optional[float]]] = {
    "DCGM_FI_DEV_XID_ERRORS": _last_xid,
    "DCGM_FI_DEV_FB_FREE": _fb_free,
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": _remapped("uncorrectable"),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": _remapped("correctable"),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": _remapped("failure"),
}
assert set(_DERIVE) == {name for name, *_ in DCGM_DERIVED}, "every derived dcgm family has a function"


def _single_pods(snapshot: Snapshot) -> dict[tuple[str, ...], tuple[str, str, str]]:
    """Device key -> (container, namespace, pod) for devices that exactly one container holds.
    Keys: ("gpu", uuid) for whole GPUs, ("mig", uuid, gpu_instance) for MIG instances."""
    holders: dict[tuple[str, ...], set[tuple[str, str, str]]] = {}
    for share in snapshot.pods:
        key = ("mig", share.uuid, str(share.gpu_instance)) if share.gpu_instance != "" else ("gpu", share.uuid)
        holders.setdefault(key, set()).add((share.container, share.namespace, share.pod))
    return {key: next(iter(who)) for key, who in holders.items() if len(who) == 1}


def collect(snapshot: Snapshot) -> Iterator[Family]:
    families = {f.name: Family(f.name, f.type, f.help, DCGM_LABELS) for f in DCGM_FIELDS}
    for name, type_, help_, _ in DCGM_DERIVED:
        families[name] = Family(name, type_, help_, DCGM_LABELS)
    owners = _single_pods(snapshot)
    gpus = {}
    for g in snapshot.gpus:
        if not g.up:
            continue  # a lost GPU reports nothing; dcgm-exporter drops it too
        base = (str(g.index), g.uuid, g.pci_bus_id, f"nvidia{g.index}", g.name)
        tail = (snapshot.node_name, g.facts.driver_version)
        gpus[g.uuid] = (base, tail)
        pod = owners.get(("gpu", g.uuid), ("", "", ""))
        labels = base + ("", "") + tail + pod
        for f in DCGM_FIELDS:
            families[f.name].add(labels, _scaled(g.values.get(f.source), f.scale))
        for name, derive in _DERIVE.items():
            families[name].add(labels, derive(g))
    for m in snapshot.migs:
        if m.uuid not in gpus:
            continue
        base, tail = gpus[m.uuid]
        pod = owners.get(("mig", m.uuid, str(m.gpu_instance)), ("", "", ""))
        labels = base + (m.profile, str(m.gpu_instance)) + tail + pod
        for f in DCGM_FIELDS:
            if f.mig:
                families[f.name].add(labels, _scaled(m.values.get(_mig_source(f.source)), f.scale))
    yield from families.values()


def _mig_source(source: str) -> str:
    return source.replace("gpulse_gpu_", "gpulse_mig_", 1)


def _scaled(value: Optional[float], scale: float) -> Optional[float]:
    # Rounded to 9 decimals so unit changes do not print float noise (63.59999999999999).
    return None if value is None else round(value * scale, 9)


COLLECTOR = FunctionCollector("dcgm_compat", tuple(f.name for f in DCGM_FIELDS) + tuple(_DERIVE), collect)
