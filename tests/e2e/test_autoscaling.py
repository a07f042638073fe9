"""The HPA's view of gpulse, end to end: every Prometheus Adapter rule discovered and its
metricsQuery rendered as the adapter renders it for the HPA's pods (or its Deployment),
every KEDA query run as KEDA runs it, all against the live Prometheus, and the HPA
controller's formula applied to what comes back, before and after a queue spike.

The llm/vllm Deployment has three replicas on two nodes (tests/fixtures/e2e/node-a.yaml,
node-b.yaml), each a whole GPU, KV caches 0.5, 0.6 and 0.7 full, each queue stepping from
2 to 10 waiting requests at 30 s after its agent started. Expected replicas (HPA
deploy/prometheus-adapter/hpa-vllm.yaml, ScaledObjects deploy/keda/, 3 current replicas,
tolerance 0.1):

  before: queue 3 x 2 = 6, target 5 per replica -> ratio 0.4 -> ceil(6/5) = 2;
          KV cache mean 0.6 / 0.8 = 0.75 -> ceil(3 x 0.75) = 3;  max -> 3
  after:  queue 3 x 10 = 30 -> ratio 2.0 -> ceil(30/5) = 6;  KV cache -> 3;  max -> 6

Every ScaledObject in deploy/keda/ (the scale-to-zero one too) runs the same way, each
query returning exactly one sample.

"Before" is evaluated at a past instant (Prometheus' `time=`), a few seconds before the
earliest agent could have reached 30 s, so the test does not depend on when it runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.promql import (
    adapter_label_matchers,
    adapter_resource_label,
    by_label,
    hpa_recommendation,
    parse_quantity,
    render_adapter_query,
    replicas_pods_average_value,
    replicas_total_average_value,
    replicas_value,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = yaml.safe_load((ROOT / "deploy/prometheus-adapter/config.yaml").read_text())
HPA = yaml.safe_load((ROOT / "deploy/prometheus-adapter/hpa-vllm.yaml").read_text())
SCALED_OBJECTS = {p.name: next(d for d in yaml.safe_load_all(p.read_text()) if d)
                  for p in sorted((ROOT / "deploy/keda").glob("*.yaml"))}
DEPLOYMENT = next(d for d in yaml.safe_load_all((ROOT / "deploy/examples/vllm-deployment.yaml").read_text())
                  if d and d.get("kind") == "Deployment")
EXPECTED_BEFORE_SPIKE = 3
EXPECTED_AFTER_SPIKE = 6
SPIKE_TIMEOUT = 90.0
BEFORE_MARGIN = 5.0  # seconds before the earliest possible spike


def _series_name(rule):
    return re.match(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)


def _rule(metric_name, resource):
    for rule in ADAPTER["rules"]:
        if rule["name"]["as"] == metric_name and any(o["resource"] == resource
                                                     for o in rule["resources"]["overrides"].values()):
            return rule
    raise AssertionError(f"deploy/prometheus-adapter/config.yaml serves no {metric_name} for {resource}")


@pytest.fixture(scope="module")
def workload(stack):
    """The Deployment's pods as the adapter would list them (its selector over the scenario
    pods), their queue step, and the agents they run on."""
    ns = DEPLOYMENT["metadata"]["namespace"]
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    pods, steps, hosts = [], set(), []
    for agent in stack.agents.values():
        for pod in agent.spec.pods:
            if pod.namespace == ns and selector.items() <= pod.labels.items():
                pods.append(pod.name)
                trace = pod.workload.queue_depth
                assert trace.kind == "step", f"{pod.name}: the e2e spike needs a step queue trace"
                steps.add(trace.params)
                hosts.append(agent)
    assert len(pods) == 3 and len({a.name for a in hosts}) == 2, pods
    assert len(steps) == 1, f"replicas should spike together: {steps}"
    before, after, at = steps.pop()
    assert HPA["spec"]["scaleTargetRef"]["name"] == DEPLOYMENT["metadata"]["name"] == "vllm"
    return {"namespace": ns, "name": DEPLOYMENT["metadata"]["name"], "pods": sorted(pods),
            "before": before, "after": after, "spike_at": at,
            "before_time": min(a.started_at for a in hosts) + at - BEFORE_MARGIN}


def test_adapter_discovery_finds_series_with_the_resource_labels(stack):
    """What the adapter's relist does: /api/v1/series for each seriesQuery; every series
    must carry the override labels, and name.matches must match it."""
    for rule in ADAPTER["rules"]:
        found = stack.prometheus.series(rule["seriesQuery"], start=time.time() - 600)
        assert found, f"adapter discovery finds nothing for {rule['seriesQuery']}"
        for s in found:
            missing = [label for label in rule["resources"]["overrides"] if not s.get(label)]
            assert not missing, f"{rule['seriesQuery']}: series {s} lacks {missing}"
            assert re.fullmatch(rule["name"]["matches"], s["__name__"])


def _adapter_values(stack, workload, at=None):
    """Every adapter rule rendered as the adapter renders it for this HPA, and run."""
    prom, ns = stack.prometheus, workload["namespace"]
    out = {}
    for metric in HPA["spec"]["metrics"]:
        if metric["type"] == "Pods":
            rule = _rule(metric["pods"]["metric"]["name"], "pod")
            label = adapter_resource_label(rule, "pod")
            query = render_adapter_query(rule, adapter_label_matchers(ns, label, workload["pods"]), label)
            result = prom.query(query, at)
            assert all(set(r["metric"]) == {label} for r in result), f"{query}: samples labelled by {label} only: {result}"
            values = by_label(result, label)
            assert sorted(values) == workload["pods"], f"{query}: one value per pod expected, got {values}"
            out[metric["pods"]["metric"]["name"]] = values
        elif metric["type"] == "Object":
            described = metric["object"]["describedObject"]
            rule = _rule(metric["object"]["metric"]["name"], described["kind"].lower())
            label = adapter_resource_label(rule, described["kind"].lower())
            query = render_adapter_query(rule, adapter_label_matchers(ns, label, [described["name"]]), label)
            result = prom.query(query, at)
            assert len(result) == 1 and result[0]["metric"] == {label: described["name"]}, \
                f"{query}: one value for the {described['kind']} expected, got {result}"
            out[metric["object"]["metric"]["name"]] = result[0]["value"]
        else:
            raise AssertionError(f"the e2e does not know HPA metric type {metric['type']}")
    return out


def test_adapter_pod_rules_answer_for_a_single_pod(stack, workload):
    """With one pod the adapter renders pod="name" instead of a regex."""
    for rule in ADAPTER["rules"]:
        overrides = rule["resources"]["overrides"]
        if not any(o["resource"] == "pod" for o in overrides.values()):
            continue
        label = adapter_resource_label(rule, "pod")
        for pod in workload["pods"]:
            query = render_adapter_query(rule, adapter_label_matchers(workload["namespace"], label, [pod]), label)
            assert f'{label}="{pod}"' in query
            result = stack.prometheus.query(query)
            assert [r["metric"] for r in result] == [{label: pod}], f"{query}: {result}"


def _kv_truth(stack, workload):
    """Each replica's KV cache as its simulated server serves it (a constant per pod here)."""
    out = {}
    for agent in stack.agents.values():
        for pod in agent.spec.pods:
            if pod.name in workload["pods"]:
                out[pod.name] = pod.workload.kv_cache_usage.at(0)
    assert len(set(out.values())) > 1, "replicas with different KV caches show whether the mean or max is taken"
    return out


