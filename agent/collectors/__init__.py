"""Collectors: one module per family group, each `collect(snapshot, config) -> Iterable[Family]`.

Every module in ALL exposes NAME and collect(). The sampler runs them all each tick; one
that raises gets gpulse_collector_success{collector} 0 and the rest still render. The
agent's own families (self_metrics) come last, with the outcome of the others.
"""

from __future__ import annotations

from . import dcgm_compat, gpu, identity, mig, pods, self_metrics, workloads  # noqa: F401

ALL = (gpu, mig, pods, workloads, identity, dcgm_compat)
