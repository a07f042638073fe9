"""Every gpulse metric that the rules, the adapter, KEDA and the dashboards name exists in
gpulse.catalog, and every label they match on it is one the catalog gives it (or a target
label Prometheus adds). Recording-rule names must be defined in deploy/prometheus/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from gpulse.catalog import BY_NAME

ROOT = Path(__file__).resolve().parents[2]
TARGET_LABELS = {"job", "instance", "node"}  # set by the scrape config / ServiceMonitor
STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}


def expressions() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "deploy/prometheus").glob("*.rules.yml")):
        for g in yaml.safe_load(path.read_text())["groups"]:
            out += [(f"{path.name}: {r.get('record') or r.get('alert')}", r["expr"]) for r in g["rules"]]
    adapter = yaml.safe_load((ROOT / "deploy/prometheus-adapter/config.yaml").read_text())
    for r in adapter["rules"]:
        q = r["metricsQuery"].replace("<<.Series>>", r["seriesQuery"].split("{")[0])
        q = q.replace("<<.LabelMatchers>>", 'namespace="x"').replace("<<.GroupBy>>", "pod")
        out += [(f"adapter {r['name']['as']}", r["seriesQuery"]), (f"adapter {r['name']['as']}", q)]
    for doc in yaml.safe_load_all((ROOT / "deploy/keda/scaledobject-vllm.yaml").read_text()):
        out += [(f"keda {t['name']}", t["metadata"]["query"]) for t in doc["spec"]["triggers"]]
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            out += [(f"{path.name}: {p['title']}", t["expr"]) for t in p.get("targets", [])]
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                q = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])
                out.append((f"{path.name}: variable {v['name']}", q))
    return out


def recorded() -> set[str]:
    return {r["record"] for path in (ROOT / "deploy/prometheus").glob("*.rules.yml")
            for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r}


EXPRESSIONS = expressions()


def selectors(expr: str):
    """(metric name, [label names matched]) for each selector in a PromQL expression."""
    # Blank out string contents but keep the quotes, so label matchers stay recognisable.
    blanked = STRING.sub(lambda m: m.group(0)[0] * 2, expr)
    for m in SELECTOR.finditer(blanked):
        name, braces = m.group(1), m.group(2) or ""
        if name in KEYWORDS:
            continue
        labels = re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", braces)
        yield name, labels


def test_expressions_found():
    assert len(EXPRESSIONS) > 50


HISTOGRAM_SUFFIXES = {"_bucket": ("le",), "_sum": (), "_count": ()}


def family_of(name: str) -> tuple[str, tuple[str, ...]]:
    """A histogram's sample name -> (its family, the labels the suffix adds)."""
    for suffix, extra in HISTOGRAM_SUFFIXES.items():
        base = name[: -len(suffix)]
        if name.endswith(suffix) and BY_NAME.get(base) is not None and BY_NAME[base].type == "histogram":
            return base, extra
    return name, ()


@pytest.mark.parametrize("where,expr", EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_metrics_and_labels_exist(where, expr):
    records = recorded()
    for name, labels in selectors(expr):
        if name.startswith("gpulse_") or name.startswith("process_"):
            name, extra = family_of(name)
            assert name in BY_NAME, f"{where}: {name} is not in gpulse.catalog"
            allowed = set(BY_NAME[name].labels) | TARGET_LABELS | set(extra)
            unknown = set(labels) - allowed
            assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)} in the catalog"
        elif ":" in name and "gpulse" in name:
            assert name in records, f"{where}: recording rule {name} is not defined in deploy/prometheus"


def test_histogram_samples_resolve_to_their_family():
    assert family_of("gpulse_workload_startup_seconds_bucket") == ("gpulse_workload_startup_seconds", ("le",))
    assert family_of("gpulse_workload_startup_seconds_sum") == ("gpulse_workload_startup_seconds", ())
    assert family_of("gpulse_gpu_up_count") == ("gpulse_gpu_up_count", ())  # not a histogram: not a family


def test_parser_catches_unknown_names():
    """The check can fail: a made-up metric or label is reported."""
    found = dict(selectors('sum by (pod) (gpulse_gpu_utilisation_ratio{gpu="0", colour="red"})'))
    assert "gpulse_gpu_utilisation_ratio" in found and "gpulse_gpu_utilisation_ratio" not in BY_NAME
    assert found["gpulse_gpu_utilisation_ratio"] == ["gpu", "colour"]
