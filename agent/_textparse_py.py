"""Prometheus text-format parser, pure-Python twin of ext/_textparse.pyx (same results,
same error lines).

Reads text exposition 0.0.4 from scraped endpoints such as inference servers and
dcgm-exporter, with the leniencies of Prometheus' own scrape parser (prometheus/prometheus
model/textparse/promparse.go): the last line needs no newline (it appends one before
lexing), blank and blanks-only lines anywhere, HELP/TYPE lines anywhere and repeated (the
last wins), a `#` not followed by a blank starts a plain comment, `# EOF` is a comment too
(text 0.0.4 has no end marker: what follows it is read), an unknown escape in a label
value is kept as written (`\\t` stays backslash-t), a trailing comma in a label set.
As Prometheus does, a carriage return is not a blank: CRLF line ends fail on the value.

Grammar, one line at a time (blanks are spaces and tabs):
  [blanks] `#` blanks `HELP` blanks name [blanks text]        text escapes: \\ \n \"
  [blanks] `#` blanks `TYPE` blanks name blanks type [blanks]
  [blanks] `#` anything else                                 a comment
  [blanks] name [blanks] [`{` label (`,` label)* [`,`] `}`] blanks value [blanks timestamp] [blanks]
      label = [blanks] lname [blanks] `=` [blanks] `"` escaped `"` [blanks]; escapes \\ \" \n
      a space must separate a bare name from its value
  value: a decimal float, or [+-]Inf / Infinity / NaN in any case; timestamp: a decimal number
Memory is bounded: a line longer than max_line_bytes, or more than max_samples samples
(or as many HELP/TYPE names), is an error, so hostile input cannot grow the result
beyond that.

ExpositionParser(wanted, max_samples=, max_line_bytes=) is the streaming form: feed() it
chunks as they arrive (only the unfinished last line is kept between chunks), close() ends
the text and returns the Exposition. With `wanted` (metric names), a sample, HELP or TYPE
line whose name is not in it is skipped after reading the name only: nothing else on it
is decoded or checked, and only kept samples count against max_samples, so a body of
families nobody reads costs a name scan per line. parse_exposition(data) is one feed and
close without a filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
# A line's start up to its metric name: blanks, then the name (sample) or `# HELP|TYPE name`.
_SAMPLE_NAME = re.compile(rb"[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)")
_META_NAME = re.compile(rb"[ \t]*#[ \t]+(?:HELP|TYPE)[ \t]+([a-zA-Z_:][a-zA-Z0-9_:]*)")

LabelPairs = tuple[tuple[str, str], ...]
Sample = tuple[str, LabelPairs, float, Optional[float]]  # (name, ((label, value), ...), value, timestamp)
Data = Union[str, bytes, bytearray, memoryview]


class ParseError(ValueError):
    """Bad exposition text; `lineno` is the 1-based line where it was found."""

    def __init__(self, lineno: int, message: str):
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


class SampleLimitError(ParseError):
    """More samples (kept samples, with a filter) than max_samples."""


class Exposition(NamedTuple):
    """samples: [(name, ((label, value), ...), value, timestamp or None)] in input order;
    types and helps: {metric family name: text} from TYPE and HELP lines."""

    samples: list[Sample]
    types: dict[str, str]
    helps: dict[str, str]


def parse_exposition(data: Data, *, max_samples: int = DEFAULT_MAX_SAMPLES,
                     max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Exposition:
    parser = ExpositionParser(None, max_samples=max_samples, max_line_bytes=max_line_bytes)
    parser.feed(data)
    return parser.close()


_ENCODED: dict[frozenset[str], frozenset[bytes]] = {}  # a scraper's wanted set, encoded once
_ENCODED_MAX = 16


def _encoded(wanted: Iterable[str]) -> frozenset[bytes]:
    if not isinstance(wanted, frozenset):
        return frozenset(w.encode("utf-8") for w in wanted)
    got = _ENCODED.get(wanted)
    if got is None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        got = _ENCODED[wanted] = frozenset(w.encode("utf-8") for w in wanted)
    return got


class ExpositionParser:
    """Streaming parse: feed(chunk)... then close() -> Exposition. A ParseError ends it."""

    def __init__(self, wanted: Optional[Iterable[str]] = None, *, max_samples: int = DEFAULT_MAX_SAMPLES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.samples: list[Sample] = []
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.max_samples = max_samples
        self.max_line_bytes = max_line_bytes
        self._wanted = None if wanted is None else _encoded(wanted)
        self._tail = b""
        self._lineno = 0
        self._closed = False

    def feed(self, data: Data) -> None:
        if self._closed:
            raise ValueError("feed() after close()")
        raw = _as_bytes(data)
        if self._tail:
            raw = self._tail + raw
        last = raw.rfind(b"\n")
        if last < 0:
            self._tail = raw
        else:
            self._tail = raw[last + 1:]
            self._lines(raw, last + 1)
        if len(self._tail) > self.max_line_bytes:
            raise ParseError(self._lineno + 1, f"line longer than {self.max_line_bytes} bytes")

    def close(self) -> Exposition:
        """The last line needs no newline (as in Prometheus); -> everything parsed."""
        if not self._closed:
            self._closed = True
            tail, self._tail = self._tail, b""
            if tail:
                self._lines(tail + b"\n", len(tail) + 1)
        return Exposition(self.samples, self.types, self.helps)

    def _lines(self, data: bytes, size: int) -> None:
        """Parses data[:size], which ends with a newline."""
        samples, types, helps, wanted = self.samples, self.types, self.helps, self._wanted
        max_samples, max_line_bytes = self.max_samples, self.max_line_bytes
        lineno = self._lineno
        pos = 0
        try:
            while pos < size:
                lineno += 1
                end = data.find(b"\n", pos)
                if end - pos > max_line_bytes:
                    raise ParseError(lineno, f"line longer than {max_line_bytes} bytes")
                if wanted is not None:
                    m = _SAMPLE_NAME.match(data, pos, end) or _META_NAME.match(data, pos, end)
                    if m is not None and m.group(1) not in wanted:
                        pos = end + 1
                        continue
                line = data[pos:end]
                pos = end + 1
                i = _skip_blanks(line)
                if i == len(line):
                    continue
                if line[i] == 0x23:  # '#'
                    _comment(line, i + 1, lineno, types, helps, max_samples)
                    continue
                if len(samples) >= max_samples:
                    raise SampleLimitError(lineno, f"more than {max_samples} samples")
                samples.append(_sample(line, i, lineno))
        finally:
            self._lineno = lineno


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


def _comment(line: bytes, i: int, lineno: int, types: dict[str, str], helps: dict[str, str], max_meta: int) -> None:
    """Handles a `#` line (i is just past the `#`)."""
    if i >= len(line) or line[i] not in (0x20, 0x09):
        return  # "#HELP ..." is a plain comment, as in Prometheus
    i = _skip_blanks(line, i)
    word_end = i
    while word_end < len(line) and line[word_end] not in (0x20, 0x09):
        word_end += 1
    word = line[i:word_end]
    if word not in (b"HELP", b"TYPE") or word_end == len(line):
        return
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
        text = _unescape(line[i:])
        target = helps
        value = _decode(text, lineno, "HELP text")
    else:
        type_end = _SPLIT.search(line, i)
        kind = line[i : type_end.start() if type_end else len(line)]
        if type_end is not None and type_end.end() != len(line):
            raise ParseError(lineno, "unexpected text after the metric type")
        value = kind.decode("ascii", "replace")
        if value not in METRIC_TYPES:
            raise ParseError(lineno, f"unknown metric type {value[:40]!r}")
        target = types
    if name not in target and len(types) + len(helps) >= max_meta:
        raise ParseError(lineno, f"more than {max_meta} HELP/TYPE names")
    target[name] = value


def _unescape(raw: bytes) -> bytes:
    """\\\\ \\" \\n replaced; any other backslash pair kept as written (Prometheus keeps it too)."""
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group()), raw)


_ESCAPES = {b"\\": b"\\", b"n": b"\n", b'"': b'"'}


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
        raw = _unescape(line[i + 1 : j])
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
