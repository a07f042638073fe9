"""Collectors: one module per family group, each `collect(snapshot, config) -> Iterable[Family]`.

Every module exposes NAME and collect(). The sampler runs them all each tick; one that
raises gets gpulse_collector_success{collector} 0 and the rest still render.
"""

from __future__ import annotations

from . import dcgm_compat, gpu, identity, mig, pods, self_metrics, workloads

# self_metrics last: it reports on the others.
ALL = (gpu, mig, pods, workloads, identity, dcgm_compat, self_metrics)
