"""A metric family as collectors hand it to the renderer.

Collectors build fresh families on every tick (client_python style), so series of
gone pods or GPUs vanish by themselves. A family is plain data: the renderer
(`gpulse.kernels.ExpositionEncoder`) caches each series' escaped label prefix itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

Labels = tuple[str, ...]
# A histogram series' value: (cumulative bucket counts, one per bound plus +Inf, sum).
HistogramValue = tuple[tuple[float, ...], float]
Sample = tuple[Labels, Union[float, HistogramValue]]


@dataclass(slots=True)
class Family:
    name: str
    type: str  # "gauge" | "counter" | "info" | "histogram"
    help: str
    labelnames: Labels
    samples: list[Sample] = field(default_factory=list)  # [(label values tuple, float)]
    buckets: tuple[float, ...] = ()  # histogram upper bounds, increasing, +Inf implied

    def add(self, labelvalues: Labels, value: Optional[float]) -> None:
        """Append one sample; `value` None means 'not known' and is omitted, never NaN."""
        if value is None:
            return
        self.samples.append((labelvalues, float(value)))

    def add_histogram(self, labelvalues: Labels, cumulative: Sequence[float], total: float) -> None:
        """Append one histogram series: cumulative counts per bound of `buckets` plus the
        +Inf bucket (the count), and the sum of the observations."""
        self.samples.append((labelvalues, (tuple(float(c) for c in cumulative), float(total))))
