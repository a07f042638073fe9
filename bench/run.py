"""gpulse benchmarks: ratios measured in one run, printed as a table and written to
bench/RESULTS.md.

    .venv/bin/python bench/run.py [--quick] [--only SECTION ...] [--sizes 2000,10000,50000]

Each section is a function in SECTIONS taking the run context and returning rows; add a
section by appending one. Timings are medians of repeated runs in this process (GC on, as
in production); this machine is noisy, so compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import pathlib
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gpulse import _expo_py, _textparse_py, _window_py, kernels  # noqa: E402
from series import snapshots  # noqa: E402
from table import Row  # noqa: E402


@dataclass
class Context:
    sizes: list
    quick: bool
    data: dict = field(default_factory=dict)  # size -> list of snapshots

    def snapshots(self, n):
        if n not in self.data:
            self.data[n] = snapshots(n)
        return self.data[n]

    def budget(self, seconds):
        return seconds / 4 if self.quick else seconds


def timed(fn, ctx: Context, min_runs=5, seconds=1.0):
    """Median seconds per call over at least min_runs calls and `seconds` of wall time."""
    fn(0)
    fn(1)
    times = []
    deadline = time.perf_counter() + ctx.budget(seconds)
    i = 0
    while len(times) < min_runs or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
        i += 1
    return statistics.median(times)


def ms(s):
    return f"{s * 1e3:.3f} ms"


def ratio(a, b):
    return f"{a / b:.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def _pc_registry(fams_list):
    """A prometheus_client registry whose collector rebuilds GaugeMetricFamily objects from
    the current snapshot on every scrape, as a client_python exporter does."""
    from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

    state = {"i": 0}

    class Collector:
        def collect(self):
            for fam in fams_list[state["i"] % len(fams_list)]:
                g = GaugeMetricFamily(fam.name, fam.help, labels=fam.labelnames)
                for lv, v in fam.samples:
                    g.add_metric(lv, v)
                yield g

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector())
    return reg, state


def bench_render(ctx: Context):
    from prometheus_client import generate_latest

    rows = []
    for n in ctx.sizes:
        snaps = ctx.snapshots(n)
        reg, state = _pc_registry(snaps)

        def pc(i):
            state["i"] = i
            generate_latest(reg)

        t_pc = timed(pc, ctx, min_runs=3 if n >= 50000 else 5, seconds=3.0)
        compiled = kernels.ExpositionEncoder()
        views = []

        def cy_view(i):
            views[:] = [compiled.render_view(snaps[i % 4])]  # hold one, as the server would

        def cy_bytes(i):
            compiled.render(snaps[i % 4])

        t_view = timed(cy_view, ctx, min_runs=20, seconds=1.5)
        t_bytes = timed(cy_bytes, ctx, min_runs=20, seconds=1.5)
        pure = _expo_py.ExpositionEncoder()
        t_pure = timed(lambda i: pure.render(snaps[i % 4]), ctx, min_runs=5, seconds=1.5)
        size = f"{n:,}"
        impl = "compiled" if kernels.EXTENSIONS_LOADED else "pure (no extension!)"
        rows += [
            Row("render", "prometheus_client generate_latest (collect + render)", size, ms(t_pc)),
            Row("render", f"ExpositionEncoder.render_view, {impl}", size, ms(t_view), f"{t_view / n * 1e9:.0f} ns/series; {ratio(t_pc, t_view)} vs generate_latest"),
            Row("render", f"ExpositionEncoder.render (bytes copy), {impl}", size, ms(t_bytes), f"{t_bytes / n * 1e9:.0f} ns/series; {ratio(t_pc, t_bytes)} vs generate_latest"),
            Row("render", "pure twin render", size, ms(t_pure), f"compiled is {ratio(t_pure, t_view)} faster; twin {ratio(t_pc, t_pure)} vs generate_latest"),
        ]
    return rows


def bench_parse(ctx: Context):
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for n in ctx.sizes:
        body = _expo_py.ExpositionEncoder().render(ctx.snapshots(n)[0])
        text = body.decode()

        def pc(i):
            for fam in text_string_to_metric_families(text):
                for _ in fam.samples:
                    pass

        t_pc = timed(pc, ctx, min_runs=2 if n >= 50000 else 3, seconds=3.0)
        t_c = timed(lambda i: kernels.parse_exposition(body), ctx, min_runs=5, seconds=1.5)
        t_py = timed(lambda i: _textparse_py.parse_exposition(body), ctx, min_runs=3, seconds=1.5)
        size = f"{n:,}"
        impl = "compiled" if kernels.EXTENSIONS_LOADED else "pure (no extension!)"
        rows += [
            Row("parse", "prometheus_client text_string_to_metric_families", size, ms(t_pc)),
            Row("parse", f"parse_exposition, {impl}", size, ms(t_c), f"{ratio(t_pc, t_c)} vs prometheus_client"),
            Row("parse", "pure twin parse_exposition", size, ms(t_py), f"compiled is {ratio(t_py, t_c)} faster; twin {ratio(t_pc, t_py)} vs prometheus_client"),
        ]
    return rows


def bench_windows(ctx: Context):
    """One tick of window upkeep on a large node: observe + mean + max + p95 per key."""
    rows = []
    keys = [("gpu", g, f) for g in range(64) for f in range(16)]  # 1,024 windowed series

    def tick(mod):
        w = mod.WindowSet(60.0, capacity=128)
        state = {"t": 0.0}

        def run(i):
            state["t"] += 1.0
            t = state["t"]
            for k in keys:
                w.observe(k, t, (i * 7 + k[2]) % 101)
                w.mean(k, t)
                w.max(k, t)
                w.quantile(k, 0.95, t)

        for _ in range(70):  # fill the windows first
            run(0)
        return run

    if kernels.EXTENSIONS_LOADED:
        from gpulse import _window

        t_c = timed(tick(_window), ctx, min_runs=10, seconds=1.0)
    t_py = timed(tick(_window_py), ctx, min_runs=5, seconds=1.0)
    size = f"{len(keys):,} keys x 60 samples"
    if kernels.EXTENSIONS_LOADED:
        rows.append(Row("windows", "WindowSet tick (observe, mean, max, p95), compiled", size, ms(t_c), f"compiled is {ratio(t_py, t_c)} faster"))
    rows.append(Row("windows", "WindowSet tick, pure twin", size, ms(t_py)))
    return rows


def bench_compress(ctx: Context):
    rows = []
    n = 10000 if 10000 in ctx.sizes else ctx.sizes[0]
    body = _expo_py.ExpositionEncoder().render(ctx.snapshots(n)[0])
    candidates = [
        ("gzip level 9 (prometheus_client)", lambda b: gzip.compress(b, 9)),
        ("zlib level 6", lambda b: zlib.compress(b, 6, wbits=31)),
        ("zlib level 1", lambda b: zlib.compress(b, 1, wbits=31)),
    ]
    try:
        from zlib_ng import zlib_ng

        candidates.append(("zlib-ng level 1 (zlib-ng)", lambda b: zlib_ng.compress(b, 1, wbits=31)))
    except ImportError:
        rows.append(Row("compress", "zlib-ng level 1", "", "not installed", "pip install zlib-ng"))
    try:
        from isal import isal_zlib

        candidates.append(("ISA-L level 1 (isal)", lambda b: isal_zlib.compress(b, 1, wbits=31)))
    except ImportError:
        rows.append(Row("compress", "ISA-L level 1", "", "not installed", "pip install isal"))
    base = None
    for name, fn in candidates:
        t = timed(lambda i: fn(body), ctx, min_runs=5, seconds=1.0)
        out = fn(body)
        assert gzip.decompress(out) == body
        base = base or t
        rows.append(Row("compress", name, f"{n:,} ({len(body) / 1e6:.2f} MB)", ms(t), f"{len(out) / 1e3:.0f} kB, {len(body) / len(out):.1f}:1, {ratio(base, t)} vs gzip-9"))
    t = timed(lambda i: kernels.compress(body), ctx, min_runs=5, seconds=1.0)
    rows.append(Row("compress", f"kernels.compress (picked: {kernels.COMPRESSOR})", f"{n:,}", ms(t), f"{ratio(base, t)} vs gzip-9"))
    return rows


SECTIONS = {
    "render": bench_render,
    "parse": bench_parse,
    "windows": bench_windows,
    "compress": bench_compress,
}

try:  # sections that run the whole agent (gpulse serve); absent until that exists
    from agent_bench import AGENT_SECTIONS

    SECTIONS.update(AGENT_SECTIONS)
except ImportError:
    pass


def table(rows):
    head = ("section", "case", "series", "median", "ratio / note")
    cells = [head] + [(r.section, r.case, r.size, r.value, r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(head))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the time budget per cell")
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run only these sections")
    ap.add_argument("--sizes", default="2000,10000,50000", help="series counts for render and parse")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="markdown file to write ('' to skip)")
    args = ap.parse_args(argv)
    ctx = Context(sizes=[int(s) for s in args.sizes.split(",")], quick=args.quick)
    rows = []
    for name in args.only or list(SECTIONS):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += SECTIONS[name](ctx)
        gc.collect()
    text = table(rows)
    print(text)
    if args.out:
        env = (
            f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"extensions loaded: {kernels.EXTENSIONS_LOADED}, compressor: {kernels.COMPRESSOR}"
        )
        pathlib.Path(args.out).write_text(
            "# gpulse benchmark results\n\n"
            f"Written by `make bench` (`bench/run.py`) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {env}.\n"
            "Kernel sections: medians in one process. Whole-agent sections (tick, agent, nvml, memory, scrape): "
            "child processes on the simulated reference node, see bench/agent_bench.py. "
            "The machine is shared and noisy, so read the ratios.\n\n" + text + "\n"
        )
        print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.modules.setdefault("run", sys.modules["__main__"])  # sections import Row from here: one class
    main()
