"""Kubernetes' name rules, in one place: object names, label keys and label values.

DNS-1123 labels (namespaces, container names), DNS-1123 subdomains (pod names, label key
prefixes) and label values (at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both
ends) as the API server validates them.
"""

from __future__ import annotations

import re

MAX_LABEL = 63
MAX_SUBDOMAIN = 253
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL + r"\Z")
_DNS1123_SUBDOMAIN = re.compile(_LABEL + r"(?:\." + _LABEL + r")*\Z")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")


def is_dns1123_label(text: str) -> bool:
    """A namespace or container name."""
    return len(text) <= MAX_LABEL and bool(_DNS1123_LABEL.match(text))


def is_dns1123_subdomain(text: str) -> bool:
    """A pod name, or the prefix of a label key."""
    return len(text) <= MAX_SUBDOMAIN and bool(_DNS1123_SUBDOMAIN.match(text))


def is_label_value(text: str) -> bool:
    return len(text) <= MAX_LABEL and bool(_LABEL_VALUE.match(text))


def is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return False
    return len(name) <= MAX_LABEL and bool(_LABEL_NAME.match(name))


def sanitize_label_value(text: str) -> str:
    """Any text -> a valid label value: invalid characters become '-', runs collapse, the
    ends are trimmed to alphanumerics, at most 63 characters ('' when nothing is left)."""
    value = re.sub(r"[^-A-Za-z0-9_.]+", "-", str(text).strip())
    value = re.sub(r"-{2,}", "-", value)
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    value = value[:MAX_LABEL]
    return re.sub(r"[^A-Za-z0-9]+$", "", value)