def _keda_values(stack, at=None, scaled_object="scaledobject-vllm.yaml"):
    """Each trigger's query as KEDA runs it: it must return exactly one sample."""
    out = {}
    for trigger in SCALED_OBJECTS[scaled_object]["spec"]["triggers"]:
        query = trigger["metadata"]["query"]
        result = stack.prometheus.query(query, at)
        assert len(result) == 1, f"KEDA trigger {trigger['name']}: {query} returned {len(result)} samples: {result}"
        out[trigger["name"]] = result[0]["value"]
    return out


def _current_replicas(stack, workload, at=None):
    q = (f'kube_deployment_spec_replicas{{namespace="{workload["namespace"]}",'
         f'deployment="{workload["name"]}"}}')
    (sample,) = stack.prometheus.query(q, at)
    assert sample["value"] == len(workload["pods"]), "kube-state-metrics fixture and scenarios disagree"
    return int(sample["value"])


def _hpa_desired(values, current):
    proposals = []
    for metric in HPA["spec"]["metrics"]:
        spec = metric[metric["type"].lower()]
        target = spec["target"]
        value = values[spec["metric"]["name"]]
        if metric["type"] == "Pods":
            assert target["type"] == "AverageValue"
            proposals.append(replicas_pods_average_value(list(value.values()), parse_quantity(target["averageValue"]),
                                                         current))
        elif target["type"] == "AverageValue":
            proposals.append(replicas_total_average_value(value, parse_quantity(target["averageValue"]), current))
        else:
            proposals.append(replicas_value(value, parse_quantity(target["value"]), current))
    return hpa_recommendation(proposals, HPA["spec"]["minReplicas"], HPA["spec"]["maxReplicas"])


