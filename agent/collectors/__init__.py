"""Collectors: one module per family group, registered by name in REGISTRY.

Each built-in module defines COLLECTOR (name, declared catalog families, collect(snapshot)).
The registry refuses families outside the catalog or rendered twice; --collector.<name>
switches each one (gpulse.config); a disabled collector is not run and not reported.
"""

from __future__ import annotations

from . import cost, dcgm_compat, energy, gpu, identity, mig, pods, self_metrics, startup, workloads
from .base import Collector, FunctionCollector
from .registry import Registry, RegistryError
from .runner import CollectorRunner

REGISTRY = Registry()
for _module in (gpu, mig, pods, workloads, startup, identity, dcgm_compat, energy, cost, self_metrics):
    REGISTRY.register(_module.COLLECTOR)
SELF = REGISTRY.get("self")

__all__ = ["REGISTRY", "SELF", "Collector", "CollectorRunner", "FunctionCollector", "Registry", "RegistryError"]
