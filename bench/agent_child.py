"""Child processes for bench/agent_bench.py; each mode runs in a fresh interpreter so the
benchmark process's own heap and threads never land in what is measured.

    python bench/agent_child.py serve SERVE-FLAGS...   gpulse serve, with per-thread CPU accounting
    python bench/agent_child.py tick TICKS WARMUP      ticks the reference node by hand; JSON on stdout
    python bench/agent_child.py cache-server SERIES PORT
    python bench/agent_child.py pc-server SERIES|@EXPOSITION-FILE PORT

`serve` is `python -m gpulse serve` plus two measuring hooks installed before it starts:
every thread's CPU is charged to a group (tick, workload scrapes, kubernetes, http, the
simulated world, ...) and every fake NVML call is timed, so the simulator's cost can be shown
apart from the agent's. SIGUSR1 writes the running totals to $GPULSE_BENCH_CPU_FILE as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import sys
import threading
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FAKE_NVML = "fake NVML calls"
UNCLASSIFIED = "unclassified (gRPC core, interpreter)"
TIMING = "bench timing wrappers (not the agent)"


# --- fake NVML timing ---------------------------------------------------------------------
class TimedNvml:
    """Wraps a FakeNvml: the thread CPU of every call into the simulator (nvml* functions and
    the c_nvml* structures it builds in Python) is added to `spent_ns[group]`, the group being
    the calling thread's (see thread_group). Constants are cached on the wrapper, as the real
    pynvml module holds them, so the fake's attribute fallback is not charged to the agent.
    `overhead_ns` is what the wrapper itself adds per call outside the timed part (calibrated):
    it belongs to neither side, so reports move it out of the calling thread's CPU."""

    def __init__(self, lib):
        self._lib = lib
        self.spent_ns = collections.Counter()
        self.calls = collections.Counter()  # group -> calls
        self.overhead_ns = 0.0

    def __getattr__(self, name):
        attr = getattr(self._lib, name)
        if name.startswith(("nvml", "c_nvml")) and callable(attr):
            attr = self._wrap(attr)
        if name.startswith(("nvml", "c_nvml", "NVML")):
            self.__dict__[name] = attr  # later lookups skip both __getattr__ layers
        return attr

    def _wrap(self, call):
        clock, spent, calls, current = time.thread_time_ns, self.spent_ns, self.calls, threading.current_thread

        def timed(*args):
            group = getattr(current(), "_bench_group", UNCLASSIFIED)
            calls[group] += 1
            t0 = clock()
            try:
                return call(*args)
            finally:
                spent[group] += clock() - t0

        return timed

    @property
    def ncalls(self) -> int:
        return sum(self.calls.values())

    def calibrate(self, n: int = 20000) -> float:
        """Per-call CPU the wrapper adds outside its timed part, from a no-op function."""
        probe = TimedNvml(types.SimpleNamespace(nvmlNoop=lambda: None))
        wrapped, bare = probe.nvmlNoop, (lambda: None)
        clock = time.thread_time_ns
        t0 = clock()
        for _ in range(n):
            bare()
        t1 = clock()
        for _ in range(n):
            wrapped()
        t2 = clock()
        self.overhead_ns = max(0.0, ((t2 - t1) - sum(probe.spent_ns.values()) - (t1 - t0)) / n)
        return self.overhead_ns


# --- per-thread CPU by group ----------------------------------------------------------
_ended = collections.Counter()  # group -> CPU seconds of threads that have finished
_ended_lock = threading.Lock()


def thread_group(t: threading.Thread) -> str:
    """Which part of the process a thread works for, from its name or its target's module."""
    name = t.name
    target = getattr(t, "_target", None)
    owner = getattr(target, "__self__", None)
    module = (type(owner).__module__ if owner is not None else getattr(target, "__module__", None)) or ""
    if name.startswith(("sim-", "fake-")) or module.startswith("gpulse.sim"):
        return "simulated world (kubelet, inference servers, API server)"
    if name == "gpulse-sampler":
        return "tick thread (agent)"
    if name.startswith("gpulse-scrape"):
        return "workload endpoint scrapes (agent)"
    if name.startswith(("gpulse-kubelet", "gpulse-pod-watch")):
        return "kubelet and pod watch (agent)"
    if name.startswith("gpulse-http") or module == "gpulse.server":
        return "HTTP /metrics serving (agent)"
    if name.startswith("gpulse") or module.startswith("gpulse") or t is threading.main_thread():
        return "other agent threads (XID events, push, main)"
    return UNCLASSIFIED