def _keda_desired(values, current, scaled_object="scaledobject-vllm.yaml"):
    spec = SCALED_OBJECTS[scaled_object]["spec"]
    proposals = []
    for trigger in spec["triggers"]:
        threshold = float(trigger["metadata"]["threshold"])
        value = values[trigger["name"]]
        if trigger.get("metricType", "AverageValue") == "AverageValue":
            proposals.append(replicas_total_average_value(value, threshold, current))
        else:
            proposals.append(replicas_value(value, threshold, current))
    return hpa_recommendation(proposals, spec["minReplicaCount"], spec["maxReplicaCount"])


def test_hpa_and_keda_replicas_for_a_queue_spike(stack, workload):
    n = len(workload["pods"])
    # Before the spike, at a past instant every replica was still at its first value.
    if stack.ready_at > workload["before_time"]:
        pytest.fail(f"the stack came up {stack.ready_at - workload['before_time']:.1f}s after the last instant known "
                    f"to precede the queue spike at {workload['spike_at']:.0f}s: no pre-spike data to check")
    ready_at = workload["before_time"] + 2.0  # let that instant's samples and rule evaluations land
    if time.time() < ready_at:
        time.sleep(ready_at - time.time())
    at = workload["before_time"]
    kv = _kv_truth(stack, workload)
    adapter = _adapter_values(stack, workload, at)
    kedas = {name: _keda_values(stack, at, name) for name in SCALED_OBJECTS}
    keda = kedas["scaledobject-vllm.yaml"]
    current = _current_replicas(stack, workload, at)
    pod_queue = _pod_queue(stack, workload, at)
    context = f"at {at:.1f} (before the spike): adapter {adapter}, per-pod queue {pod_queue}, KEDA {kedas}"
    assert set(pod_queue.values()) == {workload["before"]}, context
    assert adapter["gpu_queue_depth"] == workload["before"] * n, context
    assert adapter["gpu_kv_cache_usage"] == pytest.approx(kv), context
    for name, values in kedas.items():
        assert values["queue-depth"] == workload["before"] * n, (name, context)
        assert values["kv-cache-usage"] == pytest.approx(sum(kv.values()) / n), (name, context)
        assert _keda_desired(values, current, name) == EXPECTED_BEFORE_SPIKE, (name, context)
    assert _hpa_desired(adapter, current) == EXPECTED_BEFORE_SPIKE, context

    # After the spike: wait until every replica, the recording rule and KEDA's query see it.
    def after_values():
        a, pods, k = _adapter_values(stack, workload), _pod_queue(stack, workload), _keda_values(stack)
        assert set(pods.values()) == {workload["after"]}, f"per-pod queues {pods}"
        assert a["gpu_queue_depth"] == workload["after"] * n, f"Deployment queue {a['gpu_queue_depth']}"
        assert k["queue-depth"] == workload["after"] * n, f"KEDA queue {k['queue-depth']}"
        return a, k

    adapter, keda = stack.wait_for(after_values, "every vLLM replica's queue spike in the adapter and KEDA queries",
                                   timeout=SPIKE_TIMEOUT)
    current = _current_replicas(stack, workload)
    context = f"after the spike: adapter {adapter}, KEDA {keda}"
    assert adapter["gpu_kv_cache_usage"] == pytest.approx(kv), context
    assert _hpa_desired(adapter, current) == EXPECTED_AFTER_SPIKE, context
    for name in SCALED_OBJECTS:
        values = keda if name == "scaledobject-vllm.yaml" else _keda_values(stack, None, name)
        assert values["queue-depth"] == workload["after"] * n, (name, values)
        assert _keda_desired(values, current, name) == EXPECTED_AFTER_SPIKE, (name, values)


def _pod_queue(stack, workload, at=None):
    """The adapter's per-pod gpu_queue_depth for the Deployment's pods."""
    rule = _rule("gpu_queue_depth", "pod")
    label = adapter_resource_label(rule, "pod")
    query = render_adapter_query(rule, adapter_label_matchers(workload["namespace"], label, workload["pods"]), label)
    result = stack.prometheus.query(query, at)
    assert all(set(r["metric"]) == {label} for r in result), f"{query}: samples labelled by {label} only: {result}"
    values = by_label(result, label)
    assert sorted(values) == workload["pods"], f"{query}: one value per pod expected, got {values}"
    return values
