"""Build the Grafana dashboards (dashboards/*.json) from the panel lists below.

`python dashboards/generate.py` writes them; `--check` exits 1 when a JSON file is stale
(the unit tests run it). The JSON files are what users import; edit this file, not them.
Every query uses the `datasource` variable (no datasource UID is hard-coded) and only
gpulse catalog metrics, the recording rules in deploy/prometheus/ and kube-state-metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'node=~"$node"'
NS = 'namespace=~"$namespace"'
WL = 'namespace=~"$namespace", workload=~"$workload"'


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def query_var(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
            "allValue": ".*" if multi else None, "current": {}, "hide": 0, "options": [], "regex": ""}


def target(expr, legend="", instant=False):
    return {"expr": expr, "legendFormat": legend, "datasource": DS,
            "instant": instant, "range": not instant}


def panel(title, kind, targets, unit="", w=12, h=8, description="", **options):
    p = {"type": kind, "title": title, "description": description, "datasource": DS,
         "targets": targets, "gridPos": {"w": w, "h": h},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": options}
    if kind == "timeseries" and unit in ("percentunit",):
        p["fieldConfig"]["defaults"].update({"min": 0})
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def layout(panels):
    """Assign ids and grid positions left to right, top to bottom."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        for j, t in enumerate(p.get("targets", [])):
            t["refId"] = chr(ord("A") + j)
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update({"x": x, "y": y})
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return panels


def dashboard(uid, title, description, variables, panels, refresh="30s"):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["gpulse", "gpu"],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "timezone": "browser", "refresh": refresh,
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["gpulse"], "asDropdown": True, "title": "gpulse"}],
        "templating": {"list": variables}, "panels": layout(panels),
    }


GPU_LEGEND = "{{node}} GPU {{gpu}}"
MIG_LEGEND = "{{node}} GPU {{gpu}} {{mig_profile}} gi{{gpu_instance}}"

NODE_DASH = dashboard(
    "gpulse-node", "gpulse / Node", "Devices of a GPU node: use, memory, power, heat, throttling and health.",
    [datasource_var(), query_var("node", "Node", "label_values(gpulse_gpu_up, node)")],
    [
        row("Devices"),
        panel("GPUs up", "stat", [target(f"sum(gpulse_gpu_up{{{NODE}}})", instant=True)], w=4, h=4),
        panel("GPUs lost", "stat", [target(f"count(gpulse_gpu_up{{{NODE}}} == 0) or vector(0)", instant=True)], w=4, h=4),
        panel("Mean utilization", "stat", [target(f"avg(gpulse_gpu_utilization_ratio{{{NODE}}})", instant=True)], "percentunit", w=4, h=4),
        panel("Power draw", "stat", [target(f"sum(gpulse_gpu_power_watts{{{NODE}}})", instant=True)], "watt", w=4, h=4),
        panel("Memory used", "stat", [target(f"sum(gpulse_gpu_memory_used_bytes{{{NODE}}}) / sum(gpulse_gpu_memory_total_bytes{{{NODE}}})", instant=True)], "percentunit", w=4, h=4),
        panel("Agent tick", "stat", [target(f"max(gpulse_tick_duration_seconds{{{NODE}}})", instant=True)], "s", w=4, h=4),
        panel("GPU utilization", "timeseries", [target(f"gpulse_gpu_utilization_ratio{{{NODE}}}", GPU_LEGEND)], "percentunit"),
        panel("Memory used", "timeseries", [target(f"gpulse_gpu_memory_used_bytes{{{NODE}}} / gpulse_gpu_memory_total_bytes{{{NODE}}}", GPU_LEGEND)], "percentunit"),
        panel("Power", "timeseries", [target(f"gpulse_gpu_power_watts{{{NODE}}}", GPU_LEGEND),
                                      target(f"gpulse_gpu_power_limit_watts{{{NODE}}}", GPU_LEGEND + " limit")], "watt"),
        panel("Temperature", "timeseries", [target(f"gpulse_gpu_temperature_celsius{{{NODE}}}", GPU_LEGEND),
                                            target(f"gpulse_gpu_memory_temperature_celsius{{{NODE}}}", GPU_LEGEND + " HBM")], "celsius"),
        panel("SM clock", "timeseries", [target(f"gpulse_gpu_sm_clock_hertz{{{NODE}}}", GPU_LEGEND)], "hertz"),
        panel("PCIe throughput", "timeseries", [target(f"rate(gpulse_gpu_pcie_tx_bytes_total{{{NODE}}}[$__rate_interval])", GPU_LEGEND + " tx"),
                                                target(f"rate(gpulse_gpu_pcie_rx_bytes_total{{{NODE}}}[$__rate_interval])", GPU_LEGEND + " rx")], "Bps"),
        row("Throttling and health"),
        panel("Clock events (throttle reasons)", "state-timeline",
              [target(f"max by (node, gpu, reason) (gpulse_gpu_clock_event_active{{{NODE}}})", GPU_LEGEND + " {{reason}}")],
              w=24, description="1 while the reason holds the GPU's clocks down; gpu_idle is normal at rest."),
        panel("Xid errors", "timeseries", [target(f"sum by (node, gpu, xid) (gpulse_gpu_xid_errors_total{{{NODE}}})", GPU_LEGEND + " Xid {{xid}}")], "short", w=8),
        panel("ECC errors", "timeseries", [target(f"gpulse_gpu_ecc_errors_total{{{NODE}}}", GPU_LEGEND + " {{type}}")], "short", w=8),
        panel("Remapped rows", "timeseries", [target(f"gpulse_gpu_remapped_rows{{{NODE}}}", GPU_LEGEND + " {{state}}")], "short", w=8),
        row("Agent"),
        panel("Collectors", "state-timeline", [target(f"gpulse_collector_success{{{NODE}}}", "{{node}} {{collector}}")], w=12),
        panel("Agent memory", "timeseries", [target(f'process_resident_memory_bytes{{job="gpulse", {NODE}}}', "{{node}}")], "bytes", w=12),
    ])

