"""deploy/prometheus-adapter and deploy/keda: the adapter rules are well formed the way
the adapter parses them, render to valid PromQL, and KEDA's queries return one number."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = yaml.safe_load((ROOT / "deploy/prometheus-adapter/config.yaml").read_text())
KEDA_FILES = sorted((ROOT / "deploy/keda").glob("*.yaml"))
SCALED_BY_FILE = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in KEDA_FILES}
SCALED = SCALED_BY_FILE["scaledobject-vllm.yaml"]
TO_ZERO = SCALED_BY_FILE["scaledobject-vllm-scale-to-zero.yaml"]
HPA = yaml.safe_load((ROOT / "deploy/prometheus-adapter/hpa-vllm.yaml").read_text())
TEMPLATE_FIELD = re.compile(r"<<\s*\.(\w+)\s*>>")
ADAPTER_FIELDS = {"Series", "LabelMatchers", "GroupBy", "LabelValuesByName", "GroupBySlice"}
PROMTOOL = shutil.which("promtool")


def render_adapter_query(rule: dict, series: str, matchers: str, group_by: str) -> str:
    """What the adapter sends for a HPA query (pkg/naming/metrics_query.go)."""
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", group_by))


def series_name(rule: dict) -> str:
    m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{", rule["seriesQuery"])
    assert m, f"seriesQuery {rule['seriesQuery']!r} should start with a metric name"
    return m.group(1)


@pytest.mark.parametrize("rule", ADAPTER["rules"], ids=lambda r: r["name"]["as"] + ":" + series_name(r))
def test_adapter_rule_is_well_formed(rule):
    assert set(rule) <= {"seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"}
    overrides = rule["resources"]["overrides"]
    assert overrides.get("namespace") == {"resource": "namespace"}, "pod/workload metrics need the namespace override"
    pattern = re.compile(rule["name"]["matches"])
    assert pattern.fullmatch(series_name(rule)), "name.matches must match the discovered series"
    assert pattern.groups <= 1 or "as" in rule["name"]
    fields = set(TEMPLATE_FIELD.findall(rule["metricsQuery"]))
    assert fields <= ADAPTER_FIELDS, f"unknown template fields {fields - ADAPTER_FIELDS}"
    assert {"Series", "LabelMatchers", "GroupBy"} <= fields
    # Every selector carries the label matchers, or values of other pods leak in.
    selectors = re.findall(r"\{([^}]*)\}", rule["metricsQuery"])
    assert selectors and all("<<.LabelMatchers>>" in s for s in selectors), rule["metricsQuery"]
    # Static seriesQuery matchers are not applied at query time (adapter issue #279).
    for static in re.findall(r'(\w+="[^"]+")', rule["seriesQuery"]):
        assert static in rule["metricsQuery"], f"repeat {static} in metricsQuery"


def test_adapter_serves_the_metrics_the_hpa_uses():
    served = {(r["name"]["as"], res["resource"]) for r in ADAPTER["rules"]
              for label, res in r["resources"]["overrides"].items() if label != "namespace"}
    assert ("gpu_utilization", "pod") in served
    assert ("gpu_queue_depth", "pod") in served
    assert ("gpu_queue_depth", "deployment") in served
    assert ("gpu_kv_cache_usage", "pod") in served
    for metric in HPA["spec"]["metrics"]:
        spec = metric[metric["type"].lower()]
        resource = "pod" if metric["type"] == "Pods" else spec["describedObject"]["kind"].lower()
        assert (spec["metric"]["name"], resource) in served, metric
        if metric["type"] == "Pods":
            assert spec["target"]["type"] == "AverageValue", "Pods metrics only support AverageValue"
    assert HPA["spec"]["metrics"][0]["object"]["metric"]["name"] == "gpu_queue_depth", "queue depth first"
    queue, kv = HPA["spec"]["metrics"]
    assert queue["object"]["target"] == {"type": "AverageValue", "averageValue": "5"}
    # KV cache second, at the Inference Extension's / llm-d's 0.8; not raw GPU utilization
    assert kv["pods"]["metric"]["name"] == "gpu_kv_cache_usage" and kv["pods"]["target"]["averageValue"] == "800m"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's `prometheus` package")
def test_rendered_queries_parse_as_promql(tmp_path):
    exprs = []
    for rule in ADAPTER["rules"]:
        label = [k for k in rule["resources"]["overrides"] if k != "namespace"][0]
        exprs.append(render_adapter_query(rule, series_name(rule), f'namespace="llm",{label}=~"a|b"', label))
    for objs in SCALED_BY_FILE.values():
        exprs += [t["metadata"]["query"] for obj in objs for t in obj["spec"]["triggers"]]
    rules = {"groups": [{"name": "parse", "rules": [{"record": f"parse:check:{i}", "expr": e}
                                                   for i, e in enumerate(exprs)]}]}
    path = tmp_path / "parse.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(SCALED_BY_FILE))
def test_keda_triggers_return_a_single_number(name):
    (obj,) = SCALED_BY_FILE[name]
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    spec = obj["spec"]
    assert set(spec) <= {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "minReplicaCount",
                         "maxReplicaCount", "fallback", "advanced", "triggers", "idleReplicaCount"}
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    names = [t["name"] for t in spec["triggers"]]
    assert names == ["queue-depth", "kv-cache-usage"], "queue depth first, KV cache second"
    assert [t["metadata"]["threshold"] for t in spec["triggers"]] == ["5", "0.8"]
    for t in spec["triggers"]:
        assert t["type"] == "prometheus" and t["metricType"] in ("AverageValue", "Value")
        md = t["metadata"]
        assert set(md) <= {"serverAddress", "query", "threshold", "activationThreshold",
                           "ignoreNullValues", "namespace", "unsafeSsl", "timeout"}
        float(md["threshold"])
        # KEDA errors on more than one series: the outermost call must aggregate everything.
        assert re.match(r"^(sum|max|min|avg|count)\(", md["query"]) and md["query"].endswith(")")
        assert " by " not in md["query"] and " by(" not in md["query"]
    hpa_behavior = HPA["spec"]["behavior"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa_behavior, \
        "KEDA and the adapter HPA should scale the same way"
    assert hpa_behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


def _keda_queue_test(tmp_path, with_spec_replicas: bool) -> subprocess.CompletedProcess:
    """The KEDA queue query, as shipped, evaluated by promtool over the repo's recording rules:
    Deployment llm/vllm, 3 replicas; p3 starts (not serving, no queue) for the first 10 minutes."""
    (obj,) = SCALED
    query = next(t for t in obj["spec"]["triggers"] if t["name"] == "queue-depth")["metadata"]["query"]
    pod = 'namespace="llm",pod="{0}"'
    owner = 'kube_pod_owner{{namespace="llm",pod="{0}",owner_kind="ReplicaSet",owner_name="vllm-6d5c7b9f48",owner_is_controller="true"}}'
    starting = ('gpulse_workload_starting{{job="gpulse",node="n1",namespace="llm",pod="{0}",workload="vllm",'
                'workload_type="deployment",start="initial"{1}}}')
    series = [
        {"series": f'gpulse_workload_queue_depth{{job="gpulse",node="n1",{pod.format("p1")},server="vllm",model="m"}}', "values": "12x20"},
        {"series": f'gpulse_workload_queue_depth{{job="gpulse",node="n1",{pod.format("p2")},server="vllm",model="m"}}', "values": "12x20"},
        {"series": f'gpulse_workload_queue_depth{{job="gpulse",node="n2",{pod.format("p3")},server="vllm",model="m"}}', "values": "_x10 2x10"},
        *({"series": owner.format(p), "values": "1x20"} for p in ("p1", "p2", "p3")),
        {"series": 'kube_replicaset_owner{namespace="llm",replicaset="vllm-6d5c7b9f48",owner_kind="Deployment",owner_name="vllm",owner_is_controller="true"}',
         "values": "1x20"},
        {"series": starting.format("p1", ""), "values": "0x20"},
        {"series": starting.format("p2", ""), "values": "0x20"},
        {"series": starting.format("p3", ',phase="model_ready"'), "values": "1x9 stale"},
        {"series": starting.format("p3", ""), "values": "_x9 0x11"},
    ]
    if with_spec_replicas:
        series.append({"series": 'kube_deployment_spec_replicas{namespace="llm",deployment="vllm"}', "values": "3x20"})
    # While p3 starts: 24 waiting, capped at 5 per existing replica (15): ceil(15/5) = 3 replicas,
    # not 5. Once it serves: 26, uncapped. Without kube-state-metrics' replicas: never capped.
    during = 15 if with_spec_replicas else 24
    test = {"rule_files": [str(p) for p in sorted((ROOT / "deploy/prometheus").glob("*.rules.yml"))],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [
                {"expr": query, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": during}]},
                {"expr": query, "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 26}]}]}]}
    path = tmp_path / "keda.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's `prometheus` package")
@pytest.mark.parametrize("with_spec_replicas", [True, False])
def test_keda_queue_holds_while_replicas_start(tmp_path, with_spec_replicas):
    out = _keda_queue_test(tmp_path, with_spec_replicas)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scale_to_zero_activates_on_a_waiting_request_only():
    (obj,) = TO_ZERO
    spec = obj["spec"]
    assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] >= 600
    assert spec["scaleTargetRef"] == SCALED[0]["spec"]["scaleTargetRef"]
    queue, kv = spec["triggers"]
    assert queue["metadata"]["activationThreshold"] == "0"  # active when more than 0 wait
    assert float(kv["metadata"]["activationThreshold"]) >= 1  # a ratio never wakes it
    for t in (queue, kv):
        assert t["metadata"]["query"].endswith("or vector(0)"), "no replica: an empty queue, not a failure"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's `prometheus` package")
def test_scale_to_zero_queue_counts_the_router_and_reads_zero_when_nothing_runs(tmp_path):
    """Nothing at first (0 replicas, idle router): 0. Then 2 requests wait at the router:
    2 (activates). Then one replica serves and the router drained: the replica's queue."""
    (obj,) = TO_ZERO
    query = obj["spec"]["triggers"][0]["metadata"]["query"]
    owner = ('kube_pod_owner{{namespace="llm",pod="{0}",owner_kind="ReplicaSet",owner_name="{1}",'
             'owner_is_controller="true"}}')
    rs = ('kube_replicaset_owner{{namespace="llm",replicaset="{0}",owner_kind="Deployment",owner_name="{1}",'
          'owner_is_controller="true"}}')
    series = [
        {"series": 'gpulse_workload_queue_depth{job="gpulse",node="n1",namespace="llm",pod="router-1",server="dynamo",model="m"}',
         "values": "_x5 2x5 0x10"},
        {"series": 'gpulse_workload_queue_depth{job="gpulse",node="n1",namespace="llm",pod="vllm-1",server="vllm",model="m"}',
         "values": "_x10 3x10"},
        {"series": owner.format("router-1", "vllm-router-5f6"), "values": "1x20"},
        {"series": owner.format("vllm-1", "vllm-6d5"), "values": "_x10 1x10"},
        {"series": rs.format("vllm-router-5f6", "vllm-router"), "values": "1x20"},
        {"series": rs.format("vllm-6d5", "vllm"), "values": "1x20"},
    ]
    test = {"rule_files": [str(p) for p in sorted((ROOT / "deploy/prometheus").glob("*.rules.yml"))],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [
                {"expr": query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 0}]},
                {"expr": query, "eval_time": "7m", "exp_samples": [{"labels": "{}", "value": 2}]},
                {"expr": query, "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 3}]}]}]}
    path = tmp_path / "zero.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    out = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
