"""Energy, idle time and cost end to end: simulated agents -> Prometheus -> the repo's
recording rules, checked against the price file and the scenarios by hand arithmetic.

Node A (GCP a3-highgpu-4g, H100 80GB, priced by the built-in table's GCP row) holds: two
whole GPUs for llm/vllm; GPU 2 in MIG mode with two 3g.40gb instances (3 of the H100's 7
slices each), one for ml/trainer-0 and one held idle by research/notebook-carol; GPU 3
time-sliced in two halves for research/notebook-alice and notebook-bob. Node B's T4 on AWS
has no row in the table, so its vLLM replica costs nothing here (no price, never a guess).
"""

from __future__ import annotations

import time

import pytest
from gpulse.pricing import PriceTable

from tests.e2e.promql import by_label

pytestmark = pytest.mark.e2e

NODE_A, NODE_B = "e2e-node-a", "e2e-node-b"
HEALTHY = (NODE_A, NODE_B)


def _h100_gcp_price() -> float:
    row = PriceTable.load().lookup("H100-SXM5-80GB", "H100", "gcp", "on-demand")
    assert row is not None, "the built-in table prices an H100 80GB on GCP"
    return row.per_gpu_hour


def _settle(stack, seconds: float) -> None:
    """Wait until the stack has run `seconds` past its first rule evaluation, so windows
    start after every series' first sample."""
    delay = stack.ready_at + seconds - time.time()
    if delay > 0:
        time.sleep(delay)


def _tick_rate(stack, node: str = NODE_A) -> float:
    """rate(gpulse_ticks_total[5m]) of an agent: 1 per second once its series is 5 minutes old.
    A younger series' 5-minute rate is scaled down by Prometheus's extrapolation (it divides
    by the full 5 minutes); the agent's cost counters, born with it and sampled by the same
    scrapes, carry the same scale, so hand arithmetic is multiplied by this."""
    (value,) = [r["value"] for r in stack.prometheus.query(f'rate(gpulse_ticks_total{{node="{node}"}}[5m])')]
    return value


# Hand arithmetic from the price file: llm holds 2 whole H100s on node A (node B's T4 has no
# price); ml 3/7 of an H100 (a 3g.40gb instance); research two halves of GPU 3 and 3/7 of GPU 2.
# dra (tests/fixtures/e2e/dra-node.yaml): two whole GPUs, one shared by four holders, one 3g.40gb
FRACTIONS = {"llm": 2.0, "ml": 3 / 7, "research": 1 + 3 / 7, "dra": 3 + 3 / 7}


def test_cost_per_namespace_is_the_price_times_the_allocated_fraction(stack):
    _settle(stack, 45)
    price = _h100_gcp_price() / 3600  # per second

    def raw():
        # The counters themselves, over the last 30 s: no recording rule, no 5-minute window.
        got = by_label(stack.prometheus.query("sum by (namespace) (increase(gpulse_pod_gpu_cost_total[30s])) / 30"),
                       "namespace")
        assert set(FRACTIONS) <= set(got), got  # serving: the scale-up node, whose pods start during the run
        for ns, fraction in FRACTIONS.items():
            assert got[ns] == pytest.approx(fraction * price, rel=0.05), ns
        return got

    stack.wait_for(raw, "namespace spend at the price file's rate")

    def rules():
        scale = _tick_rate(stack)
        got = by_label(stack.prometheus.query("namespace:gpulse_pod_gpu_cost:rate5m"), "namespace")
        assert set(FRACTIONS) <= set(got), got  # serving: the scale-up node, whose pods start during the run
        for ns, fraction in FRACTIONS.items():
            assert got[ns] == pytest.approx(fraction * price * scale, rel=0.05), ns
        workloads = by_label(stack.prometheus.query("namespace_workload:gpulse_pod_gpu_cost:rate5m"),
                             "namespace", "workload")
        assert workloads[("llm", "vllm")] == pytest.approx(2 * price * scale, rel=0.05), "the T4 replica has no price"
        assert workloads[("ml", "trainer")] == pytest.approx(3 / 7 * price * scale, rel=0.05)
        return got

    stack.wait_for(rules, "the recording rules' namespace and workload spend")


def test_idle_spend_is_the_idle_notebooks_share(stack):
    _settle(stack, 45)
    price = _h100_gcp_price() / 3600

    def idle():
        scale = _tick_rate(stack)
        got = by_label(stack.prometheus.query("namespace:gpulse_pod_gpu_idle_cost:rate5m"), "namespace")
        # Idle spend is a spend rate times an idle-time rate: a young series carries the scale twice.
        assert got["research"] == pytest.approx(3 / 7 * price * scale * scale, rel=0.08), \
            "notebook-carol's idle MIG instance"
        assert got["llm"] == pytest.approx(0.0, abs=1e-9) and got["ml"] == pytest.approx(0.0, abs=1e-9)
        held = by_label(stack.prometheus.query("namespace:gpulse_pod_gpu_allocated_idle_seconds:rate5m"), "namespace")
        assert held["research"] == pytest.approx(scale, rel=0.05), "one whole MIG instance held idle"
        return got

    stack.wait_for(idle, "idle spend of research/notebook-carol")
    prices = stack.prometheus.query("gpulse_gpu_price_per_hour")
    nodes = {r["metric"]["node"] for r in prices}
    assert NODE_A in nodes and NODE_B not in nodes, "node B's T4 on AWS has no price row"
    assert all(r["metric"]["source"].startswith("https://") and r["metric"]["as_of"] for r in prices)


def test_energy_is_conserved_per_gpu_over_60_seconds(stack):
    _settle(stack, 65)
    at = time.time()
    nodes = "|".join(HEALTHY)
    q = stack.prometheus.query
    pods = by_label(q(f'sum by (node, uuid) (increase(gpulse_pod_gpu_energy_joules_total{{node=~"{nodes}"}}[60s]))',
                      at), "node", "uuid")
    rest = by_label(q(f'increase(gpulse_gpu_unattributed_energy_joules_total{{node=~"{nodes}"}}[60s])', at),
                    "node", "uuid")
    gpus = by_label(q(f'increase(gpulse_gpu_energy_joules_total{{node=~"{nodes}"}}[60s])', at), "node", "uuid")
    assert set(gpus) and set(gpus) <= set(rest), "every GPU with an energy counter has an unattributed counter"
    for key, energy in gpus.items():
        assert energy > 0, key
        assert pods.get(key, 0.0) + rest[key] == pytest.approx(energy, rel=0.01), key
    # The T4 on node B has no energy counter: its holder's energy comes from power x seconds.
    t4 = [k for k in pods if k[0] == NODE_B]
    assert t4 and all(pods[k] > 0 for k in t4)
