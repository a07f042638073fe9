"""Figures for docs/hardening.md: every attack of tests/attack on a fresh agent, for this
build or another one (GPULSE_ATTACK_AGENT, e.g. an older checkout's `gpulse`), printed as
one JSON line per case with the agent's RSS (after, and its peak), ticks expected, made and
missed, the most any well-behaved workload fell behind, and the agent's CPU.

    .venv/bin/python bench/attack_figures.py [CASE ...]
    GPULSE_ATTACK_AGENT=/path/to/old/.venv/bin/gpulse .venv/bin/python bench/attack_figures.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.attack import cases
from tests.attack.harness import Agent, Window, tmpdir

CASES = {
    "header_flood": lambda a: cases.header_flood(a, seconds=8),
    "slowloris": lambda a: cases.slowloris(a, seconds=8, connections=500),
    "accept_bomb": lambda a: cases.accept_bomb(a, seconds=8),
    "debug_snapshot": cases.debug_snapshot,
    "disconnects": cases.disconnects,
    "trickle": lambda a: cases.hostile_endpoints(a, "trickle", 8, seconds=10),
    "huge": lambda a: cases.hostile_endpoints(a, "huge", 1, seconds=10),
    "big": lambda a: cases.hostile_endpoints(a, "big", 8, seconds=10),
    "wide": lambda a: cases.hostile_endpoints(a, "wide", 8, seconds=10),
    "impersonation": cases.impersonation,
    "push_quota": lambda a: cases.push_quota(a, models=100),
    "push_flood": cases.push_flood,
    "malformed_pushes": lambda a: cases.malformed_pushes(a, n=10),
}


def soak(agent: Agent, seconds: float = 300.0) -> dict:
    """Every attack at once, in rounds, for `seconds`: hostile endpoints (tricklers, a huge and
    big bodies) stay on while HTTP floods, slow clients, Accept bombs and push floods take
    turns; RSS sampled throughout."""
    import threading

    for i, mode in enumerate(["trickle"] * 4 + ["huge", "big", "big-chunked", "trickle"]):
        agent.endpoints.modes[f"slot-{i}"] = mode
    rss: list[float] = []
    stale: list[float] = []
    stop = time.monotonic() + seconds

    def sample() -> None:
        while time.monotonic() < stop:
            rss.append(agent.rss_mib()[0])
            stale.append(max(agent.staleness().values()))
            time.sleep(2.0)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rounds = 0
    attacks = [lambda: cases.header_flood(agent, seconds=5), lambda: cases.slowloris(agent, seconds=5),
               lambda: cases.accept_bomb(agent, seconds=5), lambda: cases.push_flood(agent, 2, 1000),
               lambda: cases.malformed_pushes(agent, n=5), lambda: cases.disconnects(agent, n=20)]
    while time.monotonic() < stop:
        attacks[rounds % len(attacks)]()
        rounds += 1
    sampler.join(10)
    cases.set_slots(agent, "good")
    return {"seconds": seconds, "attack_rounds": rounds, "rss_first_mib": round(rss[0], 1),
            "rss_max_mib": round(max(rss), 1), "rss_last_mib": round(rss[-1], 1),
            "good_stale_max_s": round(max(stale), 1)}


CASES["soak"] = lambda a: soak(a, float(__import__("os").environ.get("GPULSE_SOAK_SECONDS", "300")))


def main(names: list[str]) -> int:
    for name in names or [c for c in CASES if c != "soak"]:
        agent = Agent(tmpdir())
        try:
            start_rss = agent.rss_mib()[0]
            window = Window(agent)
            result = CASES[name](agent)
            time.sleep(1.0)
            h = window.health()
            print(json.dumps({"case": name, "rss_start_mib": round(start_rss, 1), "rss_after_mib": round(h.rss_mib, 1),
                              "rss_peak_mib": round(h.peak_mib, 1), "ticks": h.ticks,
                              "expected_ticks": round(h.expected_ticks), "missed": h.missed,
                              "good_stale_max_s": round(h.stale_max, 1), "cpu_s": round(h.cpu_seconds, 1),
                              "result": result}), flush=True)
        except Exception as exc:  # noqa: BLE001 - an old build may fail a case outright: that is a figure too
            print(json.dumps({"case": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}), flush=True)
        finally:
            agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
