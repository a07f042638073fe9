"""The cold-start timeline through Prometheus: the scale-up node (tests/fixtures/e2e/
scaleup-node.yaml) schedules vLLM replicas and a Triton pod while the stack runs, one of
them crashes and restarts. What Prometheus scraped must show each new pod's phases as the
scenario's delays (within one tick plus one scrape interval), one histogram observation per
start (the restart included), the recording rules' quantiles, and the replicas starting
while they did.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.promql import by_label

pytestmark = pytest.mark.e2e

NODE = "e2e-scaleup-node"
TICK = 1.0  # the agents' --collect.interval (default)
SCRAPE = 1.0  # their --workloads.scrape-interval (default)
TOLERANCE = TICK + SCRAPE
RESTART_TIMEOUT = 240.0


def _runs(stack):
    from gpulse.sim.lifecycle import Timeline

    agent = stack.agents[NODE]
    return agent, [(pod, Timeline(pod.startup)) for pod in agent.spec.pods if pod.startup is not None]


def _expected(run):
    return {"containers_started": run.containers - run.begin, "gpu_memory_allocated": run.memory - run.containers,
            "server_answering": run.answering - run.memory, "model_ready": run.ready - run.answering,
            "first_request_served": run.first_request - run.ready}


@pytest.fixture(scope="module")
def settled(stack):
    """Wait until every start of the scenario, the restart included, served its first
    request and Prometheus scraped it."""
    agent, starting = _runs(stack)
    last = max(r.first_request for _, t in starting for r in t.runs)
    # The scenario's t=0 is at most a couple of seconds after the process started.
    until = agent.started_at + last + 3 * TOLERANCE
    if time.time() < until:
        assert until - time.time() < RESTART_TIMEOUT, "the scale-up scenario outlasts the e2e budget"
        time.sleep(until - time.time())

    def all_counted():
        got = stack.prometheus.query(f'sum(gpulse_workload_startup_seconds_count{{node="{NODE}"}})')
        want = sum(len(t.runs) for _, t in starting)
        assert got and got[0]["value"] == want, f"{got} completed starts, {want} expected"
        return True

    stack.wait_for(all_counted, "every start observed in the histogram")
    return agent, starting


def test_each_new_pod_phase_matches_the_scenario(stack, settled):
    _, starting = settled
    result = stack.prometheus.query(f'gpulse_workload_startup_phase_seconds{{node="{NODE}"}}')
    got = {}
    for r in result:
        m = r["metric"]
        got.setdefault(m["pod"], {})[m["phase"]] = (m["start"], r["value"])
    for pod, timeline in starting:
        run = timeline.runs[-1]
        kind = "restart" if run.index else "initial"
        for phase, want in _expected(run).items():
            assert phase in got[pod.name], f"{pod.name}: no {phase} in {got[pod.name]}"
            start, value = got[pod.name][phase]
            assert start == kind, f"{pod.name}: {start}"
            assert value == pytest.approx(want, abs=TOLERANCE), f"{pod.name} {phase}: {value} s, scenario {want} s"


def test_the_histogram_counts_every_start_restarts_included(stack, settled):
    _, starting = settled
    counts = by_label(stack.prometheus.query(
        f'sum by (workload, workload_type, start) (gpulse_workload_startup_seconds_count{{node="{NODE}"}})'),
        "workload", "workload_type", "start")
    assert counts == {("llama", "deployment", "initial"): 2, ("llama", "deployment", "restart"): 1,
                      ("triton", "statefulset", "initial"): 1}
    # The sum is scheduled (or the crash) -> model ready, per start.
    sums = by_label(stack.prometheus.query(
        f'sum by (workload, start) (gpulse_workload_startup_seconds_sum{{node="{NODE}"}})'), "workload", "start")
    want = {}
    for pod, timeline in starting:
        for run in timeline.runs:
            key = (pod.owner[1].rsplit("-", 1)[0] if pod.owner[0] == "ReplicaSet" else pod.owner[1],
                   "restart" if run.index else "initial")
            want[key] = want.get(key, 0.0) + run.ready - run.begin
    assert set(sums) == set(want)
    for key, total in want.items():
        assert sums[key] == pytest.approx(total, abs=2 * TOLERANCE), key


def test_recording_rules_give_quantiles_and_starting_replicas(stack, settled):
    _, starting = settled
    prom = stack.prometheus
    quantiles = by_label(prom.query('namespace_workload:gpulse_workload_startup_seconds:histogram_quantile'
                                    '{namespace="serving"}'), "workload", "start", "quantile")
    initial = sorted(r.ready - r.begin for p, t in starting if p.name.startswith("llama") for r in t.runs[:1])
    for q in ("0.5", "0.9", "0.99"):
        value = quantiles[("llama", "initial", q)]
        # Interpolated inside the buckets that hold the starts (15 s and 30 s bounds here).
        assert 10.0 <= value <= 30.0, (q, value, initial)
    assert ("llama", "restart", "0.5") in quantiles and ("triton", "initial", "0.9") in quantiles
    mean = by_label(prom.query('namespace_workload:gpulse_workload_startup_seconds:mean1h{namespace="serving"}'),
                    "workload", "start")
    assert mean[("llama", "initial")] == pytest.approx(sum(initial) / len(initial), abs=TOLERANCE)
    starting_now = by_label(prom.query('namespace_workload:gpulse_workload_starting:sum{namespace="serving"}'),
                            "workload")
    assert starting_now == {"llama": 0, "triton": 0}


def test_replicas_were_counted_as_starting_while_they_started(stack, settled):
    agent, starting = settled
    prom = stack.prometheus
    m4q9z = next(t for p, t in starting if p.name.endswith("m4q9z")).runs[0]
    # Half-way through its model load, at a past instant: that pod was on its way.
    at = agent.started_at + (m4q9z.memory + m4q9z.ready) / 2 + TOLERANCE
    result = prom.query(f'gpulse_workload_starting{{node="{NODE}",pod=~".*-m4q9z"}} == 1', at=at)
    assert [r["metric"].get("phase") for r in result] == ["server_answering"], result
    during = prom.query('namespace_workload:gpulse_workload_starting:sum{namespace="serving",workload="llama"}', at=at)
    assert during and during[0]["value"] >= 1


def test_no_startup_alert_fires_for_a_healthy_scale_up(stack, settled):
    firing = [a for a in stack.prometheus.alerts()
              if a["labels"].get("alertname", "").startswith("GpulseWorkloadStartup")]
    assert firing == []
