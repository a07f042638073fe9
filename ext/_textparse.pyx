# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Prometheus text-format parser, compiled twin of agent/_textparse_py.py (same results,
same error lines; the grammar is documented there).

ExpositionParser is the streaming form (feed chunks, close); with a `wanted` set a line
whose metric name is not in it is skipped after scanning the name, the decision for the
previous line's name reused when the next line has the same name (families are contiguous).
One pass over the bytes. Strings equal to the previous sample's (metric name, label names,
label values, whole label pairs) are reused instead of decoded again: exporters repeat
them from line to line, so most samples allocate only their value.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport strtod
from libc.string cimport memchr, memcmp
from libc.math cimport NAN, INFINITY
from typing import NamedTuple

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

DEFAULT_MAX_SAMPLES = 200_000
DEFAULT_MAX_LINE_BYTES = 64 * 1024

METRIC_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped", "info", "stateset", "gaugehistogram", "unknown"))


class ParseError(ValueError):
    """Bad exposition text; `lineno` is the 1-based line where it was found."""

    def __init__(self, lineno, message):
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


class SampleLimitError(ParseError):
    """More samples (kept samples, with a filter) than max_samples."""


class Exposition(NamedTuple):
    """samples: [(name, ((label, value), ...), value, timestamp or None)] in input order;
    types and helps: {metric family name: text} from TYPE and HELP lines."""

    samples: list
    types: dict
    helps: dict


cdef inline bint _blank(char c) noexcept nogil:
    return c == b' ' or c == b'\t'


cdef inline bint _name_start(char c) noexcept nogil:
    return (b'a' <= c <= b'z') or (b'A' <= c <= b'Z') or c == b'_' or c == b':'


cdef inline bint _name_char(char c) noexcept nogil:
    return _name_start(c) or (b'0' <= c <= b'9')


cdef inline bint _label_start(char c) noexcept nogil:
    return (b'a' <= c <= b'z') or (b'A' <= c <= b'Z') or c == b'_'


cdef inline bint _label_char(char c) noexcept nogil:
    return _label_start(c) or (b'0' <= c <= b'9')


