"""End to end through the repo's rules: simulated agents → Prometheus → Alertmanager → a
webhook receiver (see conftest.py for the stack and the two ways its Alertmanager config
differs from deploy/alertmanager/alertmanager.yml).

Recording rules are checked against the scenarios' ground truth (per pod, per workload
through kube-state-metrics owners, per namespace and node).

The fault node (tests/fixtures/e2e/fault-node.yaml) loses GPU 1 (Xid 79), counts
uncorrectable ECC errors on GPU 2 and fails a row remap on GPU 3, 10 s after it starts;
the lost GPU and the row remap recover at 20 s. The critical alerts must reach the pager
receiver grouped by node, the recovered ones must resolve on their own, and the Xid alert
must resolve once the agent is gone (its series go stale).

GpulseGpuEccUncorrectable is only checked firing: it is `increase(...[10m]) > 0`, and a
range vector keeps the samples of a vanished target, so it resolves 10 minutes after the
last error — by design, and longer than this test may take.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from tests.e2e.conftest import ALERTMANAGER_CONFIG, RULE_FILES, alertmanager_test_config, run_promtool
from tests.e2e.procs import find_binary, http_get, http_post_json
from tests.e2e.promql import by_label

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
FAULT_NODE = "e2e-fault-node"
HEALTHY_NODES = ("e2e-node-a", "e2e-node-b")
INHIBIT_NODE = "e2e-inhibit-node"  # labels of alerts posted straight to Alertmanager
ALERT_TIMEOUT = 90.0  # fault at 10 s after agent start, recovery probe at ~20 s: generous
# alert -> (GPU index, extra labels) on the fault node, from fault-node.yaml
FAULT_ALERTS = {
    "GpulseGpuLost": ("1", {}),
    "GpulseGpuXidCritical": ("1", {"xid": "79"}),
    "GpulseGpuEccUncorrectable": ("2", {}),
    "GpulseGpuRowRemapFailure": ("3", {}),
}
RECOVERING = {"GpulseGpuLost", "GpulseGpuRowRemapFailure"}  # their faults have `until:`


def _records():
    return [r["record"] for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"]
            for r in g["rules"] if "record" in r]


def _rules_by_alert():
    return {r["alert"]: r for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"]
            for r in g["rules"] if "alert" in r}


def test_generated_configs_pass_promtool_and_amtool(stack, promtool):
    out = run_promtool(promtool, "check", "config", str(stack.tmp / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    amtool = find_binary("amtool")
    if amtool:
        out = subprocess.run([amtool, "check-config", str(stack.tmp / "alertmanager.yml")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_copy_keeps_routes_and_inhibitions():
    """The e2e's Alertmanager config is the repo's but for webhook URLs and group timers."""
    original = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    copy, paths = alertmanager_test_config("http://127.0.0.1:1")
    assert copy["inhibit_rules"] == original["inhibit_rules"]
    assert [r["name"] for r in copy["receivers"]] == [r["name"] for r in original["receivers"]]
    assert set(paths) == {r["name"] for r in original["receivers"] if r.get("webhook_configs")}

    def strip(route):
        return {k: ([strip(c) for c in v] if k == "routes" else v) for k, v in route.items()
                if k not in ("group_wait", "group_interval")}

    assert strip(copy["route"]) == strip(original["route"])


def _expected_pods(stack):
    """(namespace, pod) -> expected per-pod values, from the scenarios of the live nodes."""
    pods = {}
    for agent in stack.agents.values():
        scen = agent.spec
        # a DRA device's holders (containers) each get 1/holders of it
        holders = Counter((d.gpu, d.mig) for p in scen.pods for c in p.containers for d in c.devices if d.claim)
        for pod in scen.pods:
            devices = [d for c in pod.containers for d in c.devices]
            if not devices:
                continue
            procs = [p for c in pod.containers for p in c.processes]
            allocated = sum(1.0 / holders[(d.gpu, d.mig)] if d.claim else
                            1.0 / scen.gpus[d.gpu].replicas if scen.gpus[d.gpu].sharing != "exclusive" else 1.0
                            for d in devices)
            utilization = sum(p.utilization.at(0) for p in procs)
            pods[(pod.namespace, pod.name)] = {
                "node": agent.name, "allocated": allocated, "utilization": utilization,
                "memory": sum(p.memory_mib for p in procs) * MIB,
                "queue": ({pod.workload.queue_depth.at(0), pod.workload.queue_depth.at(1e9)}
                          if pod.workload and pod.workload.queue_depth else None),
            }
    return pods


def test_every_recording_rule_has_data(stack):
    records = _records()
    assert records
    empty = [r for r in records if not stack.prometheus.query(r)]
    assert not empty, f"recording rules without data: {empty}\n{stack.diagnostics()}"


def test_per_pod_recording_rules_match_the_scenarios(stack):
    stack.wait_until_serving()  # the scale-up node's replicas start, and one restarts, while modules run
    expected = _expected_pods(stack)
    prom = stack.prometheus
    per_pod = [r for r in _records() if r.startswith("namespace_pod:")]
    assert per_pod
    priced = {r["metric"]["node"] for r in prom.query("gpulse_gpu_price_per_hour")}  # cost needs a price row
    for record in per_pod:
        got = by_label(prom.query(record), "namespace", "pod")
        want = {k for k, v in expected.items() if ("workload" not in record or v["queue"])
                and ("cost" not in record or v["node"] in priced)}
        assert set(got) == want, f"{record}: pods {sorted(got)}, expected {sorted(want)}"

    def values(record):
        return by_label(prom.query(record), "namespace", "pod")

    for key, want in expected.items():
        where = f"{key[0]}/{key[1]}"
        assert values("namespace_pod:gpulse_pod_gpu_allocated:sum")[key] == pytest.approx(want["allocated"]), where
        assert values("namespace_pod:gpulse_pod_gpu_utilization_ratio:sum")[key] == pytest.approx(
            want["utilization"], abs=0.01), where
        assert values("namespace_pod:gpulse_pod_gpu_utilization_per_allocated:ratio")[key] == pytest.approx(
            want["utilization"] / want["allocated"], abs=0.02), where
        assert values("namespace_pod:gpulse_pod_gpu_memory_used_bytes:sum")[key] == pytest.approx(
            want["memory"], rel=0.01), where
        if want["queue"]:
            assert values("namespace_pod:gpulse_workload_queue_depth:sum")[key] in want["queue"], where


def test_per_workload_recording_rules_join_pods_to_their_owners(stack):
    """kube-state-metrics owners (fixture) map the three vLLM pods on two nodes to
    Deployment llm/vllm and trainer-0 to StatefulSet ml/trainer; ownerless pods drop out."""
    prom = stack.prometheus
    owners = by_label(prom.query("namespace_workload_pod:gpulse_kube_pod_owner:relabel"), "namespace", "pod")
    assert set(owners) == {("llm", "vllm-6d5c7b9f48-2xkqp"), ("llm", "vllm-6d5c7b9f48-7hf4m"),
                           ("llm", "vllm-6d5c7b9f48-q9z2w"), ("ml", "trainer-0")}
    kinds = {(r["metric"]["namespace"], r["metric"]["workload"], r["metric"]["workload_type"])
             for r in prom.query("namespace_workload_pod:gpulse_kube_pod_owner:relabel")}
    assert kinds == {("llm", "vllm", "deployment"), ("ml", "trainer", "statefulset")}
    allocated = by_label(prom.query("namespace_workload:gpulse_pod_gpu_allocated:sum"), "namespace", "workload")
    assert allocated == {("llm", "vllm"): 3.0, ("ml", "trainer"): 1.0}
    replicas = by_label(prom.query("namespace_workload:gpulse_workload_pods:count"), "namespace", "workload")
    assert replicas == {("llm", "vllm"): 3.0}, "replicas on both nodes are counted"
    use = by_label(prom.query("namespace_workload:gpulse_pod_gpu_utilization_per_allocated:ratio"),
                   "namespace", "workload")
    assert use[("llm", "vllm")] == pytest.approx(0.76, abs=0.01)
    assert use[("ml", "trainer")] == pytest.approx(0.9, abs=0.01)
    kv = by_label(prom.query("namespace_workload:gpulse_workload_kv_cache_usage_ratio:max"), "namespace", "workload")
    assert kv == {("llm", "vllm"): pytest.approx(0.7)}, "the busiest replica's KV cache (node B's)"
    running = by_label(prom.query("namespace_workload:gpulse_workload_running_requests:sum"), "namespace", "workload")
    assert running == {("llm", "vllm"): pytest.approx(12 + 12 + 8)}


def test_node_and_namespace_recording_rules(stack):
    stack.wait_until_serving()  # the scale-up node's replicas start, and one restarts, while modules run
    prom = stack.prometheus
    allocated = by_label(prom.query("namespace:gpulse_pod_gpu_allocated:sum"), "namespace")
    # dra (tests/fixtures/e2e/dra-node.yaml): 1 whole + 4 quarters of a shared claim + 1 MIG + 1 extended;
    # research: a MIG instance held by an idle notebook on node A; serving: the scale-up node's four whole GPUs
    assert allocated == {"llm": 3.0, "ml": 1.0, "research": 2.0, "dra": 4.0, "serving": 4.0}, \
        "two half GPUs make one, plus a MIG instance"
    used = by_label(prom.query("namespace:gpulse_pod_gpu_utilization_ratio:sum"), "namespace")
    assert used == {"llm": pytest.approx(3 * 0.76, abs=0.02), "ml": pytest.approx(0.9, abs=0.01),
                    "research": pytest.approx(0.5, abs=0.01), "dra": pytest.approx(2.15, abs=0.02),
                    "serving": pytest.approx(0.6 + 0.5 + 0.5 + 0.3, abs=0.02)}
    unattributed = by_label(prom.query("node:gpulse_gpu_unattributed_utilization_ratio:sum"), "node")
    assert unattributed["e2e-node-a"] == pytest.approx(0.1, abs=0.01), "node A's host process belongs to no pod"
    nodes = by_label(prom.query("node:gpulse_gpu_utilization_ratio:avg"), "node")
    assert set(HEALTHY_NODES) <= set(nodes)


def _firing(stack, alertname):
    return [a for a in stack.prometheus.alerts() if a["labels"].get("alertname") == alertname and a["state"] == "firing"]


def test_fault_alerts_page_by_node_and_resolve(stack):
    rules = _rules_by_alert()
    pager, tickets = stack.receiver_paths["pager"], stack.receiver_paths["tickets"]
    on_fault_node = {name: (lambda n, a, name=name: a["labels"].get("alertname") == name
                            and a["labels"].get("node") == FAULT_NODE) for name in FAULT_ALERTS}

    def delivered(status, names):
        got = {name: stack.receiver.alerts(pager, lambda n, a, f=on_fault_node[name]: f(n, a) and a["status"] == status)
               for name in names}
        missing = [name for name, hits in got.items() if not hits]
        assert not missing, f"no {status} notification at {pager} yet for {missing}"
        return got

    # 1. Every fault fires its critical alert, and it reaches the pager grouped by node.
    firing = stack.wait_for(lambda: delivered("firing", FAULT_ALERTS), "the fault node's critical alerts at the pager",
                            timeout=ALERT_TIMEOUT)
    for name, hits in firing.items():
        notification, alert = hits[0]
        assert notification["version"] == "4" and notification["receiver"] == "pager"
        assert notification["groupLabels"] == {"node": FAULT_NODE}, "GPU alerts are grouped by node"
        gpu, extra = FAULT_ALERTS[name]
        labels = alert["labels"]
        assert labels["severity"] == "critical" == rules[name]["labels"]["severity"]
        assert labels["gpu"] == gpu and labels["job"] == "gpulse" and labels["uuid"].startswith("GPU-"), labels
        assert extra.items() <= labels.items(), labels
        assert alert["endsAt"].startswith("0001-01-01"), "a firing alert has no end yet"
        ann = alert["annotations"]
        assert ann["runbook_url"] == rules[name]["annotations"]["runbook_url"]
        assert ann["summary"] == rules[name]["annotations"]["summary"]
        assert labels["uuid"] in ann["description"] and FAULT_NODE in ann["description"], ann["description"]
    assert not stack.receiver.alerts(tickets, lambda n, a: a["labels"].get("severity") == "critical"), \
        "critical alerts must not go to the ticket receiver"
    assert not stack.receiver.alerts(pager, lambda n, a: a["labels"].get("node") in HEALTHY_NODES), \
        "healthy nodes do not page (node A's Xid 13 is not critical)"

    # 2. The lost GPU answers again and the row remap clears: those two resolve on their
    #    own, while the Xid and ECC alerts (10-minute look-back) still fire in Prometheus.
    resolved = stack.wait_for(lambda: delivered("resolved", RECOVERING), "the recovered faults' resolved notifications",
                              timeout=ALERT_TIMEOUT)
    for name, hits in resolved.items():
        notification, alert = hits[0]
        assert not alert["endsAt"].startswith("0001-01-01"), f"{name}: a resolved alert carries its end"
    still = set(FAULT_ALERTS) - RECOVERING
    for name in still:
        assert _firing(stack, name), f"{name} stopped firing before its 10-minute window ended\n{stack.diagnostics()}"
    up = by_label(stack.prometheus.query(f'gpulse_gpu_up{{node="{FAULT_NODE}"}}'), "gpu")
    assert up == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0}, "the lost GPU is back"

    # 3. The node's agent goes away: the Xid alert, an instant-vector rule, resolves as
    #    its series go stale.
    stack.agents[FAULT_NODE].stop()
    stack.wait_for(lambda: delivered("resolved", ["GpulseGpuXidCritical"]),
                   "GpulseGpuXidCritical resolved after the fault node's agent stopped", timeout=ALERT_TIMEOUT)


def _am_alert(labels: dict, minutes: float = 10) -> dict:
    now = datetime.now(timezone.utc)
    return {"labels": labels, "annotations": {"summary": "posted by the e2e"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=minutes)).isoformat(),
            "generatorURL": "http://127.0.0.1/e2e"}


def _am_alerts(stack) -> list:
    status, body = http_get(f"{stack.alertmanager_url}/api/v2/alerts?filter=node%3D%22{INHIBIT_NODE}%22")
    assert status == 200, body
    return json.loads(body)


def test_lost_gpu_inhibits_its_throttling_alerts(stack):
    """Real Alertmanager, the repo's inhibit_rules: with GpulseGpuLost firing for a GPU,
    that GPU's throttling alert is suppressed while another GPU's is delivered. The alerts
    are posted to Alertmanager's API: the throttling alerts' `for: 5m` is too long to wait
    for through Prometheus."""
    lost_uuid, other_uuid = "GPU-e2e00000-0000-4000-8000-000000000001", "GPU-e2e00000-0000-4000-8000-000000000002"
    rules = _rules_by_alert()
    base = {"node": INHIBIT_NODE, "job": "gpulse"}

    def alert(name, uuid, gpu):
        return _am_alert(dict(base, alertname=name, uuid=uuid, gpu=gpu, severity=rules[name]["labels"]["severity"],
                              reason="hw_thermal_slowdown"))

    status, body = http_post_json(f"{stack.alertmanager_url}/api/v2/alerts", [alert("GpulseGpuLost", lost_uuid, "0")])
    assert status == 200, body
    stack.wait_for(lambda: [a for a in _am_alerts(stack) if a["labels"]["alertname"] == "GpulseGpuLost"],
                   "the posted GpulseGpuLost in Alertmanager", timeout=30)
    status, body = http_post_json(f"{stack.alertmanager_url}/api/v2/alerts", [
        alert("GpulseGpuThermalThrottling", lost_uuid, "0"), alert("GpulseGpuThermalThrottling", other_uuid, "1")])
    assert status == 200, body

    def throttling_suppressed():
        got = {(a["labels"]["alertname"], a["labels"]["uuid"]): a["status"] for a in _am_alerts(stack)}
        assert len(got) == 3, f"alerts in Alertmanager: {got}"
        return got if got[("GpulseGpuThermalThrottling", lost_uuid)]["state"] == "suppressed" else None

    got = stack.wait_for(throttling_suppressed, "the lost GPU's throttling alert suppressed", timeout=30)
    lost_fp = [a["fingerprint"] for a in _am_alerts(stack) if a["labels"]["alertname"] == "GpulseGpuLost"]
    assert got[("GpulseGpuThermalThrottling", lost_uuid)]["inhibitedBy"] == lost_fp
    assert got[("GpulseGpuThermalThrottling", other_uuid)]["state"] == "active", "another GPU's throttling is not silenced"

    tickets = stack.receiver_paths["tickets"]
    throttled = stack.wait_for(
        lambda: stack.receiver.alerts(tickets, lambda n, a: a["labels"].get("node") == INHIBIT_NODE),
        "the other GPU's throttling alert at the ticket receiver", timeout=30)
    assert {a["labels"]["uuid"] for _, a in throttled} == {other_uuid}
    assert throttled[0][0]["groupLabels"] == {"node": INHIBIT_NODE}
    time.sleep(2)  # a further group interval: the suppressed alert must still not be sent
    sent = {a["labels"]["uuid"] for path, n in stack.receiver.notifications() for a in n.get("alerts", [])
            if a["labels"].get("node") == INHIBIT_NODE and a["labels"]["alertname"] == "GpulseGpuThermalThrottling"}
    assert sent == {other_uuid}, f"throttling alerts delivered for {sent}"
