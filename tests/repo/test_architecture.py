"""The house's arrows, checked from the imports (docs/architecture.md draws them).

- Only the CLI knows the simulator: nothing in agent/ outside cli.py and sim/ imports sim.
- Only gpulse.nvml.lib imports pynvml (the fake takes pynvml's names from it too).
- Collectors read a Snapshot: they import no backend, socket or HTTP module.
- ext/ knows nothing of the agent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

AGENT = Path(ROOT) / "agent"
BACKENDS = {"nvml", "kube", "workloads", "sources", "sim", "server", "sampler", "app", "cli", "refresh", "httpfetch"}


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved to gpulse.*)."""
    rel = path.relative_to(AGENT).with_suffix("")
    package = ["gpulse", *rel.parts[:-1]]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def modules():
    return sorted(p for p in AGENT.rglob("*.py") if "_pb2" not in p.name)


def test_only_the_cli_imports_the_simulator():
    offenders = [str(p.relative_to(AGENT)) for p in modules()
                 if p.name != "cli.py" and "sim" not in p.relative_to(AGENT).parts[:1]
                 and any(m == "gpulse.sim" or m.startswith("gpulse.sim.") for m in imports(p))]
    assert offenders == []


def test_only_the_nvml_lib_imports_pynvml():
    offenders = [str(p.relative_to(AGENT)) for p in modules()
                 if any(m == "pynvml" or m.startswith("pynvml.") for m in imports(p))]
    assert offenders == ["nvml/lib.py"]


@pytest.mark.parametrize("path", sorted((AGENT / "collectors").glob("*.py")), ids=lambda p: p.name)
def test_collectors_read_only_snapshots(path):
    bad = {m for m in imports(path) for b in BACKENDS if m == f"gpulse.{b}" or m.startswith(f"gpulse.{b}.")}
    bad -= {"gpulse.nvml.metrics", "gpulse.nvml.metrics.DEVICE_METRICS", "gpulse.nvml.metrics.MIG_METRICS"}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    assert not {"socket", "http.client", "urllib.request", "grpc"} & imports(path)


def test_ext_knows_nothing_of_the_agent():
    for pyx in (Path(ROOT) / "ext").glob("*.pyx"):
        text = pyx.read_text(encoding="utf-8")
        assert "gpulse" not in text and "from agent" not in text, pyx.name


def test_no_comment_points_outside_the_repo():
    """Comments and docstrings name files in this repo, not the steering notes beside it."""
    offenders = [str(p.relative_to(ROOT)) for p in [*modules(), *(Path(ROOT) / "ext").glob("*.pyx")]
                 if "../shared" in p.read_text(encoding="utf-8") or "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert offenders == []