cdef inline Py_ssize_t _skip_blanks(const char *s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and _blank(s[i]):
        i += 1
    return i


cdef inline bint _same_text(object cached, const char *p, Py_ssize_t n):
    """True when the str `cached` has exactly the UTF-8 bytes p[:n]."""
    cdef Py_ssize_t m
    cdef const char *u
    if cached is None:
        return False
    u = PyUnicode_AsUTF8AndSize(cached, &m)
    return m == n and memcmp(u, p, n) == 0


cdef inline bint _lower_eq(const char *p, Py_ssize_t n, const char *word, Py_ssize_t wn) noexcept nogil:
    cdef Py_ssize_t k
    cdef char c
    if n != wn:
        return False
    for k in range(n):
        c = p[k]
        if b'A' <= c <= b'Z':
            c = c + 32
        if c != word[k]:
            return False
    return True


cdef int _number_kind(const char *p, Py_ssize_t n, bint allow_special) noexcept nogil:
    """1 for a decimal float, 2 for [+-]inf/infinity, 3 for [+-]nan, 0 for anything else;
    NEGATIVE infinities are 4."""
    cdef Py_ssize_t i = 0, digits = 0
    cdef bint neg = False
    if n > 0 and (p[0] == b'+' or p[0] == b'-'):
        neg = p[0] == b'-'
        i = 1
    if allow_special:
        if _lower_eq(p + i, n - i, b"inf", 3) or _lower_eq(p + i, n - i, b"infinity", 8):
            return 4 if neg else 2
        if _lower_eq(p + i, n - i, b"nan", 3):
            return 3
    while i < n and b'0' <= p[i] <= b'9':
        i += 1
        digits += 1
    if i < n and p[i] == b'.':
        i += 1
        while i < n and b'0' <= p[i] <= b'9':
            i += 1
            digits += 1
    if digits == 0:
        return 0
    if i < n and (p[i] == b'e' or p[i] == b'E'):
        i += 1
        if i < n and (p[i] == b'+' or p[i] == b'-'):
            i += 1
        if i >= n or not (b'0' <= p[i] <= b'9'):
            return 0
        while i < n and b'0' <= p[i] <= b'9':
            i += 1
    return 1 if i == n else 0


cdef double _number(const char *p, Py_ssize_t n, Py_ssize_t lineno, str what, bint allow_special) except? -1.0:
    cdef int kind = _number_kind(p, n, allow_special)
    cdef char tmp[64]
    cdef Py_ssize_t k
    if kind == 1:
        if n < 64:
            # strtod needs a terminator; the line has none of its own here.
            for k in range(n):
                tmp[k] = p[k]
            tmp[n] = 0
            return strtod(tmp, NULL)
        return float(p[:n])
    if kind == 2:
        return INFINITY
    if kind == 4:
        return -INFINITY
    if kind == 3:
        return NAN
    raise ParseError(lineno, f"invalid {what} {p[:min(n, 40)].decode('utf-8', 'replace')!r}")


cdef str _decode(const char *p, Py_ssize_t n, Py_ssize_t lineno, what):
    try:
        return PyUnicode_DecodeUTF8(p, n, NULL)
    except UnicodeDecodeError:
        raise ParseError(lineno, f"{what} is not valid UTF-8") from None


cdef bytes _unescape(const char *p, Py_ssize_t n):
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i = 0
    cdef char c
    while i < n:
        c = p[i]
        if c == b'\\' and i + 1 < n:
            c = p[i + 1]
            if c == b'\\' or c == b'"':
                out.append(<unsigned char>c)
            elif c == b'n':
                out.append(10)
            else:  # kept as written, as Prometheus keeps it
                out.append(b'\\')
                out.append(<unsigned char>c)
            i += 2
        else:
            out.append(<unsigned char>c)
            i += 1
    return bytes(out)


cdef bytes _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ParseError(data.count("\n", 0, e.start) + 1, "text is not valid UTF-8") from None
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"exposition must be bytes or str, got {type(data).__name__}")


def parse_exposition(data, *, max_samples=DEFAULT_MAX_SAMPLES, max_line_bytes=DEFAULT_MAX_LINE_BYTES):
    cdef ExpositionParser parser = ExpositionParser(None, max_samples=max_samples, max_line_bytes=max_line_bytes)
    parser.feed(data)
    return parser.close()


