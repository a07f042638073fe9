"""Pod families: each container's allocation, utilization share and memory per GPU or
MIG instance; the unattributed rest of each shared GPU; whether the kubelet answers.

Families are built fresh every tick, so a pod that left has no series at the next one.
Non-MIG shares leave the MIG labels "" and the renderer omits them.
"""

from __future__ import annotations

from .. import catalog

NAME = "pods"
# Rendered only once the catalog declares it (attribution's per-reason process counts).
UNRESOLVED_FAMILY = "gpulse_attribution_unresolved_processes"


def collect(snapshot, config):
    allocated = catalog.family("gpulse_pod_gpu_allocated")
    utilization = catalog.family("gpulse_pod_gpu_utilization_ratio")
    memory = catalog.family("gpulse_pod_gpu_memory_used_bytes")
    for s in snapshot.pods:
        labels = (s.namespace, s.pod, s.container, str(s.gpu), s.uuid, s.sharing,
                  s.gpu_instance, s.compute_instance, s.mig_profile, s.mig_uuid)
        allocated.add(labels, s.allocated)
        utilization.add(labels, s.utilization)
        memory.add(labels, s.memory_used_bytes)
    yield allocated
    yield utilization
    yield memory

    unattributed = catalog.family("gpulse_gpu_unattributed_utilization_ratio")
    uuids = {g.index: g.uuid for g in snapshot.gpus}
    for gpu, ratio in sorted(snapshot.unattributed.items()):
        if gpu in uuids:
            unattributed.add((str(gpu), uuids[gpu]), ratio)
    yield unattributed

    unresolved = snapshot.extra.get("attribution_unresolved")
    if unresolved is not None:
        fam = catalog.family(UNRESOLVED_FAMILY)
        for (gpu, reason), count in sorted(unresolved.items()):
            if gpu in uuids:
                fam.add((str(gpu), uuids[gpu], reason), count)
        yield fam
