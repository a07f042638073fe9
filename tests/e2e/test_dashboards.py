"""Every PromQL expression of the Grafana dashboards returns data from the live Prometheus:
gpulse's own (dashboards/*.json) and NVIDIA's dcgm-exporter dashboard, read at run time
from ../shared/anchors/dcgm-exporter/ and answered by the agents' --compat.dcgm series.

Variables are substituted the way Grafana does before it queries: label_values(metric,
label) variables take their values from the label-values API, "All" becomes the
variable's allValue (gpulse: `.*`) or, without one, the regex alternation of every value
(dcgm-exporter's dashboard); $__rate_interval becomes 15s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import shared_path
from tests.e2e.conftest import AGENTS
from tests.e2e.promql import (
    LABEL_VALUES,
    dashboard_variables,
    grafana_all_value,
    panel_targets,
    substitute,
    variable_query,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GPULSE_DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def resolve_variables(stack, dash: dict) -> dict:
    """name -> the value Grafana substitutes when the variable is set to All."""
    resolved = {}
    for var in dashboard_variables(dash):
        name = var["name"]
        if var.get("type") == "datasource":
            resolved[name] = "prometheus"  # only ever used as the panels' datasource, never in PromQL
            continue
        assert var.get("type") == "query", f"variable {name}: the e2e knows query and datasource variables"
        m = LABEL_VALUES.match(substitute(variable_query(var), resolved))
        assert m, f"variable {name}: not a label_values() query: {variable_query(var)!r}"
        match, label = m.group(1), m.group(2)
        values = stack.prometheus.label_values(label, match) if match else stack.prometheus.api(f"label/{label}/values")
        assert values, f"variable {name}: label_values({match}, {label}) offers nothing"
        assert var.get("includeAll"), f"variable {name}: the e2e queries with All selected"
        resolved[name] = grafana_all_value(var, values)
    return resolved


def empty_panels(stack, dash: dict) -> list:
    variables = resolve_variables(stack, dash)
    empty = []
    targets = list(panel_targets(dash.get("panels", [])))
    assert targets, f"{dash.get('title')}: no queries found"
    for title, target in targets:
        expr = substitute(target["expr"], variables)
        try:
            if not stack.prometheus.query(expr):
                empty.append(f"{title!r} [{target.get('refId')}]: {expr}")
        except AssertionError as exc:
            empty.append(f"{title!r} [{target.get('refId')}]: {expr}: {exc}")
    return empty


@pytest.mark.parametrize("path", GPULSE_DASHBOARDS, ids=lambda p: p.name)
def test_gpulse_dashboard_queries_return_data(stack, path):
    dash = json.loads(path.read_text())
    empty = empty_panels(stack, dash)
    assert not empty, f"{path.name}: queries without data:\n" + "\n".join(empty)


def test_dcgm_exporter_dashboard_queries_return_data_with_compat(stack):
    dash = json.loads(Path(shared_path("anchors", "dcgm-exporter", "dcgm-exporter-dashboard.json")).read_text())
    empty = empty_panels(stack, dash)
    assert not empty, "dcgm-exporter dashboard queries without data from --compat.dcgm:\n" + "\n".join(empty)
    # The variables list exactly the agents that render the compat names.
    compat = sorted(stack.agents[name].instance for name, (_, flags) in AGENTS.items() if "--compat.dcgm=true" in flags)
    assert sorted(stack.prometheus.label_values("instance", "DCGM_FI_DEV_GPU_TEMP")) == compat