cdef inline Py_ssize_t _name_end(const char *s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The end of the metric name starting at i (i itself when there is none)."""
    if i < n and _name_start(s[i]):
        i += 1
        while i < n and _name_char(s[i]):
            i += 1
    return i


cdef dict _ENCODED = {}  # a scraper's wanted set, encoded once
cdef Py_ssize_t _ENCODED_MAX = 16


cdef object _encoded(wanted):
    if not isinstance(wanted, frozenset):
        return frozenset(w.encode("utf-8") for w in wanted)
    got = _ENCODED.get(wanted)
    if got is None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        got = _ENCODED[wanted] = frozenset(w.encode("utf-8") for w in wanted)
    return got


cdef class ExpositionParser:
    """Streaming parse: feed(chunk)... then close() -> Exposition. A ParseError ends it."""
    cdef readonly list samples
    cdef readonly dict types
    cdef readonly dict helps
    cdef readonly Py_ssize_t max_samples
    cdef readonly Py_ssize_t max_line_bytes
    cdef object wanted  # frozenset of UTF-8 names, or None
    cdef bytes tail
    cdef Py_ssize_t lineno
    cdef bint closed
    cdef _Reuse reuse
    cdef bytes last_name  # the previous filtered line's name, and whether it was wanted
    cdef bint last_wanted

    def __init__(self, wanted=None, *, max_samples=DEFAULT_MAX_SAMPLES, max_line_bytes=DEFAULT_MAX_LINE_BYTES):
        self.samples = []
        self.types = {}
        self.helps = {}
        self.max_samples = max_samples
        self.max_line_bytes = max_line_bytes
        self.wanted = None if wanted is None else _encoded(wanted)
        self.tail = b""
        self.lineno = 0
        self.closed = False
        self.reuse = _Reuse()
        self.last_name = None
        self.last_wanted = False

    def feed(self, data):
        cdef bytes raw
        cdef const char *s
        cdef const char *nl
        cdef Py_ssize_t size, last
        if self.closed:
            raise ValueError("feed() after close()")
        raw = _as_bytes(data)
        if PyBytes_GET_SIZE(self.tail):
            raw = self.tail + raw
        s = PyBytes_AS_STRING(raw)
        size = PyBytes_GET_SIZE(raw)
        last = size - 1
        while last >= 0 and s[last] != b'\n':
            last -= 1
        if last < 0:
            self.tail = raw
        else:
            self.tail = raw[last + 1:] if last + 1 < size else b""
            self._lines(raw, last + 1)
        if PyBytes_GET_SIZE(self.tail) > self.max_line_bytes:
            raise ParseError(self.lineno + 1, f"line longer than {self.max_line_bytes} bytes")

    def close(self):
        """The last line needs no newline (as in Prometheus); -> everything parsed."""
        cdef bytes tail
        if not self.closed:
            self.closed = True
            tail = self.tail
            self.tail = b""
            if PyBytes_GET_SIZE(tail):
                self._lines(tail + b"\n", PyBytes_GET_SIZE(tail) + 1)
        return Exposition(self.samples, self.types, self.helps)

    cdef bint _skip(self, const char *line, Py_ssize_t n) except -1:
        """With a filter: whether this line names a metric that is not wanted."""
        cdef Py_ssize_t i = _skip_blanks(line, 0, n), e, k
        if i < n and line[i] == b'#':
            k = i + 1
            if not (k < n and _blank(line[k])):
                return False
            k = _skip_blanks(line, k, n)
            if not (n - k > 4 and (memcmp(line + k, b"HELP", 4) == 0 or memcmp(line + k, b"TYPE", 4) == 0)
                    and _blank(line[k + 4])):
                return False
            i = _skip_blanks(line, k + 4, n)
        e = _name_end(line, i, n)
        if e == i:
            return False
        if (self.last_name is not None and PyBytes_GET_SIZE(self.last_name) == e - i
                and memcmp(PyBytes_AS_STRING(self.last_name), line + i, e - i) == 0):
            return not self.last_wanted
        self.last_name = line[i:e]
        self.last_wanted = self.last_name in self.wanted
        return not self.last_wanted

    cdef int _lines(self, bytes raw, Py_ssize_t size) except -1:
        """Parses raw[:size], which ends with a newline."""
        cdef const char *s = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t pos = 0, stop, n, i
        cdef Py_ssize_t lineno = self.lineno
        cdef Py_ssize_t max_samples = self.max_samples
        cdef const char *line
        cdef const char *nl
        cdef list samples = self.samples
        cdef bint filtered = self.wanted is not None
        try:
            while pos < size:
                lineno += 1
                nl = <const char*>memchr(s + pos, b'\n', size - pos)
                stop = nl - s
                if stop - pos > self.max_line_bytes:
                    raise ParseError(lineno, f"line longer than {self.max_line_bytes} bytes")
                line = s + pos
                n = stop - pos
                pos = stop + 1
                if filtered and self._skip(line, n):
                    continue
                i = _skip_blanks(line, 0, n)
                if i == n:
                    continue
                if line[i] == b'#':
                    _comment(line, i + 1, n, lineno, self.types, self.helps, max_samples)
                    continue
                if PyList_GET_SIZE(samples) >= max_samples:
                    raise SampleLimitError(lineno, f"more than {max_samples} samples")
                samples.append(self.reuse.sample(line, i, n, lineno))
        finally:
            self.lineno = lineno
        return 0


cdef int _comment(const char *line, Py_ssize_t i, Py_ssize_t n, Py_ssize_t lineno, dict types, dict helps, Py_ssize_t max_meta) except -1:
    """Handles a `#` line (i is just past the `#`)."""
    cdef Py_ssize_t word, word_end, name_start, j
    cdef bint is_help
    if not (i < n and _blank(line[i])):
        return 0  # "#HELP ..." is a plain comment, as in Prometheus
    i = _skip_blanks(line, i, n)
    word = i
    word_end = i
    while word_end < n and not _blank(line[word_end]):
        word_end += 1
    if word_end - word != 4:
        return 0
    if memcmp(line + word, b"HELP", 4) == 0:
        is_help = True
    elif memcmp(line + word, b"TYPE", 4) == 0:
        is_help = False
    else:
        return 0
    if word_end == n:
        return 0
    kind_name = "HELP" if is_help else "TYPE"
    i = _skip_blanks(line, word_end, n)
    name_start = i
    if i < n and _name_start(line[i]):
        i += 1
        while i < n and _name_char(line[i]):
            i += 1
    else:
        raise ParseError(lineno, f"{kind_name} line without a valid metric name")
    name = line[name_start:i].decode("ascii")
    if i < n and not _blank(line[i]):
        raise ParseError(lineno, f"invalid metric name in {kind_name} line")
    i = _skip_blanks(line, i, n)
    if is_help:
        if memchr(line + i, b'\\', n - i) != NULL:
            text = _unescape(line + i, n - i)
            value = _decode(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), lineno, "HELP text")
        else:
            value = _decode(line + i, n - i, lineno, "HELP text")
        target = helps
    else:
        j = i
        while j < n and not _blank(line[j]):
            j += 1
        if j < n and _skip_blanks(line, j, n) != n:
            raise ParseError(lineno, "unexpected text after the metric type")
        value = line[i:j].decode("ascii", "replace")
        if value not in METRIC_TYPES:
            raise ParseError(lineno, f"unknown metric type {value[:40]!r}")
        target = types
    if name not in target and len(types) + len(helps) >= max_meta:
        raise ParseError(lineno, f"more than {max_meta} HELP/TYPE names")
    target[name] = value
    return 0


cdef Py_ssize_t _label_block_end(const char *line, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Index of the `}` closing a label block (quotes and escapes respected), or -1."""
    cdef bint quoted = False
    while i < n:
        if quoted:
            if line[i] == b'\\':
                i += 1
            elif line[i] == b'"':
                quoted = False
        elif line[i] == b'"':
            quoted = True
        elif line[i] == b'}':
            return i
        i += 1
    return -1


cdef class _Reuse:
    """The previous sample's strings, offered to the next one by position."""
    cdef object name
    cdef tuple labels
    cdef dict label_sets  # raw bytes between the braces -> parsed labels (this parse only)

    def __cinit__(self):
        self.labels = ()
        self.label_sets = {}

    cdef tuple sample(self, const char *line, Py_ssize_t i, Py_ssize_t n, Py_ssize_t lineno):
        cdef Py_ssize_t name_start = i, name_end
        cdef double value
        cdef Py_ssize_t v0, v1, t0, t1, end
        if not (i < n and _name_start(line[i])):
            raise ParseError(lineno, "invalid metric name")
        i += 1
        while i < n and _name_char(line[i]):
            i += 1
        name_end = i
        if _same_text(self.name, line + name_start, name_end - name_start):
            name = self.name
        else:
            name = line[name_start:name_end].decode("ascii")
            self.name = name
        i = _skip_blanks(line, i, n)
        labels = ()
        if i < n and line[i] == b'{':
            # Exporters repeat whole label sets across families (every DCGM field of a GPU
            # carries the same labels): look the raw block up before parsing it.
            end = _label_block_end(line, i + 1, n)
            if end >= 0:
                raw = line[i + 1:end]
                labels = self.label_sets.get(raw)
                if labels is not None:
                    self.labels = labels
                    i = end + 1
                else:
                    i = self._labels(line, i + 1, n, lineno)
                    labels = self.labels
                    self.label_sets[raw] = labels
            else:
                i = self._labels(line, i + 1, n, lineno)  # raises the precise error
                labels = self.labels
        elif i == name_end:
            raise ParseError(lineno, "expected a space between the metric name and the value")
        i = _skip_blanks(line, i, n)
        while n > i and _blank(line[n - 1]):
            n -= 1
        if i == n:
            raise ParseError(lineno, "missing value")
        v0 = i
        while i < n and not _blank(line[i]):
            i += 1
        v1 = i
        i = _skip_blanks(line, i, n)
        ts = None
        if i < n:
            t0 = i
            while i < n and not _blank(line[i]):
                i += 1
            t1 = i
            if i < n:
                raise ParseError(lineno, "unexpected text after the timestamp")
            value = _number(line + v0, v1 - v0, lineno, "value", True)
            ts = _number(line + t0, t1 - t0, lineno, "timestamp", False)
        else:
            value = _number(line + v0, v1 - v0, lineno, "value", True)
        return (name, labels, value, ts)

    cdef Py_ssize_t _labels(self, const char *line, Py_ssize_t i, Py_ssize_t n, Py_ssize_t lineno) except -1:
        """Parses labels after `{`, leaves them in self.labels, returns the index after `}`."""
        cdef tuple prev = self.labels
        cdef Py_ssize_t nprev = PyTuple_GET_SIZE(prev)
        cdef Py_ssize_t count = 0, k0, k1, j, q
        cdef bint same = True, escaped
        cdef list pairs = []
        cdef object pk, pv, pair
        cdef set seen = None
        while True:
            i = _skip_blanks(line, i, n)
            if i < n and line[i] == b'}':
                i += 1
                break
            if not (i < n and _label_start(line[i])):
                raise ParseError(lineno, "invalid label name")
            k0 = i
            i += 1
            while i < n and _label_char(line[i]):
                i += 1
            k1 = i
            if count < nprev:
                pair = <object>PyTuple_GET_ITEM(prev, count)
                pk = <object>PyTuple_GET_ITEM(pair, 0)
                pv = <object>PyTuple_GET_ITEM(pair, 1)
            else:
                pair = pk = pv = None
            if _same_text(pk, line + k0, k1 - k0):
                key = pk
            else:
                key = line[k0:k1].decode("ascii")
                pair = None
            if count < 16:
                for q in range(count):
                    if (<object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(pairs, q), 0)) == key:
                        raise ParseError(lineno, f"duplicate label {key}")
            else:
                # Many labels (hostile input): a set keeps the check linear.
                if seen is None:
                    seen = {(<tuple>p)[0] for p in pairs}
                if key in seen:
                    raise ParseError(lineno, f"duplicate label {key}")
                seen.add(key)
            i = _skip_blanks(line, i, n)
            if i >= n or line[i] != b'=':
                raise ParseError(lineno, f"expected '=' after label {key}")
            i = _skip_blanks(line, i + 1, n)
            if i >= n or line[i] != b'"':
                raise ParseError(lineno, f"expected '\"' to open the value of label {key}")
            j = i + 1
            escaped = False
            while True:
                if j >= n:
                    raise ParseError(lineno, f"unterminated value of label {key}")
                if line[j] == b'"':
                    break
                if line[j] == b'\\':
                    escaped = True
                    j += 2
                else:
                    j += 1
            if escaped:
                text = _unescape(line + i + 1, j - i - 1)
                value = _decode(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), lineno, f"value of label {key}")
                if pv is not None and value == pv:
                    value = pv
                else:
                    pair = None
            elif _same_text(pv, line + i + 1, j - i - 1):
                value = pv
            else:
                value = _decode(line + i + 1, j - i - 1, lineno, f"value of label {key}")
                pair = None
            if pair is None:
                pair = (key, value)
                same = False
            pairs.append(pair)
            count += 1
            i = _skip_blanks(line, j + 1, n)
            if i < n and line[i] == b',':
                i += 1
                continue
            if i < n and line[i] == b'}':
                i += 1
                break
            raise ParseError(lineno, f"expected ',' or '}}' after label {key}")
        if not (same and count == nprev):
            self.labels = tuple(pairs)
        return i

