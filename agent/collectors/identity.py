"""Identity families: gpulse_gpu_info, gpulse_node_info, gpulse_identity_conflict and
gpulse_identity_unknown_gpus, from Snapshot.identity (an gpulse.identity IdentityView).
Nothing is yielded before the first identity resolution."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..catalog import family
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _row(fam: Family, values: Mapping[str, Any]) -> tuple[str, ...]:
    """Label values in the family's label order, so catalog label changes cannot misalign."""
    return tuple(_text(values.get(name)) for name in fam.labelnames)


def collect(snapshot: Snapshot) -> Iterator[Family]:
    view = snapshot.identity
    if view is None:
        return
    node = view.node
    node_name = node.name or snapshot.node_name

    gpu_info = family("gpulse_gpu_info")
    for uuid, rec in view.gpus.items():
        values = rec.as_json()
        values.update(gpu=view.indexes.get(uuid, ""), uuid=uuid)
        gpu_info.add(_row(gpu_info, values), 1)
    yield gpu_info

    node_info = family("gpulse_node_info")
    node_info.add(_row(node_info, {
        "node": node_name, "cloud": node.cloud, "region": node.region, "zone": node.zone,
        "instance_type": node.instance_type, "gpu_model": node.gpu_model,
        "gpu_count": node.gpu_count, "driver_version": node.driver_version,
        "cuda_version": node.cuda_version,
    }), 1)
    yield node_info

    conflict = family("gpulse_identity_conflict")
    for c in view.conflicts:
        values = c.as_json()
        values["node"] = node_name
        conflict.add(_row(conflict, values), 1)
    yield conflict

    unknown = family("gpulse_identity_unknown_gpus")
    unknown.add(_row(unknown, {"node": node_name}), view.unknown_count)
    yield unknown


COLLECTOR = FunctionCollector("identity", ("gpulse_gpu_info", "gpulse_node_info", "gpulse_identity_conflict",
                                           "gpulse_identity_unknown_gpus"), collect)
