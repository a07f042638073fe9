"""Exposition encoder, pure-Python twin of ext/_expo.pyx (byte-identical output).

Each series' `name{labels} ` prefix is escaped and encoded once and kept while the
series lives; a render only formats values. Empty label values are not written
(Prometheus treats an empty label as an absent one), so one family can carry MIG
labels on MIG series only.

Values: NaN, +Inf, -Inf; integral values below 1e15 as integers; anything else as
Python's repr() (shortest digits that read back to the same double).

Histograms (type "histogram", bounds in the family's `buckets`, each sample's value
(cumulative counts per bound plus +Inf, sum)) render as `_bucket{le=...}` lines, then
`_sum` and `_count`, in both formats. `le` is written as a canonical number (OpenMetrics:
integral bounds with ".0", as client libraries write them). They take a path of their own,
per family, so gauges and counters cost what they did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, SupportsFloat, SupportsIndex

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TYPES = ("gauge", "counter", "info", "histogram")

LabelValues = tuple[str, ...]
_HeaderKey = tuple[str, str, str, LabelValues]
_SeriesKey = tuple[str, LabelValues, LabelValues]
_HistogramKey = tuple[str, LabelValues, LabelValues, tuple[str, ...]]


class RenderableFamily(Protocol):
    """What the encoder reads of a family (gpulse.family.Family): name, type, help, label
    names and samples [(label values, value)]."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def help(self) -> str: ...

    @property
    def labelnames(self) -> LabelValues: ...

    @property
    def samples(self) -> Sequence[tuple[LabelValues, object]]: ...


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    """The text of one sample value, as a render writes it."""
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if -1e15 < v < 1e15 and v.is_integer():
        return str(int(v))
    return repr(v)


def _as_float(name: str, value: object) -> float:
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, (SupportsFloat, SupportsIndex)):
        raise TypeError(f"{name}: sample value {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: sample value {value!r} is not a number") from None


def _series_prefix(name: str, labelnames: LabelValues, labelvalues: object) -> bytes:
    if type(labelvalues) is not tuple:
        raise TypeError(f"{name}: label values must be a tuple, got {type(labelvalues).__name__}")
    if len(labelvalues) != len(labelnames):
        raise ValueError(f"{name}: {len(labelvalues)} label values for {len(labelnames)} label names {labelnames}")
    pairs = []
    for k, v in zip(labelnames, labelvalues, strict=True):
        if type(v) is not str:
            raise TypeError(f"{name}: label {k} value {v!r} is not a str")
        if v != "":
            pairs.append(f'{k}="{escape_label_value(v)}"')
    if pairs:
        return f"{name}{{{','.join(pairs)}}} ".encode()
    return f"{name} ".encode()


def format_le(v: float) -> str:
    """A histogram bound as the `le` label writes it: +Inf, integral values with ".0"
    (OpenMetrics' canonical numbers, as client libraries write them), else repr()."""
    v = float(v)
    if v == math.inf:
        return "+Inf"
    if -1e15 < v < 1e15 and v.is_integer():
        return f"{int(v)}.0"
    return repr(v)


def _histogram_les(name: str, labelnames: LabelValues, buckets: object) -> tuple[str, ...]:
    """The family's `le` texts, +Inf last; refuses bounds that are not increasing finite numbers."""
    if "le" in labelnames:
        raise ValueError(f"{name}: a histogram cannot have a label named 'le'")
    if type(buckets) is not tuple:
        raise TypeError(f"{name}: histogram buckets must be a tuple of numbers")
    les = []
    last = -math.inf
    for b in buckets:
        if type(b) is not float and type(b) is not int:
            raise TypeError(f"{name}: histogram bucket {b!r} is not a number")
        v = float(b)
        if not math.isfinite(v) or v <= last:
            raise ValueError(f"{name}: histogram buckets must be finite and increasing, got {buckets!r}")
        if v < 0:  # OpenMetrics forbids a _sum next to negative buckets; durations are never negative
            raise ValueError(f"{name}: histogram buckets must not be negative, got {buckets!r}")
        last = v
        les.append(format_le(v))
    les.append("+Inf")
    return tuple(les)


def _histogram_prefixes(name: str, labelnames: LabelValues, labelvalues: object,
                        les: tuple[str, ...]) -> tuple[bytes, ...]:
    """`name_bucket{...,le="..."} ` per bound, then `name_sum{...} ` and `name_count{...} `."""
    base = _series_prefix(name, labelnames, labelvalues)  # validates the label values
    assert isinstance(labelvalues, tuple)
    pairs = [f'{k}="{escape_label_value(v)}"' for k, v in zip(labelnames, labelvalues, strict=True) if v != ""]
    out = [(name + "_bucket{" + ",".join([*pairs, 'le="' + le + '"']) + "} ").encode() for le in les]
    rest = base[len(name):]
    return (*out, (name + "_sum").encode() + rest, (name + "_count").encode() + rest)


