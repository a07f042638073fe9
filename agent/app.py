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
from .accounts import Accounts
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
from .pricing import PriceTable
from .refresh import Source
from .refusals import Refusals
from .sampler import Inputs, Sampler
from .sources.dcgm import DcgmSource
from .startup import StartupTracker
from .windowing import DeviceWindows
from .workloads.readyprobe import ReadyProber
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

    # The cold-start timeline needs the node's pods and the servers' scrapes and pushes.
    startup: Optional[StartupTracker] = None
    if watcher is not None and workloads is not None and config.collector_enabled("startup"):
        prober = ReadyProber(config.workloads_scrape_interval, config.workloads_scrape_timeout)
        background.append(prober)
        startup = StartupTracker(watcher.index, workloads, prober, wallclock=wallclock)

    dcgm: Optional[DcgmSource] = None
    if config.sources_dcgm_exporter_url:
        dcgm = DcgmSource(config.sources_dcgm_exporter_url, clock=clock)
        background.append(dcgm)
        sources["dcgm"] = dcgm

    accounts: Optional[Accounts] = None
    if config.collector_enabled("energy") or config.collector_enabled("cost"):
        # A bad price file stops the start with one line naming the file and the row.
        accounts = Accounts(PriceTable.load(config.cost_price_file), idle_threshold=config.cost_idle_threshold,
                            basis=config.cost_basis, pricing_kind_setting=config.cost_pricing_kind,
                            node_labels=_node_labels(node), max_gap=max(30.0, 3 * config.collect_window))

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
        accounts=accounts,
        startup=startup,
        refusals=refusals,
    )
    runner = collectors.CollectorRunner(collectors.REGISTRY.enabled(config), collectors.SELF,
                                        config.limits_max_series)
    sampler = Sampler(inputs, runner, Health(config.collect_interval, clock=clock),
                      interval=config.collect_interval, node_name=config.node_name, backend=config.nvml_backend,
                      clock=clock, wallclock=wallclock)
    return Agent(config, sampler, background, refusals=refusals)


def _node_labels(node: Optional[NodeObject]) -> Callable[[], dict[str, str]]:
    """The Node object's labels as last fetched ({} without the API or before the first fetch),
    read again only when a new object was fetched."""
    last: list[Any] = [None, {}]  # [the Node object read, its labels]

    def labels() -> dict[str, str]:
        obj = node.node if node is not None else None
        if obj is not last[0]:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            found = meta.get("labels") if isinstance(meta, dict) else None
            last[:] = [obj, {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}]
        result: dict[str, str] = last[1]
        return result
    return labels