def install_thread_accounting() -> None:
    original_run = threading.Thread.run

    def run(self):
        self._bench_group = thread_group(self)
        try:
            original_run(self)
        finally:
            self._bench_done = True
            with _ended_lock:
                _ended[self._bench_group] += time.thread_time()

    threading.Thread.run = run
    threading.main_thread()._bench_group = thread_group(threading.main_thread())


def cpu_report(nvml: TimedNvml | None) -> dict:
    """CPU seconds by group since the process started; the fake NVML calls moved out of the
    groups that made them; what no Python thread accounts for is UNCLASSIFIED."""
    with _ended_lock:
        groups = collections.Counter(_ended)
    for t in threading.enumerate():
        if getattr(t, "_bench_done", False) or t.ident is None:
            continue
        try:
            groups[getattr(t, "_bench_group", UNCLASSIFIED)] += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, ProcessLookupError):
            pass  # ended between enumerate() and the read
    if nvml is not None:
        for group, ns in list(nvml.spent_ns.items()):
            groups[group] -= ns / 1e9
            groups[FAKE_NVML] += ns / 1e9
        for group, n in list(nvml.calls.items()):
            groups[group] -= n * nvml.overhead_ns / 1e9
            groups[TIMING] += n * nvml.overhead_ns / 1e9
    t = os.times()
    total = t.user + t.system
    groups[UNCLASSIFIED] += total - sum(groups.values())
    return {"total": total, "groups": dict(groups), "fake_nvml_calls": nvml.ncalls if nvml else 0}


def serve(argv) -> int:
    from gpulse import cli
    from gpulse.sim import world as world_mod

    install_thread_accounting()
    holder = {}
    original_init = world_mod.World.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.nvml = holder["nvml"] = TimedNvml(self.nvml)
        holder["nvml"].calibrate()

    world_mod.World.__init__ = init
    out = os.environ.get("GPULSE_BENCH_CPU_FILE", "")
    seq = [0]

    def dump(*_):
        seq[0] += 1
        report = cpu_report(holder.get("nvml"))
        report["seq"] = seq[0]
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(report, fh)
        os.replace(tmp, out)

    if out:
        signal.signal(signal.SIGUSR1, dump)
    return cli.main(["serve", *argv])


# --- the reference node ticked by hand, stage by stage ------------------------------------
class _TimedEncoder:
    def __init__(self, encoder, spent):
        self._encoder, self._spent = encoder, spent

    def render(self, families):
        t0 = time.thread_time_ns()
        try:
            return self._encoder.render(families)
        finally:
            self._spent["render"] += time.thread_time_ns() - t0


def _timed(fn, spent, stage):
    def wrapper(*args, **kwargs):
        t0 = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += time.thread_time_ns() - t0
    return wrapper


def tick(ticks: int, warmup: int) -> int:
    """Tick the reference node `ticks` times after `warmup` ticks, with the default source
    intervals; print per-tick thread CPU by stage (ns) as JSON."""
    from gpulse import kernels

    from tests.harness import Run

    with Run("reference", workloads_scrape_interval=1.0, kubelet_refresh_interval=5.0) as run:
        s = run.sampler
        run.tick(warmup)
        spent = collections.Counter()
        inputs, reader = s.inputs, s.inputs.nvml.reader
        nvml = TimedNvml(reader.lib)
        nvml.calibrate()
        reader.lib = nvml
        reader.read = _timed(reader.read, spent, "nvml read")
        inputs.windows.apply = _timed(inputs.windows.apply, spent, "windows")
        inputs.attributor.update = _timed(inputs.attributor.update, spent, "attribution")
        inputs.identity.update = _timed(inputs.identity.update, spent, "identity")
        if inputs.startup is not None:
            inputs.startup.update = _timed(inputs.startup.update, spent, "startup")
        s.runner.run = _timed(s.runner.run, spent, "collectors")
        s.encoder = _TimedEncoder(s.encoder, spent)
        s.encoder_om = _TimedEncoder(s.encoder_om, spent)  # both formats are rendered each tick
        kernels.compress = _timed(kernels.compress, spent, "gzip")  # the sampler calls kernels.compress
        rows = []
        for _ in range(ticks):
            spent.clear()
            nvml.spent_ns.clear()
            calls0 = nvml.ncalls
            run.clock.t += 1.0
            t0 = time.thread_time_ns()
            rendered = s.tick(run.clock.t)
            total = time.thread_time_ns() - t0
            fake = sum(nvml.spent_ns.values())
            ncalls = nvml.ncalls - calls0
            rows.append({"total": total, "fake nvml": fake, "fake calls": ncalls, "timing": ncalls * nvml.overhead_ns, **spent})
            time.sleep(0.05)  # let the sources' own threads run between ticks, as at 1 s cadence
        series = sum(1 for line in rendered.text.splitlines() if line and not line.startswith(b"#"))
        print(json.dumps({"ticks": rows, "series": series, "gpus": len(reader.devices), "pods": len(rendered.snapshot.pods),
                          "extensions": kernels.EXTENSIONS_LOADED}))
    return 0


