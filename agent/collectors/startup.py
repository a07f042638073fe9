"""The cold-start timeline of inference pods (gpulse.startup): per pod, the phases of its
latest start and whether it is still starting; per workload, a histogram of completed
starts. Pods that are gone are gone from the phase and starting series at the next tick;
the histograms are counters of this node and stay."""

from __future__ import annotations

from collections.abc import Iterable

from ..catalog import family
from ..family import Family
from ..snapshot import Snapshot
from .base import FunctionCollector

PHASES = "gpulse_workload_startup_phase_seconds"
STARTING = "gpulse_workload_starting"
HISTOGRAM = "gpulse_workload_startup_seconds"


def collect(snapshot: Snapshot) -> Iterable[Family]:
    phases, starting, histogram = family(PHASES), family(STARTING), family(HISTOGRAM)
    for s in snapshot.startups:
        pod = (s.namespace, s.pod, s.workload, s.workload_type, s.start)
        for phase, seconds in s.phases:
            phases.add((*pod, phase), seconds)
        if s.starting is not None:  # not known yet for a start under way before the agent began
            starting.add((*pod, s.current if s.starting else ""), 1.0 if s.starting else 0.0)
    for h in snapshot.startup_histograms:
        histogram.add_histogram((h.namespace, h.workload, h.workload_type, h.start), h.counts, h.total)
    return phases, starting, histogram


COLLECTOR = FunctionCollector("startup", (PHASES, STARTING, HISTOGRAM), collect)
