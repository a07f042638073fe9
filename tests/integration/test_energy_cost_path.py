"""Energy, idle-allocated time and cost through the whole agent on simulated nodes: fake NVML
(energy counters integrated from the scenario's power), the real kubelet client, attribution,
accounts and the collectors' exposition. Time is the harness's manual clock (1 s per tick).

Every built-in scenario is covered (the parametrization reads gpulse.sim.scenario's list),
so a scenario added on another branch, such as `dra`, is held to the same conservation."""

import pytest
from gpulse.sim import scenario
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.harness import Run

WINDOW = 60  # ticks of 1 s
PRICE_H100_AWS = 6.88  # built-in price table: H100-SXM5-80GB, aws, on-demand
ENERGY = "gpulse_pod_gpu_energy_joules_total"
UNATTRIBUTED = "gpulse_gpu_unattributed_energy_joules_total"
GPU_ENERGY = "gpulse_gpu_energy_joules_total"


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(snap, name, **match):
    return {labels: v for (n, labels), v in snap.items()
            if n == name and all(dict(labels).get(k) == want for k, want in match.items())}


def increases(first, last, name, **match):
    """Per series: its last value minus its first (0 when it appeared during the window)."""
    before = series(first, name, **match)
    return {labels: v - before.get(labels, 0.0) for labels, v in series(last, name, **match).items()}


def pod(snap, name, pod_name):
    (value,) = [v for labels, v in series(snap, name).items() if dict(labels)["pod"] == pod_name]
    return value


def _conservation(first, last, powers, gone=None):
    """{gpu uuid: (Σ pods + unattributed, the GPU's own energy)} over the window."""
    gone = gone or {}
    out = {}
    for labels in series(last, UNATTRIBUTED):
        uuid = dict(labels)["uuid"]
        pods = sum(increases(first, last, ENERGY, uuid=uuid).values()) + gone.get(uuid, 0.0)
        rest = last[(UNATTRIBUTED, labels)] - first.get((UNATTRIBUTED, labels), 0.0)
        counter = series(last, GPU_ENERGY, uuid=uuid)
        if counter:
            gpu = sum(counter.values()) - sum(series(first, GPU_ENERGY, uuid=uuid).values())
        else:  # no energy counter on this GPU: the agent integrates its power readings
            gpu = sum(p.get(uuid, 0.0) for p in powers)
        out[uuid] = (pods + rest, gpu)
    return out


def _run_window(run, ticks=WINDOW, between=None, warmup=3):
    run.tick(warmup)
    first = samples(run.rendered.text.decode())
    powers = []
    for i in range(ticks):
        if between is not None:
            between(i)
        snap = samples(run.tick().text.decode())
        powers.append({dict(labels)["uuid"]: v for labels, v in series(snap, "gpulse_gpu_power_watts").items()})
    return first, samples(run.rendered.text.decode()), powers


@pytest.mark.parametrize("name", scenario.builtin_names())
def test_energy_is_conserved_per_gpu_over_a_minute(name):
    with Run(name, workloads_enabled=False) as run:
        first, last, powers = _run_window(run)
    sums = _conservation(first, last, powers)
    assert sums, f"{name}: no GPU has energy accounts"
    for uuid, (attributed, gpu) in sums.items():
        assert gpu > 0, f"{name} {uuid}: the GPU used no energy"
        assert attributed == pytest.approx(gpu, rel=0.01), f"{name} {uuid}: pods + unattributed vs the GPU"
    # Every pod holding a GPU with energy readings has an energy series, and none is negative.
    energy = series(last, ENERGY)
    assert energy and all(v >= 0 for v in energy.values())
    held = {dict(labels)["uuid"] for labels in series(last, "gpulse_pod_gpu_allocated")}
    assert {dict(labels)["uuid"] for labels in energy} == held & set(sums)


def test_reference_idle_holders_accrue_idle_seconds_at_their_allocated_fraction():
    with Run("reference", workloads_enabled=False) as run:
        first, last, _ = _run_window(run, warmup=45)  # the idle floor's fit needs its samples
    idle = increases(first, last, "gpulse_pod_gpu_allocated_idle_seconds_total")
    by_pod = {dict(labels)["pod"]: v for labels, v in idle.items()}
    # notebook-00 holds 1 of GPU 4's 9 replicas and never runs a kernel; vllm-llama-8b-27 holds
    # a whole 1g.10gb MIG instance with its model loaded and never serves.
    assert by_pod["notebook-00"] == pytest.approx(WINDOW / 9)
    assert by_pod["vllm-llama-8b-27"] == pytest.approx(WINDOW)
    assert by_pod["vllm-llama-8b-00"] == 0.0 and by_pod["vllm-qwen-02"] == 0.0, "busy holders are not idle"
    idle_pods = {p for p, v in by_pod.items() if v > 0}
    assert {"notebook-00", "notebook-09", "notebook-18", "notebook-27", "vllm-llama-8b-27"} <= idle_pods
    # The idle MIG slice still takes its 1/7 share of GPU 3's idle floor, and no active energy.
    energy = increases(first, last, ENERGY, pod="vllm-llama-8b-27")
    (mine,) = energy.values()
    neighbours = increases(first, last, ENERGY, gpu="3")
    assert 0 < mine < min(v for labels, v in neighbours.items() if dict(labels)["pod"] != "vllm-llama-8b-27")
    floor = series(last, "gpulse_gpu_idle_power_watts", gpu="3")
    (watts,) = floor.values()
    assert mine == pytest.approx(watts / 7 * WINDOW, rel=0.05), "the idle slice pays 1/7 of the floor"
    assert dict(next(iter(floor)))["estimate"] == "fit" and watts == pytest.approx(70.0, rel=0.1), \
        "the floor is learnt from power against activity (the simulated H100 idles at 70 W)"