# --- servers for the scrape comparison ------------------------------------------------------
def _wait_for_term() -> None:
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def cache_server(n_series: int, port: int) -> int:
    """gpulse's HTTP server over synthetic series, re-rendered and compressed every second
    as the sampler does: scrapes are served from the last tick's bytes."""
    from gpulse import kernels
    from gpulse.sampler import Rendered
    from gpulse.server import make_server, serve_in_thread
    from series import snapshots

    snaps = snapshots(n_series)
    encoder = kernels.ExpositionEncoder()
    encoder_om = kernels.ExpositionEncoder(openmetrics=True)

    class BenchSampler:
        current = None

        def readiness(self):
            return True, ""

        def liveness(self):
            return True, ""

    sampler = BenchSampler()
    stop = threading.Event()

    def loop():
        i = 0
        while not stop.is_set():
            fams = snaps[i % len(snaps)]
            text, om = encoder.render(fams), encoder_om.render(fams)
            sampler.current = Rendered(text, kernels.compress(text), om, kernels.compress(om), None)
            i += 1
            stop.wait(1.0)

    threading.Thread(target=loop, name="gpulse-sampler", daemon=True).start()
    server = make_server(f"127.0.0.1:{port}", sampler)
    serve_in_thread(server)
    _wait_for_term()
    stop.set()
    server.shutdown()
    return 0


def _families_from_exposition(path: str):
    """[(name, type, help, labelnames, [(labelvalues, value)])] from a text exposition file."""
    from gpulse import kernels

    expo = kernels.parse_exposition(pathlib.Path(path).read_bytes())
    fams = collections.OrderedDict()
    for name, labels, value, _ts in expo.samples:
        family = name if name in expo.types else name.rsplit("_", 1)[0] if name.endswith("_total") else name
        names = tuple(k for k, _ in labels)
        entry = fams.setdefault((family, names), (expo.types.get(family, "untyped"), expo.helps.get(family, family), []))
        entry[2].append((tuple(v for _, v in labels), value))
    return [(name, typ, help_, names, samples) for (name, names), (typ, help_, samples) in fams.items()]


def pc_server(source: str, port: int) -> int:
    """prometheus_client's own HTTP server with a collector that builds the families on every
    scrape from the same series, as a client_python exporter does."""
    from prometheus_client import start_http_server
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, UnknownMetricFamily

    if source.startswith("@"):
        snaps = [_families_from_exposition(source[1:])]
    else:
        from series import snapshots

        snaps = [[(f.name, f.type, f.help, f.labelnames, f.samples) for f in fams] for fams in snapshots(int(source))]
    kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
    state = {"i": 0}

    class Collector:
        def collect(self):
            state["i"] += 1
            for name, typ, help_, labelnames, samples in snaps[state["i"] % len(snaps)]:
                fam = kinds.get(typ, UnknownMetricFamily)(name, help_, labels=labelnames)
                for labelvalues, value in samples:
                    fam.add_metric(labelvalues, value)
                yield fam

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    _wait_for_term()
    server.shutdown()
    return 0


def main(argv) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "serve":
        return serve(rest)
    if mode == "tick":
        return tick(int(rest[0]), int(rest[1]))
    if mode == "cache-server":
        return cache_server(int(rest[0]), int(rest[1]))
    if mode == "pc-server":
        return pc_server(rest[0], int(rest[1]))
    print(f"agent_child.py: unknown mode {mode!r} (serve, tick, cache-server, pc-server)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
