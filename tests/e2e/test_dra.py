"""DRA pods through the real Prometheus: the recording rules, the Prometheus Adapter's pod
rules (rendered as the adapter renders them for an HPA on those pods) and the claim join
the README documents answer for pods whose GPUs came from ResourceClaims
(tests/fixtures/e2e/dra-node.yaml), with no DRA-specific query anywhere. Expectations come
from the scenario."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from gpulse.sim import dra
from gpulse.sim.inference import serve

from tests.e2e.promql import adapter_label_matchers, adapter_resource_label, by_label, render_adapter_query

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = yaml.safe_load((ROOT / "deploy/prometheus-adapter/config.yaml").read_text())
NODE = "e2e-dra-node"


@pytest.fixture(scope="module")
def scenario(stack):
    spec = stack.agents[NODE].spec
    holders = Counter((d.gpu, d.mig) for p in spec.pods for c in p.containers for d in c.devices)
    pods = {}
    for pod in spec.pods:
        refs = [d for c in pod.containers for d in c.devices]
        assert refs and all(d.claim for d in refs), "every GPU on the DRA node comes from a claim"
        procs = [p for c in pod.containers for p in c.processes]
        pods[pod.name] = {"allocated": sum(1.0 / holders[(d.gpu, d.mig)] for d in refs),
                          "used": sum(p.utilization.at(0) for p in procs),
                          "queue": pod.workload.queue_depth.at(0) if pod.workload and pod.workload.queue_depth else None,
                          "kv": _served_kv(pod.workload)}
    return spec, pods


def _served_kv(workload):
    """The pod's fullest KV cache as its simulated server reports it (None: the server's
    format has no KV gauge)."""
    if workload is None:
        return None
    ratios = [v["kv_cache_usage"] for v in serve(workload, 0.0)[1].values() if "kv_cache_usage" in v]
    return max(ratios) if ratios else None


def test_pod_series_carry_allocation_dra(stack, scenario):
    spec, pods = scenario
    result = stack.wait_for(lambda: stack.prometheus.query(f'gpulse_pod_gpu_allocated{{node="{NODE}"}}'),
                            "the DRA node's pod series")
    assert {r["metric"]["allocation"] for r in result} == {"dra"}
    assert {r["metric"]["pod"] for r in result} == set(pods)


def test_recording_rules_answer_for_dra_pods(stack, scenario):
    spec, pods = scenario
    prom = stack.prometheus
    ns = spec.pods[0].namespace
    allocated = by_label(prom.query(f'namespace_pod:gpulse_pod_gpu_allocated:sum{{namespace="{ns}"}}'), "pod")
    used = by_label(prom.query(f'namespace_pod:gpulse_pod_gpu_utilization_ratio:sum{{namespace="{ns}"}}'), "pod")
    ratio = by_label(prom.query(f'namespace_pod:gpulse_pod_gpu_utilization_per_allocated:ratio{{namespace="{ns}"}}'), "pod")
    assert set(allocated) == set(used) == set(ratio) == set(pods)
    for name, want in pods.items():
        assert allocated[name] == pytest.approx(want["allocated"]), name
        assert used[name] == pytest.approx(want["used"], abs=0.01), name
        assert ratio[name] == pytest.approx(want["used"] / want["allocated"], abs=0.02), name
    assert allocated["rag-0"] == pytest.approx(0.5), "two containers on a claim four containers share"


def test_adapter_pod_rules_serve_dra_pods(stack, scenario):
    """What an HPA on these pods would get from custom.metrics.k8s.io."""
    spec, pods = scenario
    ns = spec.pods[0].namespace
    for rule in ADAPTER["rules"]:
        if not any(o["resource"] == "pod" for o in rule["resources"]["overrides"].values()):
            continue
        label = adapter_resource_label(rule, "pod")
        metric = rule["name"]["as"]
        want = {name: (p["used"] / p["allocated"] if metric == "gpu_utilization"
                       else p["kv"] if metric == "gpu_kv_cache_usage" else p["queue"])
                for name, p in pods.items()}
        want = {k: v for k, v in want.items() if v is not None}
        assert want, f"{metric}: the DRA fixture has no pod to ask"
        query = render_adapter_query(rule, adapter_label_matchers(ns, label, sorted(want)), label)
        got = by_label(stack.prometheus.query(query), label)
        assert set(got) == set(want), f"{query}: {got}"
        for name, value in want.items():
            assert got[name] == pytest.approx(value, abs=0.02), f"{metric} {name}"


def test_claim_info_joins_claims_onto_pod_series(stack, scenario):
    spec, pods = scenario
    prom = stack.prometheus
    claims = prom.query(f'gpulse_pod_gpu_claim_info{{node="{NODE}"}}')
    got = {(r["metric"]["pod"], r["metric"]["container"]): r["metric"] for r in claims}
    want = {(p.name, c.name): (c, d) for p in spec.pods for c in p.containers for d in c.devices}
    assert set(got) == set(want)
    for key, (_, ref) in want.items():
        gpu = spec.gpus[ref.gpu]
        assert (got[key]["claim"], got[key]["driver"], got[key]["pool"], got[key]["device"], got[key]["uuid"]) == (
            ref.claim, "gpu.nvidia.com", spec.node.name, dra.device_name(gpu, ref.mig), gpu.uuid), key
    # The README's join: each claim's GPU use is the sum of its holders' shares.
    joined = prom.query(f'sum by (claim) (gpulse_pod_gpu_utilization_ratio{{node="{NODE}"}} '
                        '* on (namespace, pod, container, uuid) group_left (claim) gpulse_pod_gpu_claim_info)')
    per_claim = by_label(joined, "claim")
    shared = [ref for c, ref in want.values() if ref.claim == "shared-gpu"]
    assert len(shared) == 4
    assert per_claim["shared-gpu"] == pytest.approx(0.2 + 0.3 + 0.1 + 0.05, abs=0.01)
    assert set(per_claim) == {ref.claim for _, ref in want.values()}
