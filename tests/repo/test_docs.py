"""The README's configuration and metrics references are generated from the code."""

import os
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
