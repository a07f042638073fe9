"""Starts the outside world of a scenario: fake NVML, kubelet socket, /proc and /sys trees,
inference endpoints and an API server, all real servers and files in a temp directory.

The agent then runs its own code paths against them unchanged: World.start(config)
returns the config pointed at the fakes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time

from ..nvml.fake import FakeNvml
from . import scenario as scenario_mod
from .apiserver import start_fake_apiserver
from .inference import start_inference_servers
from .kubelet import start_fake_kubelet
from .proctree import build_proc_tree

log = logging.getLogger(__name__)


class World:
    def __init__(self, scenario, workdir: str | None = None, clock=None):
        self.scenario = scenario
        self._own_dir = workdir is None
        # Unix socket paths are limited to ~107 bytes: keep the directory short.
        self.workdir = workdir or tempfile.mkdtemp(prefix="gpulse-sim-", dir="/tmp")
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self.nvml = FakeNvml(scenario, clock=self.clock)
        self.kubelet = None
        self.inference = None
        self.apiserver = None
        self.paths = {}

    @classmethod
    def from_name(cls, name_or_path: str, **kwargs) -> "World":
        return cls(scenario_mod.load(name_or_path), **kwargs)

    def start(self, config):
        """Start every fake; on any failure stop what started (and remove the temp dir) first."""
        try:
            return self._start(config)
        except BaseException:
            self.stop()
            raise

    def _start(self, config):
        d = self.workdir
        proc_root, sys_root = os.path.join(d, "proc"), os.path.join(d, "sys")
        self._write_dmi(sys_root)
        build_proc_tree(self.scenario, proc_root)
        socket_path = os.path.join(d, "kubelet.sock")
        self.kubelet = start_fake_kubelet(self.scenario, socket_path)
        changes = {
            "path_procfs": proc_root,
            "path_sysfs": sys_root,
            "kubelet_pod_resources_socket": socket_path,
            "node_name": self.scenario.node.name,
            "identity_nfd_file": os.path.join(d, "features.d", "gpulse"),
            "workloads_push_socket": os.path.join(d, "push.sock"),
        }
        os.makedirs(os.path.dirname(changes["identity_nfd_file"]), exist_ok=True)  # the hostPath NFD reads
        self.inference = start_inference_servers(self.scenario, self.clock, push_socket=changes["workloads_push_socket"])
        self.apiserver = start_fake_apiserver(self.scenario, self.inference.endpoints)
        changes["kube_apiserver"] = self.apiserver.url
        self.paths = changes
        return dataclasses.replace(config, **changes)

    def _write_dmi(self, sys_root: str) -> None:
        dmi = os.path.join(sys_root, "class", "dmi", "id")
        os.makedirs(dmi, exist_ok=True)
        for key, value in self.scenario.node.dmi.items():
            with open(os.path.join(dmi, key), "w", encoding="utf-8") as fh:
                fh.write(value + "\n")

    def stop(self) -> None:
        for piece in (self.apiserver, self.inference, self.kubelet):
            if piece is not None:
                try:
                    piece.stop()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.debug("stopping %r failed", piece, exc_info=True)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
