"""Starts the outside world of a scenario: fake NVML, kubelet socket, /proc and /sys trees,
inference endpoints and an API server, all real servers and files in a temp directory.

The agent then runs its own code paths against them unchanged: World.start() returns the
settings (by flag name) that point the agent at the fakes, which the CLI validates with
the same loader as any other input (gpulse.config.with_overrides).

Scenario time 0 is a whole wall-clock second (`wall0`), so events at whole scenario seconds
carry exact API timestamps (which have whole seconds). Pods with `startup:` come and change
while the scenario runs: a driver thread applies them to the API server, the kubelet and
the inference ports as scenario time passes (gpulse.sim.lifecycle).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Optional, Union

from . import scenario as scenario_mod
from .apiserver import FakeApiServer, scenario_pod, start_fake_apiserver
from .inference import InferenceHandle, start_inference_servers
from .kubelet import FakeKubelet, start_fake_kubelet
from .lifecycle import Timeline
from .nvml import FakeNvml
from .proctree import build_proc_tree

log = logging.getLogger(__name__)


class World:
    def __init__(self, scenario: scenario_mod.Scenario, workdir: str | None = None,
                 clock: Optional[Callable[[], float]] = None) -> None:
        self.scenario = scenario
        self._own_dir = workdir is None
        # Unix socket paths are limited to ~107 bytes: keep the directory short.
        self.workdir = workdir or tempfile.mkdtemp(prefix="gpulse-sim-", dir="/tmp")
        if clock is None:
            now = time.time()
            self.wall0 = float(math.floor(now))
            start = time.monotonic() - (now - self.wall0)
            self.clock: Callable[[], float] = lambda: time.monotonic() - start
        else:
            self.clock = clock
            self.wall0 = time.time() - clock()
        self._starting = [(pod, Timeline(pod.startup)) for pod in scenario.pods if pod.startup is not None]
        self._applied: dict[str, dict[str, object]] = {}  # pod uid -> the object last given to the API server
        self._stop_driver = threading.Event()
        self._driver: Optional[threading.Thread] = None
        self.nvml = FakeNvml(scenario, clock=self.clock)
        self.kubelet: Optional[FakeKubelet] = None
        self.inference: Optional[InferenceHandle] = None
        self.apiserver: Optional[FakeApiServer] = None
        self.paths: dict[str, str] = {}

    @classmethod
    def from_name(cls, name_or_path: str, *, workdir: str | None = None,
                  clock: Optional[Callable[[], float]] = None) -> World:
        return cls(scenario_mod.load(name_or_path), workdir=workdir, clock=clock)

    def start(self) -> dict[str, str]:
        """Start every fake and return the settings that point the agent at them; on any
        failure stop what started (and remove the temp dir) first."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, str]:
        d = self.workdir
        proc_root, sys_root = os.path.join(d, "proc"), os.path.join(d, "sys")
        self._write_dmi(sys_root)
        build_proc_tree(self.scenario, proc_root)
        socket_path = os.path.join(d, "kubelet.sock")
        self.kubelet = start_fake_kubelet(self.scenario, socket_path)
        changes = {
            "path.procfs": proc_root,
            "path.sysfs": sys_root,
            "kubelet.pod-resources-socket": socket_path,
            "node.name": self.scenario.node.name,
            "identity.nfd-file": os.path.join(d, "features.d", "gpulse"),
            "workloads.push-socket": os.path.join(d, "push.sock"),
        }
        os.makedirs(os.path.dirname(changes["identity.nfd-file"]), exist_ok=True)  # the hostPath NFD reads
        self.inference = start_inference_servers(self.scenario, self.clock,
                                                 push_socket=changes["workloads.push-socket"], proc_root=proc_root)
        t = self.clock()
        self.apiserver = start_fake_apiserver(self.scenario, self.inference.endpoints, t=t, wall0=self.wall0)
        changes["kube.apiserver"] = self.apiserver.url
        self.paths = changes
        if self._starting:
            self.sync()
            self._driver = threading.Thread(target=self._drive, name="sim-lifecycle", daemon=True)
            self._driver.start()
        return changes

    def sync(self) -> None:
        """Bring the starting pods to scenario time now: API objects, kubelet allocations
        (from scheduling on), inference ports."""
        t = self.clock()
        if self.apiserver is not None and self.inference is not None:
            for pod, timeline in self._starting:
                obj = scenario_pod(self.scenario, pod, self.inference.endpoints, t, self.wall0, timeline)
                if obj is not None and obj != self._applied.get(pod.uid):
                    self.apiserver.apply_pod(obj)
                    self._applied[pod.uid] = obj
        if self.kubelet is not None:
            scheduled = {pod.uid for pod, timeline in self._starting if timeline.exists(t)}
            present = tuple(p for p in self.scenario.pods if p.startup is None or p.uid in scheduled)
            if present != self.kubelet.pods:
                self.kubelet.set_pods(present)
        if self.inference is not None:
            self.inference.sync(t)

    def _drive(self) -> None:
        while not self._stop_driver.wait(0.05):
            try:
                self.sync()
            except Exception:
                log.exception("sim lifecycle driver")

    def _write_dmi(self, sys_root: str) -> None:
        dmi = os.path.join(sys_root, "class", "dmi", "id")
        os.makedirs(dmi, exist_ok=True)
        for key, value in self.scenario.node.dmi.items():
            with open(os.path.join(dmi, key), "w", encoding="utf-8") as fh:
                fh.write(value + "\n")

    def stop(self) -> None:
        self._stop_driver.set()
        if self._driver is not None:
            self._driver.join(timeout=5)
        pieces: tuple[Union[FakeApiServer, InferenceHandle, FakeKubelet, None], ...] = (
            self.apiserver, self.inference, self.kubelet)
        for piece in pieces:
            if piece is not None:
                try:
                    piece.stop()
                except Exception:
                    log.debug("stopping %r failed", piece, exc_info=True)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
