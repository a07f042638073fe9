"""The collector protocol: a name, the catalog families it renders, and collect(snapshot).

Collectors build fresh families every tick from the Snapshot alone (client_python style),
so series of gone pods or GPUs vanish by themselves. The registry refuses a collector whose
families are not in the catalog under its name, or that another collector already renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ..family import Family
from ..snapshot import Snapshot


class Collector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def families(self) -> tuple[str, ...]: ...

    def collect(self, snapshot: Snapshot) -> Iterable[Family]: ...


@dataclass(frozen=True)
class FunctionCollector:
    """A collector made of a function: what every built-in collector is."""
    name: str
    families: tuple[str, ...]
    fn: Callable[[Snapshot], Iterable[Family]]

    def collect(self, snapshot: Snapshot) -> Iterable[Family]:
        return self.fn(snapshot)
