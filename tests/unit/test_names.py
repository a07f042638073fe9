"""Kubernetes' name rules."""

import pytest
from gpulse.names import is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value


@pytest.mark.parametrize("text,label,subdomain", [
    ("ml", True, True), ("kube-system", True, True), ("vllm-0.shard-1", False, True),
    ("Ml", False, False), ("-ml", False, False), ("ml-", False, False), ("", False, False),
    ("a" * 63, True, True), ("a" * 64, False, True), (".".join(["a" * 63] * 4), False, False),
])
def test_object_names(text, label, subdomain):
    assert is_dns1123_label(text) is label
    assert is_dns1123_subdomain(text) is subdomain


def test_label_keys_and_values():
    assert is_label_value("") and is_label_value("H100-SXM5_80GB.v1") and not is_label_value("-x")
    assert not is_label_value("a" * 64)
    assert is_label_key("gpulse.dev/mig.1g.10gb.count") and is_label_key("model")
    assert not is_label_key("Gpulse.dev/model") and not is_label_key("gpulse.dev/" + "m" * 64)