def test_reference_cost_is_the_price_times_the_allocated_fraction():
    with Run("reference", workloads_enabled=False) as run:
        first, last, _ = _run_window(run)
    cost = {dict(labels)["pod"]: v for labels, v in increases(first, last, "gpulse_pod_gpu_cost_total").items()}
    hours = WINDOW / 3600
    assert cost["vllm-llama-8b-27"] == pytest.approx(PRICE_H100_AWS / 7 * hours), "1 of 7 slices, idle or not"
    assert cost["notebook-00"] == pytest.approx(PRICE_H100_AWS / 9 * hours), "1 of 9 time-sliced replicas"
    by_ns = {}
    for labels, v in increases(first, last, "gpulse_pod_gpu_cost_total").items():
        ns = dict(labels)["namespace"]
        by_ns[ns] = by_ns.get(ns, 0.0) + v
    # llm: 28 MIG instances of 1/7 (4 GPUs); research, batch, serving: 12 of 9 replicas each.
    assert by_ns["llm"] == pytest.approx(4 * PRICE_H100_AWS * hours)
    for ns in ("research", "batch", "serving"):
        assert by_ns[ns] == pytest.approx(12 / 9 * PRICE_H100_AWS * hours)
    prices = series(last, "gpulse_gpu_price_per_hour")
    assert len(prices) == 8 and set(prices.values()) == {PRICE_H100_AWS}
    labels = dict(next(iter(prices)))
    assert labels["price_key"] == "H100-SXM5-80GB" and labels["cloud"] == "aws" and labels["as_of"] == "2026-11-09"


def test_gpus_without_a_price_row_have_no_cost():
    with Run("a100-mig-mixed", workloads_enabled=False) as run:
        snap = samples(run.tick(3).text.decode())
    assert not series(snap, "gpulse_gpu_price_per_hour") and not series(snap, "gpulse_pod_gpu_cost_total"), \
        "GCP A100 80GB is not in the built-in table: no price, never a guess"
    assert series(snap, ENERGY), "energy does not need a price"


def test_a_price_file_overrides_the_builtin_row(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("prices:\n  - {sku: H100-SXM5-80GB, cloud: aws, per_gpu_hour: 3.6, source: negotiated}\n")
    with Run("reference", workloads_enabled=False, cost_price_file=str(path)) as run:
        run.tick(2)
        first = samples(run.rendered.text.decode())
        last = samples(run.tick(36).text.decode())
    prices = set(series(last, "gpulse_gpu_price_per_hour").items())
    assert {v for _, v in prices} == {3.6} and {dict(labels)["source"] for labels, _ in prices} == {"negotiated"}
    cost = {dict(labels)["pod"]: v for labels, v in increases(first, last, "gpulse_pod_gpu_cost_total").items()}
    assert cost["vllm-llama-8b-00"] == pytest.approx(3.6 / 7 * 36 / 3600)


def test_a_spot_node_is_priced_only_by_a_spot_row():
    with Run("reference", workloads_enabled=False, cost_pricing_kind="spot") as run:
        snap = samples(run.tick(2).text.decode())
    assert not series(snap, "gpulse_gpu_price_per_hour") and not series(snap, "gpulse_pod_gpu_cost_total")


def test_counters_of_staying_pods_never_decrease_while_others_leave():
    with Run("g5-timeslice", workloads_enabled=False) as run:
        spec = run.world.scenario
        leaving = {"tgi-00", "vllm-06"}
        run.tick(3)
        history = []
        last_seen = {}
        for i in range(40):
            if i == 15:
                run.world.kubelet.set_pods([p for p in spec.pods if p.name not in leaving])
                assert wait_for(lambda: leaving.isdisjoint(
                    a.pod for a in run.sampler.inputs.pods.current().allocations), timeout=10)
            snap = samples(run.tick().text.decode())
            history.append(snap)
            for name in (ENERGY, "gpulse_pod_gpu_cost_total", "gpulse_pod_gpu_allocated_idle_seconds_total"):
                for labels, v in series(snap, name).items():
                    key = (name, labels)
                    assert v >= last_seen.get(key, 0.0) - 1e-9, f"{key} went down"
                    last_seen[key] = v
    final = history[-1]
    assert not [labels for labels in series(final, ENERGY) if dict(labels)["pod"] in leaving]
    assert [labels for labels in series(history[10], ENERGY) if dict(labels)["pod"] in leaving]
    # Conservation over the whole run, counting what the gone pods accrued until they left.
    gone = {}
    for (name, labels), v in last_seen.items():
        if name == ENERGY and dict(labels)["pod"] in leaving:
            start = series(history[0], ENERGY).get(labels, 0.0)
            gone[dict(labels)["uuid"]] = gone.get(dict(labels)["uuid"], 0.0) + v - start
    sums = _conservation(history[0], final, [], gone)
    for uuid, (attributed, gpu) in sums.items():
        assert attributed == pytest.approx(gpu, rel=0.01), uuid
