"""A metric family as collectors hand it to the renderer.

Collectors build fresh families on every tick (client_python style), so series of
gone pods or GPUs vanish by themselves. A family is plain data: the renderer
(`gpulse.kernels.ExpositionEncoder`) caches each series' escaped label prefix itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

Labels = tuple[str, ...]
Sample = tuple[Labels, float]


@dataclass(slots=True)
class Family:
    name: str
    type: str  # "gauge" | "counter" | "info"
    help: str
    labelnames: Labels
    samples: list[Sample] = field(default_factory=list)  # [(label values tuple, float)]

    def add(self, labelvalues: Labels, value: Optional[float]) -> None:
        """Append one sample; `value` None means 'not known' and is omitted, never NaN."""
        if value is None:
            return
        self.samples.append((labelvalues, float(value)))
