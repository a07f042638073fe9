"""The README's configuration and metrics references are generated from the code."""

import os
import re
import shlex
import subprocess
import sys

from gpulse import catalog, config

from tests.conftest import ROOT


def test_readme_references_are_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_docs.py"), "--check", os.path.join(ROOT, "README.md")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_readme_names_every_setting_and_metric():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for s in config.SETTINGS:
        assert f"`--{s.flag}`" in readme and s.env in readme
    for m in catalog.CATALOG:
        assert f"`{m.name}`" in readme


def test_readme_has_the_two_setup_commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "make run" in readme and "make test" in readme


def test_catalog_follows_naming_conventions():
    units = {"bytes": "_bytes", "seconds": "_seconds", "watts": "_watts", "celsius": "_celsius",
             "hertz": "_hertz", "joules": "_joules", "ratio": "_ratio"}
    for m in catalog.CATALOG:
        if m.collector == "dcgm_compat":
            assert m.name.startswith("DCGM_FI_"), m.name  # dcgm-exporter's names, kept as they are
            continue
        assert m.type in ("gauge", "counter", "info", "histogram"), m.name
        assert m.name.startswith(("gpulse_", "process_")), m.name
        if m.type == "counter":
            assert m.name.endswith("_total"), m.name
        if m.type == "info":
            assert m.name.endswith("_info"), m.name
        if m.type == "histogram":  # _bucket/_sum/_count are the samples' suffixes, not the family's
            assert not m.name.endswith(("_bucket", "_sum", "_count", "_total")) and m.buckets, m.name
            assert "le" not in m.labels, m.name
        else:
            assert not m.buckets, m.name
        if m.unit:
            assert units[m.unit] in m.name, f"{m.name} lacks its unit suffix"
        assert len(set(m.labels)) == len(m.labels), m.name


def _readme_commands():
    """Every `gpulse ...` command the README prints in code (its usage forms aside)."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    spans = re.findall(r"`((?:\.venv/bin/)?gpulse [^`]+)`", readme)
    spans = sorted({s for s in spans if "[" not in s and "..." not in s})
    return spans, [shlex.split(s)[1:] for s in spans]


def test_readme_says_how_gpulse_gets_on_path():
    readme = open(os.path.join(ROOT, "README.md")).read()
    first = readme.index("`gpulse ")
    assert ".venv/bin/activate" in readme[:first] or ".venv/bin/gpulse" in readme[:first], \
        "the README uses a bare `gpulse` before saying where it comes from"


def test_readme_commands_parse_as_printed():
    """Each command the README prints is a real subcommand whose flags and values load."""
    from gpulse import cli
    from gpulse import config as config_mod
    commands, argvs = _readme_commands()
    assert commands
    for argv in argvs:
        args = cli._parser().parse_args(argv)
        assert args.command, argv
        if args.command != "scenarios":
            config_mod.load(args, environ={})


def test_readme_offline_commands_run():
    """The README commands that need no GPU and no node exit 0 as printed."""
    commands, _ = _readme_commands()
    offline = [c for c in commands if " --name " in c or c.endswith("gpulse scenarios")]
    assert offline
    for command in offline:
        r = subprocess.run([sys.executable, "-m", "gpulse", *shlex.split(command)[1:]], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and r.stdout and r.stderr == "", (command, r.stderr)
