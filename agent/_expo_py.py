"""Exposition encoder, pure-Python twin of ext/_expo.pyx (identical output).

Each series' `name{labels} ` prefix is escaped and encoded once and kept while the
series lives; a render only formats values. Empty label values are not written
(Prometheus treats an empty label as an absent one), so one family can carry MIG
labels on MIG series only.
"""

from __future__ import annotations

import math

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v.is_integer() and -1e15 < v < 1e15:
        return "%d" % v
    return repr(v)


def series_prefix(name: str, labelnames, labelvalues) -> bytes:
    pairs = [f'{k}="{escape_label_value(v)}"' for k, v in zip(labelnames, labelvalues) if v != ""]
    if pairs:
        return f"{name}{{{','.join(pairs)}}} ".encode()
    return f"{name} ".encode()


def _om_family_name(name: str, type_: str) -> str:
    if type_ == "counter" and name.endswith("_total"):
        return name[:-6]
    if type_ == "info" and name.endswith("_info"):
        return name[:-5]
    return name


class ExpositionEncoder:
    """Renders families to text 0.0.4 (default) or OpenMetrics 1.0 bytes."""

    def __init__(self, openmetrics: bool = False):
        self.openmetrics = openmetrics
        self._prefixes: dict = {}
        self._headers: dict = {}

    def render(self, families) -> bytes:
        out = []
        seen = {}
        prefixes = self._prefixes
        for fam in families:
            if not fam.samples:
                continue
            header = self._headers.get((fam.name, fam.type, fam.help))
            if header is None:
                header = self._header(fam)
                self._headers[(fam.name, fam.type, fam.help)] = header
            out.append(header)
            name, labelnames = fam.name, fam.labelnames
            for labelvalues, value in fam.samples:
                key = (name, labelnames, labelvalues)
                prefix = prefixes.get(key)
                if prefix is None:
                    prefix = series_prefix(name, labelnames, labelvalues)
                seen[key] = prefix
                out.append(prefix)
                out.append(format_value(value).encode())
                out.append(b"\n")
        if self.openmetrics:
            out.append(b"# EOF\n")
        # Series that were not rendered this time are gone: forget their prefixes.
        self._prefixes = seen
        return b"".join(out)

    def _header(self, fam) -> bytes:
        if self.openmetrics:
            name = _om_family_name(fam.name, fam.type)
            type_ = fam.type
        else:
            name = fam.name
            type_ = "gauge" if fam.type == "info" else fam.type
        return f"# HELP {name} {escape_help(fam.help)}\n# TYPE {name} {type_}\n".encode()
