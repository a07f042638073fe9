"""deploy/prometheus: rule files parse, every rule is tested by promtool (firing and not
firing), every alert carries the annotations operators rely on, and the promtool tests pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted(PROM.glob("*.rules.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.test.yml"))
RUNBOOKS = PROM / "runbooks.md"
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
SEVERITIES = {"critical", "warning", "info"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's `prometheus` package (make deb-deps does)")


def _rules():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, group["name"], rule


def _tests():
    for path in TEST_FILES:
        yield path, yaml.safe_load(path.read_text())


def test_rule_and_test_files_exist():
    assert RULE_FILES, "no *.rules.yml in deploy/prometheus"
    assert TEST_FILES, "no *.test.yml in deploy/prometheus/tests"


def test_alerts_have_severity_and_annotations():
    anchors = {m.lower() for m in re.findall(r"^## (\S+)", RUNBOOKS.read_text(), re.M)}
    alerts = [(p, r) for p, _, r in _rules() if "alert" in r]
    assert alerts
    for path, rule in alerts:
        name = rule["alert"]
        where = f"{path.name}: {name}"
        assert re.fullmatch(r"Gpulse[A-Z][A-Za-z]+", name), f"{where}: alert names are CamelCase with the Gpulse prefix"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity must be one of {sorted(SEVERITIES)}"
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key), f"{where}: missing annotation {key}"
        assert "{{" not in ann["summary"], f"{where}: summary should be static; put labels in description"
        anchor = ann["runbook_url"].rsplit("#", 1)[-1]
        assert anchor == name.lower(), f"{where}: runbook_url anchor should be #{name.lower()}"
        assert anchor in anchors, f"{where}: runbooks.md has no section '## {name}'"


def test_recording_rule_names_follow_level_metric_operations():
    records = [r["record"] for _, _, r in _rules() if "record" in r]
    assert records
    for name in records:
        assert RECORD_NAME.match(name), f"recording rule {name!r} is not level:metric:operations"


def test_every_alert_is_tested_firing_and_not_firing():
    firing, silent = set(), set()
    for _, doc in _tests():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    for path, _, rule in _rules():
        if "alert" in rule:
            assert rule["alert"] in firing, f"{path.name}: {rule['alert']} has no promtool test where it fires"
            assert rule["alert"] in silent, f"{path.name}: {rule['alert']} has no promtool test where it stays silent"


def test_every_recording_rule_is_tested():
    tested = set()
    for _, doc in _tests():
        for case in doc["tests"]:
            for check in case.get("promql_expr_test", []):
                tested.update(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", check["expr"]))
    for path, _, rule in _rules():
        if "record" in rule:
            assert rule["record"] in tested, f"{path.name}: recording rule {rule['record']} has no promql_expr_test"


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path):
    out = subprocess.run([PROMTOOL, "check", "rules", "--lint=all", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "lint error" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr


@needs_promtool
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path):
    out = subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=path.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
