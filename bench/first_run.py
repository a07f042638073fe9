"""Seconds from `make run` to the first scrape, as a new user meets them: a fresh clone of
this repository's last commit (cold: no .venv), then `make run` again in it (warm).

    python3 bench/first_run.py [--no-compiler] [--no-pip-cache] [--runs N]

--no-compiler points CC and CXX at compilers that do not exist (the pure-twin fallback);
--no-pip-cache also empties pip's cache for the cold run (PIP_NO_CACHE_DIR). A scrape
counts once /metrics has a gpulse_gpu_up sample. Wall-clock seconds on this machine: compare
the cases of one run, not runs on different machines.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEADLINE_S = 600.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scraped(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return b"\ngpulse_gpu_up{" in r.read()
    except OSError:
        return False


def first_scrape(clone: pathlib.Path, env: dict, log: pathlib.Path) -> float:
    """Seconds from starting `make run` in clone to its first scrape; stops it afterwards."""
    port = _free_port()
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(["make", "run", f"RUN_ARGS=--web.listen-address=127.0.0.1:{port}"], cwd=clone,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not _scraped(port):
            if proc.poll() is not None:
                raise SystemExit(f"make run exited with {proc.returncode}; see {log}")
            if time.monotonic() - t0 > DEADLINE_S:
                raise SystemExit(f"no scrape within {DEADLINE_S:.0f} s; see {log}")
            time.sleep(0.1)
        return time.monotonic() - t0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the agent: the group started above
        proc.wait(timeout=30)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-compiler", action="store_true", help="CC and CXX name compilers that do not exist")
    ap.add_argument("--no-pip-cache", action="store_true", help="cold run without pip's cache")
    ap.add_argument("--runs", type=int, default=1, help="cold/warm pairs, each in a fresh clone")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    if args.no_compiler:
        env.update(CC="/nonexistent/cc", CXX="/nonexistent/c++")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    print(f"commit {head}, {os.cpu_count()} CPUs, {sys.platform}; compiler: "
          f"{'none' if args.no_compiler else 'yes'}; pip cache for the cold run: "
          f"{'no' if args.no_pip_cache else 'yes'}")
    with tempfile.TemporaryDirectory(prefix="gpulse-first-run-") as tmp:
        for i in range(args.runs):
            clone = pathlib.Path(tmp, f"clone{i}")
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
            log = pathlib.Path(tmp, f"run{i}.log")
            cold = first_scrape(clone, dict(env, PIP_NO_CACHE_DIR="1") if args.no_pip_cache else env, log)
            warm = first_scrape(clone, env, log)
            so = len(list((clone / "agent").glob("_*.so")))
            warnings = sum("warning" in line for line in log.read_text(errors="replace").splitlines())
            print(f"run {i + 1}: cold make run -> first scrape {cold:5.1f} s; warm {warm:4.1f} s; "
                  f"compiled modules {so}; warning lines {warnings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
