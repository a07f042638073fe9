"""The collector runner: isolation, declared families only, the series ceiling, self last."""

from gpulse import catalog
from gpulse.collectors import SELF, CollectorRunner, FunctionCollector
from gpulse.snapshot import Snapshot


def ups(n):
    def collect(snapshot):
        fam = catalog.family("gpulse_gpu_up")
        for i in range(n):
            fam.add((str(i), f"GPU-{i}"), 1.0)
        yield fam
    return FunctionCollector("gpu", ("gpulse_gpu_up",), collect)


def by_name(families):
    return {f.name: f for f in families}


def test_a_failing_collector_reports_0_and_the_rest_renders():
    def boom(snapshot):
        raise RuntimeError("boom")
    runner = CollectorRunner([ups(2), FunctionCollector("mig", (), boom)], SELF, 100)
    fams = by_name(runner.run(Snapshot(timestamp=1.0, node_name="n")))
    assert len(fams["gpulse_gpu_up"].samples) == 2
    assert dict(fams["gpulse_collector_success"].samples) == {("gpu",): 1.0, ("mig",): 0.0}
    assert {k for k, _ in fams["gpulse_collector_duration_seconds"].samples} == {("gpu",), ("mig",)}


def test_an_undeclared_family_fails_the_collector():
    def sneaky(snapshot):
        yield catalog.family("gpulse_gpu_power_watts")
    runner = CollectorRunner([FunctionCollector("gpu", ("gpulse_gpu_up",), sneaky)], SELF, 100)
    fams = by_name(runner.run(Snapshot(timestamp=1.0, node_name="n")))
    assert "gpulse_gpu_power_watts" not in fams
    assert dict(fams["gpulse_collector_success"].samples) == {("gpu",): 0.0}


def test_series_over_the_ceiling_are_dropped_and_counted():
    runner = CollectorRunner([ups(5)], SELF, 3)
    runner.run(Snapshot(timestamp=1.0, node_name="n"))
    fams = by_name(runner.run(Snapshot(timestamp=2.0, node_name="n")))
    assert len(fams["gpulse_gpu_up"].samples) == 3
    assert dict(fams["gpulse_series_dropped_total"].samples) == {("gpulse_gpu_up",): 4.0}


def test_a_disabled_collector_is_neither_run_nor_reported():
    runner = CollectorRunner([ups(1)], SELF, 100)
    fams = by_name(runner.run(Snapshot(timestamp=1.0, node_name="n")))
    assert dict(fams["gpulse_collector_success"].samples) == {("gpu",): 1.0}