SHARING_DASH = dashboard(
    "gpulse-sharing", "gpulse / Sharing", "Who uses the GPUs: whole GPUs, MIG instances and time-sliced shares by namespace and pod.",
    [datasource_var(), query_var("node", "Node", "label_values(gpulse_gpu_up, node)"),
     query_var("namespace", "Namespace", "label_values(gpulse_pod_gpu_allocated, namespace)")],
    [
        row("By namespace"),
        panel("GPUs allocated", "timeseries", [target(f"namespace:gpulse_pod_gpu_allocated:sum{{{NS}}}", "{{namespace}}")], "short",
              description="1 per whole GPU or MIG instance, 1/replicas per time-sliced share."),
        panel("GPUs used", "timeseries", [target(f"namespace:gpulse_pod_gpu_utilization_ratio:sum{{{NS}}}", "{{namespace}}")], "short",
              description="GPU-equivalents busy: utilization summed over the namespace's shares."),
        row("By pod"),
        panel("Pod GPU utilization", "timeseries",
              [target(f"sum by (namespace, pod, sharing) (gpulse_pod_gpu_utilization_ratio{{{NODE}, {NS}}})", "{{namespace}}/{{pod}} ({{sharing}})")], "percentunit"),
        panel("Use of allocation", "timeseries",
              [target(f"namespace_pod:gpulse_pod_gpu_utilization_per_allocated:ratio{{{NS}}}", "{{namespace}}/{{pod}}")], "percentunit",
              description="Share of what the pod was allocated that it used; the adapter's gpu_utilization."),
        panel("Pod GPU memory", "timeseries",
              [target(f"sum by (namespace, pod) (gpulse_pod_gpu_memory_used_bytes{{{NODE}, {NS}}})", "{{namespace}}/{{pod}}")], "bytes"),
        panel("Allocations", "table",
              [target(f"sum by (node, namespace, pod, container, gpu, sharing, mig_profile, allocation) (gpulse_pod_gpu_allocated{{{NODE}, {NS}}})", instant=True)], "short",
              description="allocation: device-plugin, or dra for a ResourceClaim's device."),
        row("Time-sliced GPUs"),
        panel("Shares of each GPU", "timeseries",
              [target(f'gpulse_pod_gpu_utilization_ratio{{sharing=~"time-slicing|mps", {NODE}, {NS}}}', "{{node}} GPU {{gpu}} {{namespace}}/{{pod}}"),
               target(f"gpulse_gpu_unattributed_utilization_ratio{{{NODE}}}", GPU_LEGEND + " unattributed")], "percentunit",
              description="Per-pod shares plus unattributed add up to the GPU's utilization.", w=24),
        panel("Unattributed share", "timeseries", [target(f"node:gpulse_gpu_unattributed_utilization_ratio:sum{{{NODE}}}", "{{node}}")], "short"),
        panel("GPU utilization (whole device)", "timeseries", [target(f"gpulse_gpu_utilization_ratio{{{NODE}}}", GPU_LEGEND)], "percentunit"),
        row("MIG instances"),
        panel("MIG instance utilization", "timeseries", [target(f"gpulse_mig_utilization_ratio{{{NODE}}}", MIG_LEGEND)], "percentunit"),
        panel("MIG instance memory", "timeseries",
              [target(f"gpulse_mig_memory_used_bytes{{{NODE}}} / gpulse_mig_memory_total_bytes{{{NODE}}}", MIG_LEGEND)], "percentunit"),
        panel("MIG instances by pod", "table",
              [target(f'sum by (node, namespace, pod, gpu, mig_profile, gpu_instance) (gpulse_pod_gpu_utilization_ratio{{sharing="mig", {NODE}, {NS}}})', instant=True)],
              "percentunit", w=24),
        row("DRA claims"),
        panel("Claims by container", "table",
              [target(f"max by (node, namespace, pod, container, claim_namespace, claim, driver, device, uuid) (gpulse_pod_gpu_claim_info{{{NODE}, {NS}}})", instant=True)],
              w=12, description="Each container's ResourceClaim devices and the GPU each resolved to."),
        panel("GPU utilization by claim", "timeseries",
              [target(f"sum by (claim_namespace, claim) (gpulse_pod_gpu_utilization_ratio{{allocation=\"dra\", {NODE}, {NS}}} * on (namespace, pod, container, uuid) group_left (claim_namespace, claim) gpulse_pod_gpu_claim_info{{{NODE}, {NS}}})",
                      "{{claim_namespace}}/{{claim}}")], "short", w=12,
              description="GPU-equivalents each claim's holders keep busy; a claim several pods share is the sum of their shares."),
    ])

