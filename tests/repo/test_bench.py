"""The whole-agent benchmark sections (bench/agent_bench.py): the tick section runs in its
--quick form (a few seconds: one child process ticking the reference node by hand); the
serve and scrape sections run many seconds of load, so only their arithmetic and the
measuring hooks are checked here, and `make bench` runs them. No timing is asserted."""

import math
import os
import pathlib
import re
import sys
import threading
import types

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import agent_bench  # noqa: E402
import agent_child  # noqa: E402
from run import SECTIONS, Context  # noqa: E402

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _numbers(text):
    return [float(x) for x in NUMBER.findall(text)]


def test_agent_sections_are_registered_with_run():
    assert {"tick", "agent", "scrape"} <= set(SECTIONS)


def test_tick_section_quick_produces_finite_rows():
    rows = agent_bench.bench_tick(Context(sizes=[2000], quick=True))
    cases = [r.case.strip() for r in rows]
    assert cases[0].startswith("tick thread CPU, total")
    assert any(c.startswith("of which fake NVML") for c in cases)
    assert any(c.startswith("of which agent") for c in cases)
    for label in ("NVML read", "windows", "attribution", "collectors", "render", "gzip"):
        assert any(c.startswith(label) for c in cases), label
    values = {r.case.strip(): _numbers(r.value)[0] for r in rows}
    assert all(math.isfinite(v) for v in values.values())
    total = values["tick thread CPU, total (incl. fake NVML)"]
    fake = next(v for c, v in values.items() if c.startswith("of which fake NVML"))
    agent = values["of which agent"]
    assert total > 0 and fake > 0 and agent > 0
    assert agent < total and fake < total
    assert "838 series" in rows[0].size or re.search(r"\d[\d,]* series", rows[0].size)


def _metrics(ticks, calls):
    values = {("gpulse_ticks_total", ()): ticks}
    values.update({("gpulse_gpu_up", (("gpu", str(i)),)): 1.0 for i in range(2)})
    values.update({("gpulse_nvml_calls_total", (("function", f),)): n for f, n in calls.items()})
    return values


def test_nvml_rows_split_per_tick_from_one_time_calls():
    # 2 GPUs; init once, a name per GPU at discovery; memory read per GPU per tick.
    # A scrape shows the calls of ticks_total + 1 ticks (the tick that rendered it).
    v0 = _metrics(4, {"nvmlInit": 1, "nvmlDeviceGetName": 2, "nvmlDeviceGetMemoryInfo": 2 + 2 * 5})
    v1 = _metrics(14, {"nvmlInit": 1, "nvmlDeviceGetName": 2, "nvmlDeviceGetMemoryInfo": 2 + 2 * 15})
    per_tick, one_time = agent_bench.nvml_rows(v0, v1)
    assert float(per_tick.value) == pytest.approx(1.0)  # 2 calls per tick over 2 GPUs
    assert float(one_time.value) == pytest.approx(2.5)  # init + 2 names + 2 memory probes, over 2 GPUs
    assert "GetMemoryInfo 1.00" in per_tick.note


def test_percentile_is_nearest_rank_and_nan_when_empty():
    values = sorted(range(1, 101))
    assert agent_bench.percentile(values, 0.5) == 50
    assert agent_bench.percentile(values, 0.99) == 99
    assert agent_bench.percentile([7], 0.99) == 7
    assert math.isnan(agent_bench.percentile([], 0.5))


def test_thread_groups_separate_agent_from_simulator():
    def group(name, target=None):
        return agent_child.thread_group(threading.Thread(name=name, target=target))

    assert group("gpulse-sampler").startswith("tick thread")
    assert group("gpulse-scrape_3").startswith("workload endpoint scrapes")
    assert group("sim-inference").startswith("simulated world")
    assert group("fake-kubelet_0").startswith("simulated world")
    from gpulse.sim.apiserver import _Server as SimServer

    sim_server = object.__new__(SimServer)
    assert group("gpulse-http").startswith("HTTP /metrics")  # the event loop
    assert group("gpulse-http-work_0").startswith("HTTP /metrics")  # its bcrypt / review / snapshot workers
    assert group("Thread-9 (process_request_thread)", sim_server.process_request_thread).startswith("simulated world")
    assert group("Thread-3") == agent_child.UNCLASSIFIED


def test_timed_nvml_charges_calls_and_caches_constants():
    calls = []
    lib = types.SimpleNamespace(nvmlDeviceGetCount=lambda: calls.append(1) or 8, NVML_CLOCK_SM=1, other=object())
    timed = agent_child.TimedNvml(lib)
    assert timed.nvmlDeviceGetCount() == 8 and timed.nvmlDeviceGetCount() == 8
    assert calls == [1, 1] and timed.ncalls == 2
    assert sum(timed.spent_ns.values()) >= 0
    assert timed.NVML_CLOCK_SM == 1 and "NVML_CLOCK_SM" in vars(timed)
    assert timed.other is lib.other and "other" not in vars(timed)
    assert timed.calibrate(2000) >= 0


def test_cpu_report_accounts_the_whole_process():
    report = agent_child.cpu_report(None)
    t = os.times()
    assert sum(report["groups"].values()) == pytest.approx(report["total"], abs=1e-6)
    assert report["total"] <= t.user + t.system + 1e-6
