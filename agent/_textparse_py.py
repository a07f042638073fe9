"""Prometheus text-format parser, pure-Python twin of ext/_textparse.pyx (same results,
same error lines).

Reads text exposition 0.0.4 (and the OpenMetrics lines it shares: `# EOF`, `# UNIT` as a
comment) from scraped endpoints such as inference servers and dcgm-exporter.

Grammar, one line at a time (blanks are spaces and tabs):
  [blanks] `#` [blanks] `HELP` blanks name [blanks text]      text escapes: \\ \n \"
  [blanks] `#` [blanks] `TYPE` blanks name blanks type [blanks]
  [blanks] `#` [blanks] `EOF` [blanks]                         nothing may follow
  [blanks] `#` anything                                       a comment
  [blanks] name [blanks] [`{` label (`,` label)* [`,`] `}`] blanks value [blanks timestamp] [blanks]
      label = [blanks] lname [blanks] `=` [blanks] `"` escaped `"` [blanks]; escapes \\ \" \n
      a space must separate a bare name from its value
  value: a decimal float, or [+-]Inf / Infinity / NaN in any case; timestamp: a decimal number
Every line ends with a newline: input that stops mid-line is reported as truncated.
Memory is bounded: a line longer than max_line_bytes, or more than max_samples samples
(or as many HELP/TYPE names), is an error, so hostile input cannot grow the result
beyond that.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Union

DEFAULT_MAX_SAMPLES = 200_000
DEFAULT_MAX_LINE_BYTES = 64 * 1024

METRIC_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped", "info", "stateset", "gaugehistogram",
                          "unknown"))

_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
_BLANKS = re.compile(rb"[ \t]*")
_SPLIT = re.compile(rb"[ \t]+")
_NUMBER = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SPECIAL = re.compile(rb"(?i:[+-]?(?:inf|infinity|nan))\Z")
_ESCAPE = re.compile(rb"\\(.)", re.S)

LabelPairs = tuple[tuple[str, str], ...]
Sample = tuple[str, LabelPairs, float, Optional[float]]  # (name, ((label, value), ...), value, timestamp)


class ParseError(ValueError):
    """Bad exposition text; `lineno` is the 1-based line where it was found."""

    def __init__(self, lineno: int, message: str):
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


class Exposition(NamedTuple):
    """samples: [(name, ((label, value), ...), value, timestamp or None)] in input order;
    types and helps: {metric family name: text} from TYPE and HELP lines."""

    samples: list[Sample]
    types: dict[str, str]
    helps: dict[str, str]


def parse_exposition(data: Union[str, bytes, bytearray, memoryview], *, max_samples: int = DEFAULT_MAX_SAMPLES,
                     max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Exposition:
    data = _as_bytes(data)
    samples: list[Sample] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    size = len(data)
    pos = 0
    lineno = 0
    while pos < size:
        lineno += 1
        end = data.find(b"\n", pos)
        stop = size if end < 0 else end
        if stop - pos > max_line_bytes:
            raise ParseError(lineno, f"line longer than {max_line_bytes} bytes")
        if end < 0:
            raise ParseError(lineno, "input ends in the middle of a line (truncated?)")
        line = data[pos:end]
        pos = end + 1
        i = _skip_blanks(line)
        if i == len(line):
            continue
        if line[i] == 0x23:  # '#'
            if _comment(line, i + 1, lineno, types, helps, max_samples):
                if pos < size:
                    raise ParseError(lineno + 1, "data after # EOF")
                break
            continue
        if len(samples) >= max_samples:
            raise ParseError(lineno, f"more than {max_samples} samples")
        samples.append(_sample(line, i, lineno))
    return Exposition(samples, types, helps)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ParseError(data.count("\n", 0, e.start) + 1, "text is not valid UTF-8") from None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"exposition must be bytes or str, got {type(data).__name__}")


def _skip_blanks(line: bytes, i: int = 0) -> int:
    """The index of the first non-blank at or after i."""
    m = _BLANKS.match(line, i)
    assert m is not None  # `[ \t]*` matches everywhere, if only the empty string
    return m.end()


def _decode(raw: bytes, lineno: int, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(lineno, f"{what} is not valid UTF-8") from None


def _comment(line: bytes, i: int, lineno: int, types: dict[str, str], helps: dict[str, str], max_meta: int) -> bool:
    """Handles a `#` line; True when it is `# EOF`."""
    i = _skip_blanks(line, i)
    word_end = i
    while word_end < len(line) and line[word_end] not in (0x20, 0x09):
        word_end += 1
    word = line[i:word_end]
    if word == b"EOF":
        if _skip_blanks(line, word_end) != len(line):
            return False  # "# EOF something" is just a comment
        return True
    if word not in (b"HELP", b"TYPE") or word_end == len(line):
        return False
    i = _skip_blanks(line, word_end)
    m = _NAME.match(line, i)
    if m is None:
        raise ParseError(lineno, f"{word.decode()} line without a valid metric name")
    name = m.group().decode("ascii")
    i = m.end()
    if i < len(line) and line[i] not in (0x20, 0x09):
        raise ParseError(lineno, f"invalid metric name in {word.decode()} line")
    i = _skip_blanks(line, i)
    if word == b"HELP":
        text = _unescape_help(line[i:])
        target = helps
        value = _decode(text, lineno, "HELP text")
    else:
        type_end = _SPLIT.search(line, i)
        kind = line[i : type_end.start() if type_end else len(line)]
        if type_end is not None and type_end.end() != len(line):
            raise ParseError(lineno, "unexpected text after the metric type")
        value = kind.decode("ascii", "replace")
        if value not in METRIC_TYPES:
            raise ParseError(lineno, f"unknown metric type {value!r}")
        target = types
    if name not in target and len(types) + len(helps) >= max_meta:
        raise ParseError(lineno, f"more than {max_meta} HELP/TYPE names")
    target[name] = value
    return False


def _unescape_help(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: {b"\\": b"\\", b"n": b"\n", b'"': b'"'}.get(m.group(1), m.group()), raw)


def _unescape_label(raw: bytes, lineno: int) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        c = m.group(1)
        if c == b"\\":
            return b"\\"
        if c == b"n":
            return b"\n"
        if c == b'"':
            return b'"'
        raise ParseError(lineno, f"invalid escape \\{c.decode('latin-1')} in label value")

    return _ESCAPE.sub(one, raw)


def _sample(line: bytes, i: int, lineno: int) -> Sample:
    m = _NAME.match(line, i)
    if m is None:
        raise ParseError(lineno, "invalid metric name")
    name = m.group().decode("ascii")
    name_end = m.end()
    i = _skip_blanks(line, name_end)
    labels: LabelPairs = ()
    if i < len(line) and line[i] == 0x7B:  # '{'
        labels, i = _labels(line, i + 1, lineno)
    elif i == name_end:
        raise ParseError(lineno, "expected a space between the metric name and the value")
    rest = line[i:].strip(b" \t")
    if not rest:
        raise ParseError(lineno, "missing value")
    fields = _SPLIT.split(rest)
    if len(fields) > 2:
        raise ParseError(lineno, "unexpected text after the timestamp")
    value = _number(fields[0], lineno, "value", True)
    ts = _number(fields[1], lineno, "timestamp", False) if len(fields) == 2 else None
    return (name, labels, value, ts)


def _labels(line: bytes, i: int, lineno: int) -> tuple[LabelPairs, int]:
    pairs: list[tuple[str, str]] = []
    names: set[str] = set()
    n = len(line)
    while True:
        i = _skip_blanks(line, i)
        if i < n and line[i] == 0x7D:  # '}'
            return tuple(pairs), i + 1
        m = _LABEL_NAME.match(line, i)
        if m is None:
            raise ParseError(lineno, "invalid label name")
        key = m.group().decode("ascii")
        if key in names:
            raise ParseError(lineno, f"duplicate label {key}")
        names.add(key)
        i = _skip_blanks(line, m.end())
        if i >= n or line[i] != 0x3D:  # '='
            raise ParseError(lineno, f"expected '=' after label {key}")
        i = _skip_blanks(line, i + 1)
        if i >= n or line[i] != 0x22:  # '"'
            raise ParseError(lineno, f"expected '\"' to open the value of label {key}")
        j = i + 1
        while True:
            if j >= n:
                raise ParseError(lineno, f"unterminated value of label {key}")
            c = line[j]
            if c == 0x22:
                break
            j += 2 if c == 0x5C else 1
        raw = line[i + 1 : j]
        if b"\\" in raw:
            raw = _unescape_label(raw, lineno)
        pairs.append((key, _decode(raw, lineno, f"value of label {key}")))
        i = _skip_blanks(line, j + 1)
        if i < n and line[i] == 0x2C:  # ','
            i += 1
            continue
        if i < n and line[i] == 0x7D:
            return tuple(pairs), i + 1
        raise ParseError(lineno, f"expected ',' or '}}' after label {key}")


def _number(text: bytes, lineno: int, what: str, allow_special: bool) -> float:
    if _NUMBER.match(text) or (allow_special and _SPECIAL.match(text)):
        return float(text)
    raise ParseError(lineno, f"invalid {what} {text[:40].decode('utf-8', 'replace')!r}")