def _histogram_value(name: str, value: object, n: int) -> tuple[list[float], float]:
    """(cumulative counts, sum) of one histogram sample, checked."""
    if type(value) is not tuple or len(value) != 2:
        raise TypeError(f"{name}: histogram value must be (cumulative counts, sum), got {value!r}")
    counts, total = value
    if not isinstance(counts, (tuple, list)) or len(counts) != n:
        raise ValueError(f"{name}: histogram needs {n} cumulative counts (one per bucket and +Inf), got {counts!r}")
    return [_as_float(name, c) for c in counts], _as_float(name, total)


def _header(name: str, type_: str, help_: str, labelnames: Iterable[object], openmetrics: bool) -> bytes:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    if type_ not in _TYPES:
        raise ValueError(f"{name}: unknown metric type {type_!r} (expected gauge, counter, info or histogram)")
    for k in labelnames:
        if not isinstance(k, str) or not _LABEL_NAME.match(k) or k.startswith("__"):
            raise ValueError(f"{name}: invalid label name {k!r}")
    if openmetrics:
        # OpenMetrics names a counter's samples <family>_total and an info's <family>_info;
        # a series named otherwise (dcgm-exporter's compat counters) can only be `unknown`.
        if type_ == "counter":
            if name.endswith("_total"):
                name = name[:-6]
            else:
                type_ = "unknown"
        elif type_ == "info":
            if name.endswith("_info"):
                name = name[:-5]
            else:
                type_ = "gauge"
        text = help_.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    else:
        if type_ == "info":
            type_ = "gauge"
        text = help_.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {text}\n# TYPE {name} {type_}\n".encode()


class ExpositionEncoder:
    """Renders families to text 0.0.4 (default) or OpenMetrics 1.0.

    render() returns bytes; render_view() a read-only memoryview that stays valid for as
    long as the caller holds it (the compiled encoder serves it from a pooled buffer).
    """

    def __init__(self, openmetrics: bool = False) -> None:
        self.openmetrics = bool(openmetrics)
        self._prefixes: dict[_SeriesKey, bytes] = {}
        self._headers: dict[_HeaderKey, bytes] = {}
        self._histograms: dict[_HistogramKey, tuple[bytes, ...]] = {}

    @property
    def series_cached(self) -> int:
        return len(self._prefixes) + len(self._histograms)

    def render_view(self, families: Iterable[RenderableFamily]) -> memoryview:
        return memoryview(self.render(families)).toreadonly()

    def render(self, families: Iterable[RenderableFamily]) -> bytes:
        out: list[bytes] = []
        seen_prefixes: dict[_SeriesKey, bytes] = {}
        seen_headers: dict[_HeaderKey, bytes] = {}
        seen_histograms: dict[_HistogramKey, tuple[bytes, ...]] = {}
        prefixes = self._prefixes
        for fam in families:
            samples = fam.samples
            if not samples:
                continue
            name, labelnames = fam.name, fam.labelnames
            hkey = (name, fam.type, fam.help, labelnames)
            header = self._headers.get(hkey)
            if header is None:
                header = _header(name, fam.type, fam.help, labelnames, self.openmetrics)
            seen_headers[hkey] = header
            out.append(header)
            if fam.type == "histogram":
                self._render_histogram(fam, out, seen_histograms)
                continue
            for labelvalues, value in samples:
                if type(value) is not float:
                    value = _as_float(name, value)
                if type(labelvalues) is not tuple:
                    _series_prefix(name, labelnames, labelvalues)
                key = (name, labelnames, labelvalues)
                prefix = prefixes.get(key)
                if prefix is None:
                    prefix = _series_prefix(name, labelnames, labelvalues)
                seen_prefixes[key] = prefix
                out.append(prefix)
                out.append(format_value(value).encode())
                out.append(b"\n")
        if self.openmetrics:
            out.append(b"# EOF\n")
        # Series and families not rendered this time are gone: forget them.
        self._prefixes = seen_prefixes
        self._headers = seen_headers
        self._histograms = seen_histograms
        return b"".join(out)

    def _render_histogram(self, fam: RenderableFamily, out: list[bytes],
                          seen: dict[_HistogramKey, tuple[bytes, ...]]) -> None:
        name, labelnames = fam.name, fam.labelnames
        les = _histogram_les(name, labelnames, getattr(fam, "buckets", None))
        for labelvalues, value in fam.samples:
            counts, total = _histogram_value(name, value, len(les))
            if type(labelvalues) is not tuple:
                _series_prefix(name, labelnames, labelvalues)
            key = (name, labelnames, labelvalues, les)
            lines = self._histograms.get(key)
            if lines is None:
                lines = _histogram_prefixes(name, labelnames, labelvalues, les)
            seen[key] = lines
            for prefix, count in zip(lines[:-2], counts, strict=True):
                out.append(prefix)
                out.append(format_value(count).encode())
                out.append(b"\n")
            out.append(lines[-2])
            out.append(format_value(total).encode())
            out.append(b"\n")
            out.append(lines[-1])
            out.append(format_value(counts[-1]).encode())
            out.append(b"\n")
