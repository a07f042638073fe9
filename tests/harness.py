"""Runs the whole agent on a scenario with a hand-driven clock, for golden and fault tests.

The world (fake NVML, kubelet, /proc, inference servers, API server) is real; only time is
the test's: world clock and tick times advance together, one second per tick.
"""

from __future__ import annotations

import dataclasses
import time

from gpulse import config as config_mod
from gpulse.app import build
from gpulse.sim.world import World

START = 10.0


class ManualClock:
    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_config(enable=(), **overrides):
    """Defaults for a hand-ticked run; `enable` switches collectors on (e.g. "dcgm_compat")."""
    cfg = config_mod.load(None, environ={})
    if enable:
        overrides["collectors"] = cfg.collectors | frozenset(enable)
    values = {"nvml_backend": "fake", "workloads_scrape_interval": 0.2, "kubelet_refresh_interval": 0.5,
              "log_level": "warning"}
    values.update(overrides)
    return dataclasses.replace(cfg, **values)


class Run:
    """A started agent on a scenario; call tick() to advance one second."""

    def __init__(self, scenario: str, start: float = START, **overrides):
        self.clock = ManualClock(start)
        self.world = World.from_name(scenario, clock=self.clock)
        cfg = config_mod.with_overrides(make_config(scenario=scenario, **overrides), self.world.start(), "scenario")
        self.agent = build(cfg, nvml_loader=lambda: self.world.nvml, clock=self.clock)
        self.agent.on_stop.append(self.world.stop)
        self.sampler = self.agent.sampler
        self.agent.start(loop=False)
        self._wait_for_sources()
        self.rendered = None

    @property
    def reader(self):
        """The running NVML reader (None while NVML is down)."""
        return self.sampler.inputs.nvml.reader

    def _wait_for_sources(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        expected = sum(1 for p in self.world.scenario.pods if p.workload)
        while time.monotonic() < deadline:
            inputs = self.sampler.inputs
            pods_ok = inputs.pods is None or inputs.pods.current().up
            node = inputs.identity.node if inputs.identity is not None else None
            pods_ok = pods_ok and (node is None or node.version > 0)
            slices = inputs.sources.get("resourceslices")  # DRA devices: listed before the first tick
            pods_ok = pods_ok and (slices is None or slices.status().up)
            wl = inputs.workloads
            wl_ok = wl is None or len({(w.namespace, w.pod) for w in wl.current()}) >= expected
            if pods_ok and wl_ok:
                return
            time.sleep(0.05)
        raise AssertionError("simulated sources did not come up")

    def tick(self, n: int = 1, settle: float = 0.0):
        for _ in range(n):
            self.clock.t += 1.0
            if settle:
                time.sleep(settle)  # let off-tick sources (scrapes, XID events) see the new time
            self.rendered = self.sampler.tick(self.clock.t)
        return self.rendered

    def close(self) -> None:
        self.agent.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
