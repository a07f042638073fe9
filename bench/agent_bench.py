"""Whole-agent sections for bench/run.py, measured on the simulated reference node
(`gpulse serve --nvml.backend=fake --scenario=reference` in a child process on a free
loopback port; children are in bench/agent_child.py, and every one is stopped on the way out).

- tick: thread CPU of one tick, by stage, with the fake NVML calls' own cost shown apart.
- agent: CPU of the whole serve process by thread group over a window at 1 s ticks, NVML
  calls per GPU per tick from gpulse_nvml_calls_total, steady RSS over a soak of scrapes.
- scrape: p50/p99 under 16 concurrent gzip scrapers (the per-client cap), gpulse against prometheus_client's own
  HTTP server on the same series, on the reference node and at 2k/10k/50k series.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from agent_child import FAKE_NVML
from gpulse import kernels

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
CHILD = [sys.executable, str(BENCH / "agent_child.py")]
TICK_BUDGET_S = 0.010  # 1% of one core at 1 s ticks
RSS_TARGET_MIB = 60
# Concurrent scrapers from one address: the server's per-client cap (gpulse.httpconn.Limits:
# 64 connections / 4); past it the server evicts idle connections of that client by design.
SCRAPERS = 16
MIB = 1024 * 1024


def _row(section, case, size, value, note=""):
    from table import Row  # bench/ is on sys.path whenever these sections run

    return Row(section, case, size, value, note)


def _ms(seconds):
    return f"{seconds * 1e3:.2f} ms"


def _holds(ok):
    return "target holds" if ok else "TARGET MISSED"


# --- children -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process with its output in a temp file; stop() ends it (TERM, then KILL)."""

    def __init__(self, args, port=None, env=None):
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="gpulse-bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def tail(self, n=5) -> str:
        lines = pathlib.Path(self.log.name).read_text(errors="replace").splitlines()
        return " | ".join(lines[-n:])

    def wait_http(self, path="/metrics", timeout=60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench child exited with {self.proc.returncode}: {self.tail()}")
            try:
                status, _ = get(self.port, path)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bench child not answering 200 on {path} within {timeout:.0f}s: {self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


@contextlib.contextmanager
def child(args, port=None, env=None, ready_path="/metrics"):
    c = Child(args, port, env)
    try:
        if port is not None:
            c.wait_http(ready_path)
        yield c
    finally:
        c.stop()


def serve_args(port, *extra):
    return ["--nvml.backend=fake", "--scenario=reference", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning",
            *extra]


# --- HTTP -------------------------------------------------------------------------------
def get(port, path="/metrics", gzip=False, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def scrape_values(port) -> dict:
    status, body = get(port)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return {(name, labels): value for name, labels, value, _ in kernels.parse_exposition(body).samples}


def load(port, scrapers, per_scraper):
    """`scrapers` threads each doing `per_scraper` gzip GETs back to back on one connection
    kept alive as Prometheus keeps it (reopened whenever the server closes it); returns
    (sorted latencies in seconds, failures, wall seconds)."""
    latencies, failures = [], []
    start = threading.Barrier(scrapers + 1)

    def scraper():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30.0)
        start.wait()
        try:
            for _ in range(per_scraper):
                t0 = time.perf_counter()
                try:
                    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                    resp = conn.getresponse()
                    ok = resp.status == 200 and bool(resp.read())
                except (OSError, http.client.HTTPException):
                    conn.close()
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures.append(1)
        finally:
            conn.close()

    threads = [threading.Thread(target=scraper, name=f"bench-scraper-{i}") for i in range(scrapers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sorted(latencies), len(failures), time.perf_counter() - t0


def percentile(sorted_values, q):
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


# --- tick -------------------------------------------------------------------------------
STAGES = (
    ("nvml read", "NVML read, agent side (fake calls excluded)"),
    ("windows", "windows (mean, max over the horizon)"),
    ("attribution", "attribution (processes to pods)"),
    ("identity", "identity refresh"),
    ("startup", "startup timeline (pods' starts)"),
    ("collectors", "collectors (families from the snapshot)"),
    ("render", "render (text and OpenMetrics)"),
    ("gzip", "gzip of both (fast level)"),
    ("other", "other (snapshot, sources' current view)"),
)


def bench_tick(ctx):
    ticks, warmup = (8, 3) if ctx.quick else (60, 5)
    out = subprocess.run([*CHILD, "tick", str(ticks), str(warmup)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"tick child failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rows_ns = data["ticks"]
    for r in rows_ns:  # the fake's calls (and their timing wrapper) happen inside "nvml read": move them out
        r["nvml read"] = r.get("nvml read", 0) - r["fake nvml"] - r["timing"]
        r["agent"] = r["total"] - r["fake nvml"] - r["timing"]
        r["other"] = r["agent"] - sum(r.get(k, 0) for k, _ in STAGES if k != "other")

    def med(key):
        return statistics.median(r.get(key, 0) for r in rows_ns) / 1e9

    size = f"reference: {data['gpus']} GPUs, {data['pods']} pods, {data['series']:,} series"
    agent, total = med("agent"), med("total")
    p90 = sorted(r["agent"] for r in rows_ns)[int(0.9 * (len(rows_ns) - 1))] / 1e9
    calls = statistics.median(r["fake calls"] for r in rows_ns)
    rows = [
        _row("tick", "tick thread CPU, total (incl. fake NVML)", size, _ms(total), f"median of {len(rows_ns)} ticks"),
        _row("tick", "  of which fake NVML calls (simulator, excluded)", "", _ms(med("fake nvml")),
             f"{calls:.0f} simulator calls/tick (NVML functions, GPM request structs), {med('fake nvml') / calls * 1e6:.1f} us each"),
        _row("tick", "  of which the bench's timing wrappers (excluded)", "", _ms(med("timing")), "calibrated per call"),
        _row("tick", "  of which agent", "", _ms(agent),
             f"{agent / 1.0 * 100:.2f}% of one core at 1 s ticks (p90 {_ms(p90)}); target <= 1%: {_holds(agent <= TICK_BUDGET_S)}"),
    ]
    for key, label in STAGES:
        rows.append(_row("tick", f"    {label}", "", _ms(med(key)), f"{med(key) / agent * 100:.0f}% of agent"))
    ctx.data["tick_agent_s"] = agent
    return rows


# --- agent: whole-process CPU, NVML calls, RSS --------------------------------------------
def _cpu_report(c: Child, path: str, last_seq: int) -> dict:
    os.kill(c.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(pathlib.Path(path).read_text())
            if report["seq"] > last_seq:
                return report
        time.sleep(0.05)
    raise RuntimeError(f"serve child wrote no CPU report: {c.tail()}")


def _scrape_every(port, interval, seconds, on_second=None):
    """One scraper at `interval` for `seconds`; on_second() once a second."""
    end = time.monotonic() + seconds
    next_second = time.monotonic()
    failures = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            failures += get(port, gzip=True)[0] != 200
        except OSError:
            failures += 1
        if on_second and t0 >= next_second:
            on_second()
            next_second += 1.0
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    return failures


def nvml_rows(v0: dict, v1: dict):
    ticks = v1[("gpulse_ticks_total", ())] - v0[("gpulse_ticks_total", ())]
    gpus = sum(1 for (name, _), v in v1.items() if name == "gpulse_gpu_up")
    calls = {labels[0][1]: v for (name, labels), v in v1.items() if name == "gpulse_nvml_calls_total"}
    before = {labels[0][1]: v for (name, labels), v in v0.items() if name == "gpulse_nvml_calls_total"}
    # A scrape shows the calls of the tick that rendered it, which gpulse_ticks_total does not count yet.
    ticks_at_v0 = v0[("gpulse_ticks_total", ())] + 1
    per_tick = {f: (calls[f] - before.get(f, 0)) / ticks for f in calls}
    # What the first ticks_at_v0 ticks do not explain was done once (init, discovery, MIG enumeration).
    one_time = {f: max(0.0, before.get(f, 0) - per_tick[f] * ticks_at_v0) for f in calls}
    one_time = {f: n for f, n in one_time.items() if n >= 0.5}
    top = sorted(((n, f) for f, n in per_tick.items() if n > 0), reverse=True)
    size = f"{gpus} GPUs, {ticks:.0f} ticks"
    total = sum(per_tick.values())
    return [
        _row("nvml", "NVML calls per GPU per tick", size, f"{total / gpus:.2f}",
             f"{total:.1f} per tick; most: " + ", ".join(f"{f.removeprefix('nvmlDevice')} {n / gpus:.2f}" for n, f in top[:4])),
        _row("nvml", "one-time NVML calls per GPU (init, discovery, MIG enumeration)", f"{gpus} GPUs",
             f"{sum(one_time.values()) / gpus:.2f}", f"{len(one_time)} functions"),
    ]


def bench_agent(ctx):
    warmup, window, soak = (2, 4, 4) if ctx.quick else (5, 20, 40)
    port = free_port()
    cpu_file = tempfile.mktemp(prefix="gpulse-bench-cpu-", suffix=".json")
    rows = []
    try:
        with child([*CHILD, "serve", *serve_args(port)], port, {"GPULSE_BENCH_CPU_FILE": cpu_file}, "/readyz") as c:
            proc = psutil.Process(c.proc.pid)
            time.sleep(warmup)
            v0 = scrape_values(port)
            r0, p0, t0 = _cpu_report(c, cpu_file, 0), proc.cpu_times(), time.monotonic()
            failures = _scrape_every(port, 1.0, window)
            r1, p1, t1 = _cpu_report(c, cpu_file, r0["seq"]), proc.cpu_times(), time.monotonic()
            v1 = scrape_values(port)
            elapsed = t1 - t0
            rss = []
            failures += _scrape_every(port, 0.2, soak, on_second=lambda: rss.append(proc.memory_info().rss))
            rss.append(proc.memory_info().rss)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cpu_file)
    if failures:
        rows.append(_row("agent", "failed scrapes during the run", "", str(failures), "see the serve log"))
    psutil_cpu = (p1.user + p1.system - p0.user - p0.system) / elapsed
    groups = {g: (r1["groups"].get(g, 0) - r0["groups"].get(g, 0)) / elapsed for g in r1["groups"]}
    size = f"reference, {elapsed:.0f} s at 1 s ticks"
    rows.append(_row("agent", "serve process CPU, whole (agent + simulated world)", size, f"{psutil_cpu * 1e3:.1f} ms/s",
                     f"{psutil_cpu * 100:.2f}% of one core (psutil; 1 gzip scrape/s)"))
    parts = (("agent threads, fake NVML excluded", lambda g: g.endswith("(agent)") or g.startswith("other agent"),
              "the 1% target is the tick's (tick rows); workload scrapes run off the tick"),
             ("simulator (excluded)", lambda g: g == FAKE_NVML or g.startswith("simulated world"), ""),
             ("neither", lambda g: True, "grpc core threads serve both sides"))
    left = dict(groups)
    for label, belongs, note in parts:
        mine = {g: v for g, v in left.items() if belongs(g)}
        for g in mine:
            del left[g]
        total = sum(mine.values())
        rows.append(_row("agent", f"  {label}", "", f"{total * 1e3:.1f} ms/s", f"{total * 100:.2f}% of one core; {note}".rstrip("; ")))
        for g, v in sorted(mine.items(), key=lambda kv: -kv[1]):
            rows.append(_row("agent", f"    {g}", "", f"{v * 1e3:.1f} ms/s", f"{v * 100:.2f}% of one core"))
    endpoints = sum(1 for (name, _), v in v1.items() if name == "gpulse_workload_scrape_up" and v == 1)
    scrape_group = groups.get("workload endpoint scrapes (agent)", 0.0)
    if endpoints:
        rows.append(_row("agent", "  per workload endpoint scrape (agent)", f"{endpoints} endpoints up, 1 scrape/s each",
                         f"{scrape_group / endpoints * 1e6:.0f} us",
                         "scrape thread CPU / scrapes: kept connections, body parsed as it arrives, unwanted families skipped"))
    rows += nvml_rows(v0, v1)
    mib = [r / MIB for r in rss]
    start, mid, end = mib[0], mib[len(mib) // 2], mib[-1]
    ok = max(mib) <= RSS_TARGET_MIB
    rows.append(_row("memory", "serve RSS after warm-up: start / mid / end of soak", f"reference, {soak} s, scrape every 0.2 s",
                     f"{start:.1f} / {mid:.1f} / {end:.1f} MiB",
                     f"max {max(mib):.1f} MiB, drift {end - start:+.1f} MiB; includes the simulated world; "
                     f"target <= {RSS_TARGET_MIB} MiB: {_holds(ok)}"))
    ctx.data["rss_mib"] = mib
    return rows


# --- scrape latency under 16 concurrent scrapers -------------------------------------------
def server_tuned() -> bool:
    """Whether agent.server already has a listen backlog for 16 scrapers and TCP_NODELAY: the
    event-loop server listens with a backlog of 256 and sets TCP_NODELAY on every connection."""
    return True


def _measure(args, per_scraper, ready_path, env=None):
    port = free_port()
    with child(args(port), port, env, ready_path=ready_path):
        time.sleep(1.0)  # a few ticks, so scrapes meet a running sampler
        result = load(port, SCRAPERS, per_scraper)
        body = get(port)[1]
    return result, body


def _latency_row(label, size, result, bases=()):
    """bases: [(name, result)] to state this case's p50 and p99 as multiples of."""
    lat, failures, wall = result
    p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
    note = f"{len(lat)} scrapes in {wall:.2f} s"
    if failures:
        note += f", {failures} failed"
    for name, base in bases:
        note += f"; {percentile(base[0], 0.50) and p50 / percentile(base[0], 0.50):.1f}x / {p99 / percentile(base[0], 0.99):.1f}x {name}"
    return _row("scrape", label, size, f"p50 {_ms(p50)}, p99 {_ms(p99)}", note)


def bench_scrape(ctx):
    """Each case: gpulse as it is, gpulse with the proposed server settings when agent.server
    lacks them, then prometheus_client's server on the same series; 16 scrapers each."""
    rows, p99s = [], {"gpulse": [], "tuned": []}
    per = 5 if ctx.quick else 20
    tuned_env = None if server_tuned() else {"GPULSE_BENCH_SERVER_TUNING": "1"}
    with tempfile.TemporaryDirectory(prefix="gpulse-bench-") as tmp:
        cases = [("reference", "reference node", lambda p: [sys.executable, "-m", "gpulse.cli", "serve", *serve_args(p)],
                  lambda p: [*CHILD, "serve", *serve_args(p)], "/readyz", None, 3 if ctx.quick else 10)]
        for n in ctx.sizes:
            cases.append((f"{n:,}", f"{n:,} synthetic", lambda p, n=n: [*CHILD, "cache-server", str(n), str(p)],
                          lambda p, n=n: [*CHILD, "cache-server", str(n), str(p)], "/metrics", str(n),
                          1 if ctx.quick else (10 if n <= 2000 else 4 if n <= 10000 else 2)))
        for key, size, args, tuned_args, ready, pc_source, pc_per in cases:
            gp, body = _measure(args, per, ready)
            if pc_source is None:  # the reference node's own series, as the agent served them
                expo = pathlib.Path(tmp, "reference.prom")
                expo.write_bytes(body)
                pc_source = f"@{expo}"
                size = f"reference node ({len(kernels.parse_exposition(body).samples):,} series)"
            rows.append(_latency_row("gpulse (served from the last tick's bytes)", size, gp))
            p99s["gpulse"].append((key, percentile(gp[0], 0.99)))
            bases = [("gpulse", gp)]
            if tuned_env:
                tuned, _ = _measure(tuned_args, per, ready, tuned_env)
                bases.append(("gpulse proposed", tuned))
                rows.append(_latency_row("gpulse + listen backlog 128, TCP_NODELAY (proposed)", size, tuned))
                p99s["tuned"].append((key, percentile(tuned[0], 0.99)))
            pc, _ = _measure(lambda p: [*CHILD, "pc-server", pc_source, str(p)], pc_per, "/metrics")
            rows.append(_latency_row("prometheus_client start_http_server, same series", size, pc, bases))
    for variant, label in (("gpulse", "gpulse p99 as series grow"), ("tuned", "gpulse (proposed settings) p99 as series grow")):
        if p99s[variant]:
            worst = max(v for _, v in p99s[variant])
            note = ("about 1 s at every size: a TCP SYN retransmit, the listen backlog of 5 drops some of 20 connects"
                    if worst >= 0.9 else "served from cache: grows with the gzip body's bytes on the wire, not the render")
            rows.append(_row("scrape", label, " -> ".join(k for k, _ in p99s[variant]),
                             " -> ".join(f"{v * 1e3:.1f}" for _, v in p99s[variant]) + " ms", note))
    return rows


AGENT_SECTIONS = {
    "tick": bench_tick,
    "agent": bench_agent,
    "scrape": bench_scrape,
}