AUTOSCALING_DASH = dashboard(
    "gpulse-autoscaling", "gpulse / Autoscaling", "Inference workloads: queue depth, running requests and KV cache against replicas.",
    [datasource_var(), query_var("namespace", "Namespace", "label_values(gpulse_workload_queue_depth, namespace)"),
     query_var("workload", "Workload", 'label_values(namespace_workload:gpulse_workload_queue_depth:sum{namespace=~"$namespace"}, workload)')],
    [
        row("Demand"),
        panel("Queue depth", "timeseries", [target(f"namespace_workload:gpulse_workload_queue_depth:sum{{{WL}}}", "{{namespace}}/{{workload}}")], "short"),
        panel("Replicas reporting", "timeseries", [target(f"namespace_workload:gpulse_workload_pods:count{{{WL}}}", "{{namespace}}/{{workload}}")], "short"),
        panel("Queue per replica", "timeseries",
              [target(f"namespace_workload:gpulse_workload_queue_depth:sum{{{WL}}} / namespace_workload:gpulse_workload_pods:count{{{WL}}}", "{{namespace}}/{{workload}}")],
              "short", description="Compare with the HPA's averageValue target (5 in the example)."),
        panel("Running requests", "timeseries", [target(f"namespace_workload:gpulse_workload_running_requests:sum{{{WL}}}", "{{namespace}}/{{workload}}")], "short"),
        panel("KV cache (busiest replica)", "timeseries", [target(f"namespace_workload:gpulse_workload_kv_cache_usage_ratio:max{{{WL}}}", "{{namespace}}/{{workload}}")], "percentunit"),
        panel("GPU use of allocation", "timeseries", [target(f"namespace_workload:gpulse_pod_gpu_utilization_per_allocated:ratio{{{WL}}}", "{{namespace}}/{{workload}}")], "percentunit"),
        row("Autoscaler"),
        panel("HPA replicas", "timeseries",
              [target(f"kube_horizontalpodautoscaler_status_current_replicas{{{NS}}}", "{{namespace}}/{{horizontalpodautoscaler}} current"),
               target(f"kube_horizontalpodautoscaler_spec_max_replicas{{{NS}}}", "{{namespace}}/{{horizontalpodautoscaler}} max")], "short"),
        panel("Queue depth by pod", "timeseries",
              [target(f"sum by (namespace, pod) (gpulse_workload_queue_depth{{{NS}}})", "{{namespace}}/{{pod}}")], "short"),
        panel("Inference scrape health", "state-timeline",
              [target(f"gpulse_workload_scrape_up{{{NS}}}", "{{namespace}}/{{pod}} {{server}}")], w=24),
    ], refresh="10s")

