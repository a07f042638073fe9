"""deploy/alertmanager: amtool accepts the config, alerts route where the comments say, and
the inhibition rules name alerts that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not found: install Debian's `prometheus-alertmanager` package")
ALERTS = {r["alert"]: r for p in (ROOT / "deploy/prometheus").glob("*.rules.yml")
          for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"] if "alert" in r}


@needs_amtool
def test_amtool_check_config():
    out = subprocess.run([AMTOOL, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_amtool
@pytest.mark.parametrize("labels,receiver", [
    ({"alertname": "GpulseGpuLost", "node": "n1"}, "pager"),
    ({"alertname": "GpulseGpuXidCritical", "node": "n1", "xid": "79"}, "pager"),
    ({"alertname": "GpulseGpuThermalThrottling", "node": "n1"}, "tickets"),
    ({"alertname": "GpulseAgentDown", "node": "n1"}, "tickets"),
    ({"alertname": "GpulseGpuPowerCapped", "node": "n1"}, "blackhole"),
    ({"alertname": "GpulsePodGpuIdle", "namespace": "ml"}, "tickets"),
    ({"alertname": "GpulseWorkloadQueueBacklogAtMaxReplicas", "namespace": "llm"}, "tickets"),
])
def test_routing(labels, receiver):
    labels = dict(labels, severity=ALERTS[labels["alertname"]]["labels"]["severity"])
    args = [f"{k}={v}" for k, v in labels.items()]
    out = subprocess.run([AMTOOL, "config", "routes", "test", f"--config.file={CONFIG}",
                          f"--verify.receivers={receiver}", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{labels} routed to {out.stdout.strip()}, expected {receiver}"


def _matcher_regex(matchers, name="alertname"):
    for m in matchers:
        found = re.fullmatch(rf'{name}\s*(=~|=)\s*"(.*)"', m)
        if found:
            return found.group(2) if found.group(1) == "=~" else re.escape(found.group(2))
    raise AssertionError(f"no {name} matcher in {matchers}")


def test_inhibition_names_real_alerts():
    cfg = yaml.safe_load(CONFIG.read_text())
    rules = cfg["inhibit_rules"]
    for rule in rules:
        sources = [a for a in ALERTS if re.fullmatch(_matcher_regex(rule["source_matchers"]), a)]
        targets = [a for a in ALERTS if re.fullmatch(_matcher_regex(rule["target_matchers"]), a)]
        assert sources and targets, rule
        assert set(sources).isdisjoint(targets), "an alert must not inhibit itself"
    lost = [r for r in rules if "GpulseGpuLost" in r["source_matchers"][0]]
    assert lost, "a lost GPU must silence its throttling alerts"
    regex = _matcher_regex(lost[0]["target_matchers"])
    throttling = [a for a in ALERTS if re.search("Throttl|Slowdown|PowerCapped", a)]
    assert throttling and all(re.fullmatch(regex, a) for a in throttling)
    assert set(lost[0]["equal"]) == {"node", "uuid"}, "only the same GPU's alerts are silenced"
