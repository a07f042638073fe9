"""The wheel installs the import package `gpulse` and nothing else; runtime dependencies only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, GPULSE_NO_EXTENSIONS="1")  # the layout is the same with or without them
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), ROOT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("gpulse-*.whl")
    return path


def test_only_gpulse_is_installed(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gpulse", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "gpulse/sim/scenarios/reference.yaml" in names and "gpulse/identity/data/skus.csv" in names
    assert not any(n.startswith(("agent/", "tools/", "tests/", "bench/")) for n in names)


def test_runtime_dependencies_are_what_the_agent_imports(wheel):
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    runtime = sorted(line.split(":", 1)[1].split(">")[0].split("<")[0].strip().lower()
                     for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert runtime == ["bcrypt", "grpcio", "isal", "nvidia-ml-py", "protobuf", "psutil", "pyyaml"]


def test_import_gpulse_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import importlib.util, gpulse, gpulse.cli, gpulse.app; "
            "print(gpulse.__file__); print(importlib.util.find_spec('agent'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr
    where, agent = r.stdout.split()
    assert Path(where).is_relative_to(site) and agent == "None"
    assert (site / "bin" / "gpulse").exists()


def _source_copy(tmp_path) -> Path:
    src = tmp_path / "src"
    for name in ("agent", "ext"):
        shutil.copytree(Path(ROOT) / name, src / name, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.cpp"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(Path(ROOT) / name, src / name)
    return src


def test_without_a_compiler_one_warning_and_the_pure_twins(tmp_path):
    """CC and CXX name compilers that do not exist: the build still succeeds, says so once,
    removes an earlier build's modules, and the installed agent renders on its twins."""
    src = _source_copy(tmp_path)
    stale = src / "agent" / "_expo.cpython-311-x86_64-linux-gnu.so"
    stale.write_bytes(b"an earlier build")
    env = {k: v for k, v in os.environ.items() if k != "GPULSE_NO_EXTENSIONS"}
    env.update(CC=str(tmp_path / "no-cc"), CXX=str(tmp_path / "no-c++"))
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    warnings = [line for line in r.stderr.splitlines() if line.strip()]
    assert warnings == [f"gpulse: warning: C++ compiler '{tmp_path / 'no-cc'}' not found (install g++, or set CC "
                        "and CXX): extensions not built; the agent runs on its pure-Python twins"], r.stderr
    assert not list((src / "agent").glob("*.so"))
    out = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(src)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("gpulse-*.whl")
    assert not [n for n in zipfile.ZipFile(whl).namelist() if n.endswith(".so")]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
                   check=True, capture_output=True, timeout=300)
    code = "import gpulse.kernels as k; print(k.EXTENSIONS_LOADED, k.ExpositionEncoder().render([]) == b'')"
    # -S: without site-packages, where this checkout's editable install would answer for gpulse._expo
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env=dict(env, PYTHONPATH=str(site)))
    assert r.returncode == 0 and r.stdout.split() == ["False", "True"], r.stderr


def test_containerfile_pins_its_base_and_builds_in_stages():
    """Containerfile: the base pinned by digest, the extensions compiled in a builder stage,
    one squashed layer, the version label the same as the package's."""
    text = (Path(ROOT) / "Containerfile").read_text()
    bases = re.findall(r"^ARG (BUILDER_BASE|RUNTIME_BASE)=(\S+)$", text, re.M)
    assert {name for name, _ in bases} == {"BUILDER_BASE", "RUNTIME_BASE"}
    for _, ref in bases:
        assert re.fullmatch(r"docker\.io/library/python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", ref), ref
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert stages == [("${BUILDER_BASE}", "builder"), ("${RUNTIME_BASE}", "rootfs"), ("scratch", "")]
    assert "deploy/image/build-agent.sh" in text and "COPY --from=builder /opt/gpulse /opt/gpulse" in text
    version = re.search(r'^version = "(.+)"', (Path(ROOT) / "pyproject.toml").read_text(), re.M).group(1)
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", text, re.M)
    ignored = (Path(ROOT) / ".containerignore").read_text().split()
    assert {".git", ".venv", "build/*"} <= set(ignored)


def test_image_scripts_are_valid_shell():
    for script in ("build.sh", "build-agent.sh", "trim.sh"):
        path = Path(ROOT) / "deploy" / "image" / script
        shell = "bash" if path.read_text().startswith("#!/bin/bash") else "sh"
        r = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and os.access(path, os.X_OK), (script, r.stderr)
