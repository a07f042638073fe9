"""Assembles the agent from a Config: the NVML library, the background inputs, the sampler.

`build(config, nvml_loader=..., clock=...)` knows nothing of the simulator: the CLI hands it
the library loader (the driver's pynvml, or a scenario's fake) and a config whose paths and
URLs already point wherever the outside world is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from . import collectors
from .attribution import Attributor
from .config import Config
from .health import Health
from .identity.publisher import IdentityPublisher, NodeObject
from .identity.resolver import IdentityResolver
from .kube.apiserver import KubeClient, KubeConfig, KubeError, PodWatcher
from .kube.resourceslices import ResourceSliceWatcher
from .kube.source import PodSource
from .nvml import lib as nvml_lib
from .nvml.supervisor import NvmlSupervisor
from .refresh import Source
from .refusals import Refusals
from .sampler import Inputs, Sampler
from .sources.dcgm import DcgmSource
from .windowing import DeviceWindows
from .workloads.source import WorkloadSource

log = logging.getLogger(__name__)


class Background(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Agent:
    config: Config
    sampler: Sampler
    background: list[Background] = field(default_factory=list)  # started before the first tick
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    refusals: Refusals = field(default_factory=Refusals)  # what the HTTP server and push refused

    def start(self, loop: bool = True) -> None:
        """Start the background inputs and, unless loop=False (tests tick by hand), the ticks."""
        for piece in self.background:
            piece.start()
        if loop:
            self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()
        for piece in reversed(self.background):
            piece.stop()
        self.sampler.inputs.nvml.stop()
        for fn in self.on_stop:
            fn()


def build(config: Config, *, nvml_loader: Callable[[], Any] = nvml_lib.load_real,
          clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], float] = time.time) -> Agent:
    background: list[Background] = []
    sources: dict[str, Source] = {}
    refusals = Refusals()
    client: Optional[KubeClient] = None
    watcher: Optional[PodWatcher] = None
    slices: Optional[ResourceSliceWatcher] = None
    if config.kube_enabled and config.node_name:
        try:
            client = KubeClient(KubeConfig.load(config))
            watcher = PodWatcher(client, config.node_name)
            background.append(watcher)
            sources["apiserver"] = watcher
            if config.kube_resource_slices:
                slices = ResourceSliceWatcher(client, config.node_name)  # what DRA devices are
                background.append(slices)
                sources["resourceslices"] = slices
        except KubeError as exc:
            log.warning("Kubernetes API unavailable (node labels and workload discovery off): %s", exc)
    elif config.kube_enabled:
        log.warning("no node name (set NODE_NAME or --node.name): Kubernetes API features are off")

    nvml = NvmlSupervisor(nvml_loader, clock=clock)
    sources["nvml"] = nvml
    pods = PodSource(config, pod_directory=watcher.index.by_uid if watcher is not None else None, clock=clock,
                     slices=slices.index if slices is not None else None)
    background.append(pods)
    sources["kubelet"] = pods

    node: Optional[NodeObject] = None
    if client is not None:
        kube, name = client, config.node_name
        node = NodeObject(lambda: kube.get_node(name))
        background.append(node)
        sources["node"] = node

    workloads: Optional[WorkloadSource] = None
    if config.workloads_enabled:
        workloads = WorkloadSource(config, pod_watcher=watcher, refusals=refusals)
        background.append(workloads)
        sources["workloads"] = workloads

    dcgm: Optional[DcgmSource] = None
    if config.sources_dcgm_exporter_url:
        dcgm = DcgmSource(config.sources_dcgm_exporter_url, clock=clock)
        background.append(dcgm)
        sources["dcgm"] = dcgm

    inputs = Inputs(
        nvml=nvml,
        windows=DeviceWindows(config.collect_window),
        pods=pods,
        attributor=Attributor(config.collect_window),
        workloads=workloads,
        identity=IdentityPublisher(IdentityResolver(config.path_sysfs, config.node_name), node,
                                   config.identity_nfd_file),
        mig_activity=dcgm,
        sources=sources,
        refusals=refusals,
    )
    runner = collectors.CollectorRunner(collectors.REGISTRY.enabled(config), collectors.SELF,
                                        config.limits_max_series)
    sampler = Sampler(inputs, runner, Health(config.collect_interval, clock=clock),
                      interval=config.collect_interval, node_name=config.node_name, backend=config.nvml_backend,
                      clock=clock, wallclock=wallclock)
    return Agent(config, sampler, background, refusals=refusals)