FLEET_DASH = dashboard(
    "gpulse-fleet", "gpulse / Fleet", "GPU models, clouds and instance types across the fleet, from gpulse's canonical identity.",
    [datasource_var(), query_var("cloud", "Cloud", "label_values(gpulse_node_info, cloud)")],
    [
        row("Inventory"),
        panel("GPUs", "stat", [target('count(gpulse_gpu_info * on (node) group_left (cloud) gpulse_node_info{cloud=~"$cloud"})', instant=True)], w=6, h=4),
        panel("Nodes", "stat", [target('count(gpulse_node_info{cloud=~"$cloud"})', instant=True)], w=6, h=4),
        panel("Unknown GPUs", "stat", [target("sum(gpulse_identity_unknown_gpus)", instant=True)], w=6, h=4),
        panel("Identity conflicts", "stat", [target("count(gpulse_identity_conflict == 1) or vector(0)", instant=True)], w=6, h=4),
        panel("GPUs by model and cloud", "barchart",
              [target('count by (model, cloud) (gpulse_gpu_info * on (node) group_left (cloud) gpulse_node_info{cloud=~"$cloud"})', "{{cloud}} {{model}}", instant=True)], "short"),
        panel("Nodes by instance type", "barchart",
              [target('count by (cloud, instance_type) (gpulse_node_info{cloud=~"$cloud"})', "{{cloud}} {{instance_type}}", instant=True)], "short"),
        panel("Utilization by model", "timeseries",
              [target("avg by (model) (gpulse_gpu_utilization_ratio * on (uuid) group_left (model) gpulse_gpu_info)", "{{model}}")], "percentunit"),
        panel("Driver versions", "piechart", [target('count by (driver_version) (gpulse_node_info{cloud=~"$cloud"})', "{{driver_version}}", instant=True)], "short"),
        panel("GPUs", "table",
              [target("max by (node, gpu, model, sku, memory_gb, mig_enabled, virtualization, source) (gpulse_gpu_info)", instant=True)], w=24, h=10),
        panel("Nodes", "table", [target('gpulse_node_info{cloud=~"$cloud"}', instant=True)], w=24, h=10),
    ], refresh="1m")

DASHBOARDS = {
    "gpulse-node.json": NODE_DASH,
    "gpulse-sharing.json": SHARING_DASH,
    "gpulse-autoscaling.json": AUTOSCALING_DASH,
    "gpulse-fleet.json": FLEET_DASH,
}


def render(dash: dict) -> str:
    return json.dumps(dash, indent=2, sort_keys=False) + "\n"


def main(argv: list) -> int:
    stale = []
    for name, dash in DASHBOARDS.items():
        path = HERE / name
        text = render(dash)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards {', '.join(stale)}: run `python dashboards/generate.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
