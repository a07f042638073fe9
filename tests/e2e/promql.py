"""What the consumers of Prometheus do with PromQL, reimplemented for the e2e: the HTTP API
client, Grafana's variable substitution, the Prometheus Adapter's template rendering and
the HPA controller's replica formula."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Iterable
from typing import Optional

from tests.e2e.procs import http_get


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def api(self, path: str, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        try:
            doc = json.loads(body)
        except ValueError:
            raise AssertionError(f"/api/v1/{path} {params}: HTTP {status}, not JSON: {body[:300]!r}") from None
        if doc.get("status") != "success":
            raise AssertionError(f"/api/v1/{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: Optional[float] = None) -> list:
        """Instant query; returns the vector as [{"metric": {...}, "value": float}]."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr!r}: expected a vector, got {data['resultType']}")
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def series(self, match: str, start: float) -> list:
        return self.api("series", **{"match[]": match, "start": f"{start:.3f}"})

    def label_values(self, label: str, match: str) -> list:
        return self.api(f"label/{label}/values", **{"match[]": match})

    def alerts(self) -> list:
        return self.api("alerts")["alerts"]

    def targets(self) -> list:
        return self.api("targets", state="active")["activeTargets"]


def by_label(result: list, *labels: str) -> dict:
    """{label value(s): value} for a vector; fails on duplicate keys."""
    out = {}
    for r in result:
        key = tuple(r["metric"].get(l, "") for l in labels)
        key = key[0] if len(labels) == 1 else key
        assert key not in out, f"two samples for {labels}={key}: {result}"
        out[key] = r["value"]
    return out


# --- Grafana -----------------------------------------------------------------------------

GRAFANA_INTERVALS = {"__rate_interval": "15s", "__interval": "15s", "__range": "5m",
                     "__interval_ms": "15000", "__range_s": "300"}
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.S)


def dashboard_variables(dash: dict) -> list:
    return dash.get("templating", {}).get("list", [])


def variable_query(var: dict) -> str:
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def grafana_all_value(var: dict, values: Iterable[str]) -> str:
    """What Grafana puts in place of a Prometheus query variable set to All: its allValue,
    else every value, regex-escaped, as one alternation."""
    if var.get("allValue"):
        return var["allValue"]
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return "(" + "|".join(escaped) + ")"


def substitute(expr: str, variables: dict) -> str:
    """Replace $name, ${name}, ${name:fmt} and [[name]] as Grafana does before querying."""
    values = dict(GRAFANA_INTERVALS, **variables)

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise AssertionError(f"{expr!r}: unknown dashboard variable ${name}")
        return values[name]

    names = "|".join(sorted(map(re.escape, values), key=len, reverse=True))
    return re.sub(rf"\$\{{({names})(?::\w+)?\}}|\[\[({names})\]\]|\$({names})\b", repl, expr)


def panel_targets(node, title: str = ""):
    """(panel title, target) for every query target in a dashboard, rows and nesting included."""
    if isinstance(node, dict):
        if isinstance(node.get("targets"), list):
            for t in node["targets"]:
                if t.get("expr"):
                    yield node.get("title", title), t
        for key, v in node.items():
            if key != "targets":
                yield from panel_targets(v, node.get("title", title))
    elif isinstance(node, list):
        for v in node:
            yield from panel_targets(v, title)


# --- Prometheus Adapter ----------------------------------------------------------------

def _go_quote(value: str) -> str:
    return json.dumps(value)  # Go's %q for the label values used here (ASCII, no controls)


def adapter_label_matchers(namespace: str, resource_label: str, names: list, extra: Iterable[str] = ()) -> str:
    """LabelMatchers as pkg/naming/metrics_query.go builds them: the HPA metric selector's
    matchers, then namespace, then the resource label (= for one name, =~ for several)."""
    parts = list(extra) + [f"namespace={_go_quote(namespace)}"]
    if len(names) == 1:
        parts.append(f"{resource_label}={_go_quote(names[0])}")
    else:
        parts.append(f"{resource_label}=~{_go_quote('|'.join(names))}")
    return ",".join(parts)


def render_adapter_query(rule: dict, label_matchers: str, group_by: str) -> str:
    series = rule["seriesQuery"].split("{", 1)[0].strip()
    query = rule["metricsQuery"]
    for field, value in (("Series", series), ("LabelMatchers", label_matchers), ("GroupBy", group_by)):
        query = re.sub(rf"<<\s*\.{field}\s*>>", lambda _m, v=value: v, query)
    assert "<<" not in query, f"unrendered template field left in {query!r}"
    return query


def adapter_resource_label(rule: dict, resource: str) -> str:
    """The Prometheus label an adapter rule maps to a Kubernetes resource (its override key)."""
    for label, res in rule["resources"]["overrides"].items():
        if res["resource"] == resource:
            return label
    raise AssertionError(f"adapter rule for {rule['seriesQuery']} has no override for {resource}")


# --- HPA controller (pkg/controller/podautoscaler/replica_calculator.go) ----------------

HPA_TOLERANCE = 0.1


def _outside_tolerance(ratio: float) -> bool:
    return abs(1.0 - ratio) > HPA_TOLERANCE


def replicas_pods_average_value(per_pod: list, target: float, current: int) -> int:
    """Pods metric, AverageValue: ratio of the pods' mean to the target (every pod reports)."""
    ratio = (sum(per_pod) / len(per_pod)) / target
    return math.ceil(ratio * len(per_pod)) if _outside_tolerance(ratio) else current


def replicas_total_average_value(total: float, target: float, current: int) -> int:
    """Object or External metric, AverageValue: the total divided among current replicas."""
    ratio = total / (target * current)
    return math.ceil(total / target) if _outside_tolerance(ratio) else current


def replicas_value(value: float, target: float, current: int) -> int:
    """Object or External metric, Value: compared directly, scaled by the ready replicas."""
    ratio = value / target
    return math.ceil(ratio * current) if _outside_tolerance(ratio) else current


def hpa_recommendation(per_metric: list, min_replicas: int, max_replicas: int) -> int:
    """Several metrics: the largest proposal wins, clamped to [min, max]."""
    return max(min_replicas, min(max_replicas, max(per_metric)))


def parse_quantity(q) -> float:
    """Kubernetes quantity as used in HPA targets: 5, "5", "800m"."""
    s = str(q)
    return float(s[:-1]) / 1000.0 if s.endswith("m") else float(s)
