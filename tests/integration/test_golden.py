"""Golden exposition per built-in scenario: order-insensitive, volatile values masked.

`pytest --update-golden` rewrites tests/golden/<scenario>.prom. Every output also passes
`promtool check metrics` and parses back with prometheus_client to the same samples.
"""

import os
import re
import subprocess

import pytest
from gpulse.sim import scenario
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, require_promtool
from tests.harness import Run

GOLDEN = os.path.join(ROOT, "tests", "golden")
# Values that depend on wall time, the machine or the build, not on the scenario.
VOLATILE = re.compile(r"^(process_\w+|gpulse_tick_duration_seconds|gpulse_collector_duration_seconds|"
                      r"gpulse_last_tick_timestamp_seconds|gpulse_snapshot_age_seconds|"
                      r"gpulse_workload_scrape_duration_seconds)[ {]")
BUILD_LABELS = re.compile(r'(gpulse_build_info\{[^}]*)extensions="[a-z]+"')
TICKS = 5


def normalize(text: str) -> list:
    lines = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            lines.append(line)
            continue
        line = BUILD_LABELS.sub(r'\1extensions="any"', line)
        if VOLATILE.match(line):
            line = line.rsplit(" ", 1)[0] + " 0"
        lines.append(line)
    return lines


def _render(name: str) -> str:
    with Run(name) as run:
        run.tick(TICKS - 1)
        return run.tick(settle=0.6).text.decode()


@pytest.fixture(scope="module", params=scenario.builtin_names())
def scenario_output(request):
    return request.param, _render(request.param)


def test_golden(scenario_output, update_golden):
    name, text = scenario_output
    got = normalize(text)
    path = os.path.join(GOLDEN, f"{name}.prom")
    if update_golden or not os.path.exists(path):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write("\n".join(got) + "\n")
        if not update_golden:
            pytest.fail(f"{path} did not exist; written now, review and commit it")
    with open(path) as fh:
        want = fh.read().splitlines()
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, (
        f"{name}: exposition differs from {path} (run pytest --update-golden to accept)\n"
        f"missing ({len(missing)}): {missing[:15]}\nextra ({len(extra)}): {extra[:15]}")


def test_promtool_accepts(scenario_output, tmp_path):
    promtool = require_promtool()
    _, text = scenario_output
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_parses_back_with_prometheus_client(scenario_output):
    _, text = scenario_output
    parsed = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            parsed[(s.name, tuple(sorted(s.labels.items())))] = s.value
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(parsed) == len(lines), "duplicate series in the exposition"
    nan = [line for line in lines if line.rsplit(" ", 1)[1] == "NaN"]
    assert not nan, f"NaN rendered (an unsupported value must be omitted): {nan[:5]}"


def test_every_gpu_reports(scenario_output):
    name, text = scenario_output
    s = scenario.load(name)
    ups = re.findall(r'^gpulse_gpu_up\{gpu="(\d+)",uuid="([^"]+)"\} 1$', text, re.M)
    assert sorted(int(g) for g, _ in ups) == list(range(len(s.gpus)))
    assert {u for _, u in ups} == {g.uuid for g in s.gpus}
