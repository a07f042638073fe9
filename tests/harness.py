"""Runs the whole agent on a scenario with a hand-driven clock, for golden and fault tests.

The world (fake NVML, kubelet, /proc, inference servers, API server) is real; only time is
the test's: world clock and tick times advance together, one second per tick.
"""

from __future__ import annotations

import argparse
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


def make_config(**overrides):
    p = argparse.ArgumentParser()
    config_mod.add_flags(p)
    cfg = config_mod.load(p.parse_args([]), environ={})
    values = {"nvml_backend": "fake", "workloads_scrape_interval": 0.2, "kubelet_refresh_interval": 0.5,
              "log_level": "warning"}
    values.update(overrides)
    import dataclasses
    return dataclasses.replace(cfg, **values)


class Run:
    """A started agent on a scenario; call tick() to advance one second."""

    def __init__(self, scenario: str, start: float = START, **overrides):
        self.clock = ManualClock(start)
        self.world = World.from_name(scenario, clock=self.clock)
        cfg = self.world.start(make_config(scenario=scenario, **overrides))
        self.agent = build(cfg, world=self.world)
        self.sampler = self.agent.sampler
        self.sampler.clock = self.clock
        self.agent.start(loop=False)
        self._wait_for_sources()
        self.rendered = None

    def _wait_for_sources(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        expected = sum(1 for p in self.world.scenario.pods if p.workload)
        while time.monotonic() < deadline:
            pods_ok = self.sampler.pod_source is None or self.sampler.pod_source.current().up
            pods_ok = pods_ok and (self.sampler.node_cache is None or self.sampler.node_cache.version > 0)
            wl = self.sampler.workload_source
            wl_ok = wl is None or len({(w.namespace, w.pod) for w in wl.current()[0]}) >= expected
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
