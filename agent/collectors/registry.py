"""Collectors registered by name, node_exporter style.

`register` refuses a collector whose families are not in the catalog under its name, or
that another collector already renders; so two collectors can never emit the same series.
`enabled(config)` is the collectors --collector.<name> switches leave on, in registration
order; "self" (the agent's own health) always runs, last, with this tick's outcome.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalog
from ..config import Config
from .base import Collector


class RegistryError(ValueError):
    """A collector that cannot be registered; str() says which and why."""


class Registry:
    def __init__(self) -> None:
        self._collectors: dict[str, Collector] = {}
        self._owner: dict[str, str] = {}  # family -> collector name

    def register(self, collector: Collector) -> Collector:
        name = collector.name
        if name in self._collectors:
            raise RegistryError(f"collector {name!r} is registered twice")
        if name not in catalog.COLLECTORS and name != catalog.SELF:
            raise RegistryError(f"collector {name!r} is not in the catalog's collector list")
        for fam in collector.families:
            spec = catalog.BY_NAME.get(fam)
            if spec is None:
                raise RegistryError(f"collector {name!r}: family {fam!r} is not in the catalog")
            if spec.collector != name:
                raise RegistryError(f"collector {name!r}: the catalog gives {fam!r} to collector {spec.collector!r}")
            if fam in self._owner:
                raise RegistryError(f"collector {name!r}: family {fam!r} is already rendered by {self._owner[fam]!r}")
        for fam in collector.families:
            self._owner[fam] = name
        self._collectors[name] = collector
        return collector

    def __iter__(self) -> Iterator[Collector]:
        return iter(self._collectors.values())

    def get(self, name: str) -> Collector:
        return self._collectors[name]

    def owner(self, family: str) -> str:
        return self._owner[family]

    def enabled(self, config: Config) -> tuple[Collector, ...]:
        """The switched-on collectors, "self" excluded (the runner runs it last)."""
        return tuple(c for c in self if c.name != catalog.SELF and config.collector_enabled(c.name))
