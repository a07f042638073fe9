"""gpulse.dev/ labels are valid Kubernetes labels; the NFD file is replaced atomically and expires."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

import pytest
from gpulse.identity.gpu import resolve_gpu
from gpulse.identity.labels import NFD_MAX_BYTES, node_labels, render_nfd_features, write_nfd_features
from gpulse.identity.node import resolve_node
from gpulse.names import is_label_key as is_valid_label_key
from gpulse.names import is_label_value as is_valid_label_value
from gpulse.names import sanitize_label_value
from hypothesis import given
from hypothesis import strategies as st

K8S_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def labels_for(records, **node_labels_):
    node = {"metadata": {"name": "n", "labels": node_labels_}, "spec": {"providerID": "aws:///us-east-1a/i-1"}}
    record, conflicts = resolve_node(node, records, dmi={}, driver_version="550.90.07", cuda_version=12040)
    return node_labels(records, record, conflicts, sum(r.unknown for r in records))


AWKWARD = [
    resolve_gpu("NVIDIA RTX Pro 6000 Blackwell DC-1-3Q", memory_mib=3072),
    resolve_gpu("NVIDIA-Prototype-X-(Engineering)  with a very long and strange name that goes on and on", memory_mib=12288),
    resolve_gpu("NVIDIA RTX PRO 6000 Blackwell Server Edition", 0x2BB5, memory_mib=97887, mig_enabled=True,
                mig_profiles=["1g.24gb+me.all", "1g.24gb-me", "2g.48gb+gfx"]),
    resolve_gpu("Graphics Device"),
]


@pytest.mark.parametrize("records", [[r] for r in AWKWARD] + [AWKWARD, [resolve_gpu("NVIDIA H100 80GB HBM3", 0x2330)] * 8])
def test_every_label_key_and_value_is_valid(records):
    labels = labels_for(records, **{"node.kubernetes.io/instance-type": "p5.48xlarge"})
    assert labels["gpulse.dev/schema"] == "v1"
    for key, value in labels.items():
        assert key.startswith("gpulse.dev/") and is_valid_label_key(key), key
        assert len(value) <= 63 and K8S_VALUE.match(value) and value, (key, value)


def test_mixed_nodes_say_mixed_and_mig_profiles_become_label_names():
    labels = labels_for(AWKWARD)
    assert labels["gpulse.dev/model"] == "mixed" and labels["gpulse.dev/sku"] == "mixed"
    assert "gpulse.dev/family" not in labels or labels["gpulse.dev/family"]
    assert labels["gpulse.dev/mig.1g.24gb.me.all.count"] == "1"
    assert labels["gpulse.dev/mig.2g.48gb.gfx.count"] == "1"
    assert labels["gpulse.dev/unknown-gpus"] == "2"


@given(st.text(max_size=200))
def test_sanitized_values_are_always_valid(text):
    value = sanitize_label_value(text)
    assert is_valid_label_value(value) and K8S_VALUE.match(value)


@pytest.mark.parametrize("value,ok", [("H100-SXM5-80GB", True), ("", True), ("a" * 63, True), ("a" * 64, False),
                                      ("-x", False), ("x-", False), ("a b", False), ("1g.10gb+me", False)])
def test_label_value_rule(value, ok):
    assert is_valid_label_value(value) is ok


def read_expiry(text: str) -> datetime:
    (line,) = [line for line in text.splitlines() if line.startswith("# +expiry-time=")]
    return datetime.strptime(line.split("=", 1)[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def test_nfd_file_has_expiry_and_key_value_lines(tmp_path):
    path = tmp_path / "gpulse"
    now = 1_700_000_000.0
    write_nfd_features(str(path), {"gpulse.dev/model": "H100", "gpulse.dev/count": "8"}, 180, now=now)
    text = path.read_text()
    assert read_expiry(text).timestamp() == now + 180
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["gpulse.dev/model=H100", "gpulse.dev/count=8"]
    # the expiry directive comes before every label it applies to
    assert text.index("# +expiry-time=") < text.index("gpulse.dev/model=")
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_nfd_file_is_replaced_atomically_through_a_dot_file(tmp_path, monkeypatch):
    path = tmp_path / "gpulse"
    path.write_text("old=1\n")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.dirname(src), dst, open(dst).read(), open(src).read()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_nfd_features(str(path), {"gpulse.dev/model": "L4"}, 60)
    (src_name, src_dir, dst, dst_before, src_text), = seen
    assert src_name.startswith(".") and src_dir == str(tmp_path) and dst == str(path)
    assert dst_before == "old=1\n" and "gpulse.dev/model=L4" in src_text  # readers saw old, then new: never half
    assert path.read_text() == src_text
    assert os.listdir(tmp_path) == ["gpulse"]  # no dot-file left behind


@pytest.mark.parametrize("labels,message", [
    ({"gpulse.dev/model": "a" * 64}, "gpulse.dev/model"),
    ({"gpulse.dev/model": "has space"}, "gpulse.dev/model"),
    ({"bad key!": "x"}, "bad key!"),
])
def test_invalid_labels_are_refused_and_nothing_is_written(tmp_path, labels, message):
    path = tmp_path / "gpulse"
    path.write_text("old=1\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        write_nfd_features(str(path), labels, 60)
    assert path.read_text() == "old=1\n" and os.listdir(tmp_path) == ["gpulse"]


def test_nfd_size_limit_and_positive_expiry():
    many = {f"gpulse.dev/k{i}": "v" * 60 for i in range(1000)}
    with pytest.raises(ValueError, match=str(NFD_MAX_BYTES)):
        render_nfd_features(many, 60)
    with pytest.raises(ValueError, match="expiry"):
        render_nfd_features({}, 0)
    assert len(render_nfd_features(labels_for(AWKWARD), 60).encode()) < NFD_MAX_BYTES
