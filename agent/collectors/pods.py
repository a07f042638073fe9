"""Pod families: each container's allocation, utilization share and memory per GPU or
MIG instance (device-plugin or DRA); the unattributed rest of each shared GPU; processes
no pod could be tied to; DRA claims by holder and allocations no GPU could be found for.

Families are built fresh every tick, so a pod that left has no series at the next one.
Non-MIG shares leave the MIG labels "" and the renderer omits them.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector


def collect(snapshot: Snapshot) -> Iterator[Family]:
    allocated = catalog.family("gpulse_pod_gpu_allocated")
    utilization = catalog.family("gpulse_pod_gpu_utilization_ratio")
    memory = catalog.family("gpulse_pod_gpu_memory_used_bytes")
    for s in snapshot.pods:
        labels = (s.namespace, s.pod, s.container, str(s.gpu), s.uuid, s.sharing,
                  s.gpu_instance, s.compute_instance, s.mig_profile, s.mig_uuid, s.allocation)
        allocated.add(labels, s.allocated)
        utilization.add(labels, s.utilization)
        memory.add(labels, s.memory_used_bytes)
    yield allocated
    yield utilization
    yield memory

    uuids = {g.index: g.uuid for g in snapshot.gpus}
    unattributed = catalog.family("gpulse_gpu_unattributed_utilization_ratio")
    for gpu, ratio in sorted(snapshot.unattributed.items()):
        if gpu in uuids:
            unattributed.add((str(gpu), uuids[gpu]), ratio)
    yield unattributed

    unresolved = catalog.family("gpulse_attribution_unresolved_processes")
    for (gpu, reason), count in sorted(snapshot.unresolved.items()):
        if gpu in uuids:
            unresolved.add((str(gpu), uuids[gpu], reason), count)
    yield unresolved

    claims = catalog.family("gpulse_pod_gpu_claim_info")
    for c in snapshot.claims:
        claims.add((c.namespace, c.pod, c.container, c.claim_namespace, c.claim, c.driver, c.pool, c.device, c.uuid), 1)
    yield claims

    allocations = catalog.family("gpulse_attribution_unresolved_allocations")
    for key, count in sorted(snapshot.unresolved_allocations.items()):
        allocations.add(key, count)
    yield allocations


COLLECTOR = FunctionCollector("pods", (
    "gpulse_pod_gpu_allocated", "gpulse_pod_gpu_utilization_ratio", "gpulse_pod_gpu_memory_used_bytes",
    "gpulse_gpu_unattributed_utilization_ratio", "gpulse_attribution_unresolved_processes",
    "gpulse_pod_gpu_claim_info", "gpulse_attribution_unresolved_allocations"), collect)
