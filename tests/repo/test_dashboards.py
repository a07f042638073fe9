"""dashboards/: valid Grafana JSON, up to date with dashboards/generate.py, every query on
the `datasource` variable (no hard-coded datasource UID), the node/namespace variables
present. (Which metrics the queries name is checked in test_deploy_metrics.py; that they
return data is checked end to end against a real Prometheus.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "dashboards").glob("*.json"))
VARIABLES = {"gpulse-node.json": {"datasource", "node"},
             "gpulse-sharing.json": {"datasource", "node", "namespace"},
             "gpulse-autoscaling.json": {"datasource", "namespace", "workload"},
             "gpulse-fleet.json": {"datasource", "cloud"},
             "gpulse-cost.json": {"datasource", "namespace", "workload"}}


def test_the_dashboards_exist():
    assert {p.name for p in FILES} == set(VARIABLES)


def test_generated_files_are_fresh():
    out = subprocess.run([sys.executable, str(ROOT / "dashboards/generate.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _datasource_refs(node):
    if isinstance(node, dict):
        if "datasource" in node:
            yield node["datasource"]
        for v in node.values():
            yield from _datasource_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _datasource_refs(v)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard(path):
    dash = json.loads(path.read_text())
    assert dash["title"].startswith("gpulse / ") and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == VARIABLES[path.name]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for ref in _datasource_refs(dash):
        assert ref == {"type": "prometheus", "uid": "${datasource}"}, f"{path.name}: hard-coded datasource {ref}"
    assert "__inputs" not in dash, "exported-for-sharing form pins a datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    queries = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(queries) >= 8
    for p in queries:
        assert p["targets"], f"{path.name}: panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"]
            # Variables are used as regex matchers so "All" (.*) works.
            for var in re.findall(r"\$(node|namespace|workload|cloud)\b", t["expr"]):
                assert re.search(rf'{var}=~"\${var}"', t["expr"]), f"{path.name}: use {var}=~\"${var}\""
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
