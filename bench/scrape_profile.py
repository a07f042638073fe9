"""Where a workload scrape's CPU goes: the reference node's simulated inference servers in a
child process, gpulse's Scraper in this one, thread CPU of the scrape threads per round.

    .venv/bin/python bench/scrape_profile.py [--rounds 20] [--profile]

--profile also runs the rounds' scrapes one after another under cProfile (this thread) and
prints the top functions by own time. The simulator's CPU is the child's, never counted here.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pathlib
import pstats
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVE = """
import json, sys, time
from gpulse.sim import scenario
from gpulse.sim.inference import start_inference_servers
sc = scenario.load(sys.argv[1])
t0 = time.monotonic()
h = start_inference_servers(sc, lambda: time.monotonic() - t0)
print(json.dumps([[k[0], k[1], v[0], v[1], v[2]] for k, v in h.endpoints.items()]), flush=True)
sys.stdin.readline()
h.stop()
"""


def thread_cpu(prefix: str) -> float:
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith(prefix) and t.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            except OSError:
                pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--scenario", default="reference")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    from gpulse.workloads import scrape
    from gpulse.workloads.discovery import ScrapeTarget

    child = subprocess.Popen([sys.executable, "-c", SERVE, args.scenario], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        eps = json.loads(child.stdout.readline())
        targets = [ScrapeTarget(ns, pod, f"uid-{i}", host, port, path) for i, (ns, pod, host, port, path) in enumerate(eps)]
        results = []
        s = scrape.Scraper(1.0, 0.5, 2 * 1024 * 1024, 8, on_result=results.append)
        s.set_targets(targets)
        s.start()
        time.sleep(1.5)  # the first round: connections opened
        c0, t0, n0 = thread_cpu("gpulse-scrape"), time.monotonic(), len(results)
        time.sleep(args.rounds)
        cpu, elapsed, n = thread_cpu("gpulse-scrape") - c0, time.monotonic() - t0, len(results) - n0
        s.stop()
        up = sum(r.up for r in results[-len(targets):])
        print(f"{len(targets)} endpoints ({up} up) at 1 s: {n} scrapes in {elapsed:.1f} s; scrape thread CPU "
              f"{cpu / n * 1e6:.0f} us per scrape = {cpu / elapsed * 100:.2f}% of a core")
        state = {}
        conns = {t.key: scrape.connect(t) for t in targets}

        def one_round():
            for t in targets:
                r = scrape.scrape(t, 0.5, 2 * 1024 * 1024, state.get(t.key, ""), conns[t.key])
                state[t.key] = r.server

        one_round()
        c0 = time.thread_time()
        for _ in range(args.rounds):
            one_round()
        seq = (time.thread_time() - c0) / args.rounds
        print(f"the same scrapes one after another, blocking, in one thread (kept connections): "
              f"{seq / len(targets) * 1e6:.0f} us per scrape")
        if args.profile:
            prof = cProfile.Profile(time.thread_time)
            prof.enable()
            for _ in range(args.rounds):
                one_round()
            prof.disable()
            st = pstats.Stats(prof)
            st.sort_stats("tottime").print_stats(25)
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
