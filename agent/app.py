"""Assembles the agent from a Config: the NVML library, the sources, the sampler.

With --nvml.backend=fake the scenario's World starts first and the config is pointed at
its fakes; everything after that is the same code a GPU node runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .attribution import Attributor
from .identity.resolver import IdentityResolver
from .kube.apiserver import KubeClient, KubeConfig, KubeError, PodWatcher
from .kube.source import PodSource
from .nvml import lib as nvml_lib
from .sampler import Sampler
from .workloads.source import WorkloadSource

log = logging.getLogger(__name__)


@dataclass
class Agent:
    config: object
    sampler: Sampler
    world: object = None
    watcher: object = None

    def start(self, loop: bool = True) -> None:
        if self.watcher is not None:
            self.watcher.start()
        self.sampler.start(loop=loop)

    def stop(self) -> None:
        self.sampler.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.world is not None:
            self.world.stop()


def start_world(config):
    """For the fake backend: the scenario's outside world, and the config pointed at it."""
    from .sim.world import World

    world = World.from_name(config.scenario)
    return world, world.start(config)


def build(config, world=None) -> Agent:
    if config.nvml_backend == "fake" and world is None:
        world, config = start_world(config)
    if world is not None:
        lib_loader = lambda: world.nvml  # noqa: E731
    else:
        lib_loader = nvml_lib.load_real
    client = watcher = None
    if config.kube_enabled and config.node_name:
        try:
            client = KubeClient(KubeConfig.load(config))
            watcher = PodWatcher(client, config.node_name)
        except KubeError as exc:
            log.warning("Kubernetes API unavailable (node labels and workload discovery off): %s", exc)
    elif config.kube_enabled:
        log.warning("no node name (set NODE_NAME or --node.name): Kubernetes API features are off")
    directory = watcher.index.by_uid if watcher is not None else None
    node_fetcher = (lambda: client.get_node(config.node_name)) if client is not None else None
    dcgm = None
    if config.sources_dcgm_exporter_url:
        from .sources.dcgm import DcgmSource
        dcgm = DcgmSource(config)
    sampler = Sampler(
        config, lib_loader,
        pod_source=PodSource(config, pod_directory=directory),
        attributor=Attributor(config.collect_window),
        workload_source=WorkloadSource(config, pod_watcher=watcher) if config.workloads_enabled else None,
        identity_resolver=IdentityResolver(config),
        node_fetcher=node_fetcher,
        dcgm_source=dcgm,
        backend_name=config.nvml_backend,
    )
    return Agent(config, sampler, world, watcher)
