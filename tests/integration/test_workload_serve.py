"""Queue depth through the whole agent (app.build, sampler tick, render) on the simulated
reference node: each tick exports the vLLM pods' queue depth at that tick's scenario time.
"""

import re
import time

from gpulse.sim.inference import expected_values

from tests.harness import Run


def exported(text: str) -> dict:
    out = {}
    for m in re.finditer(r'^gpulse_workload_queue_depth\{namespace="([^"]*)",pod="([^"]*)",server="vllm"[^}]*\} (\S+)$',
                         text, re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def test_reference_queue_depth_follows_the_trace_tick_by_tick():
    with Run("reference") as run:
        pods = [p for p in run.world.scenario.pods if p.workload is not None and not p.workload.push]
        assert len(pods) >= 28
        source = run.sampler.inputs.workloads
        for _ in range(3):
            t = run.clock.t + 7.0  # far enough apart that the sines move
            run.clock.t = t
            want = {(p.namespace, p.name): expected_values(p.workload, t)["queue_depth"] for p in pods}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # scrapes run off the tick; wait for one round
                got = {(s.namespace, s.pod): s.queue_depth for s in source.current()}
                if got == want:
                    break
                time.sleep(0.05)
            text = run.sampler.tick(t).text.decode()
            assert exported(text) == want, f"t={t}"
            assert 'gpulse_source_up{source="workloads"} 1' in text
