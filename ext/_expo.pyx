# cython: language_level=3, boundscheck=False, initializedcheck=False
# distutils: language = c++
"""Exposition encoder, compiled twin of agent/_expo_py.py (byte-identical output).

Each series' `name{labels} ` prefix is escaped and encoded once and kept while the series
lives; a render walks the samples, matches each label tuple against the same position of
the previous render (a pointer compare when the collector reuses its tuples), copies the
prefix and formats the value with std::to_chars into a pooled buffer.

Histogram families (type "histogram") take a path of their own, chosen once per family,
with the same output as the twin: `_bucket{le=...}` lines, `_sum`, `_count`.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport Py_EQ, PyObject_RichCompareBool
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    # Borrowed-pointer forms for the per-sample loop: no reference counting per series.
    Py_ssize_t Py_REFCNT(PyObject *o)
    PyObject *GP_LIST_ITEM "PyList_GET_ITEM" (PyObject *l, Py_ssize_t i)
    PyObject *GP_TUPLE_ITEM "PyTuple_GET_ITEM" (PyObject *t, Py_ssize_t i)
    Py_ssize_t GP_TUPLE_SIZE "PyTuple_GET_SIZE" (PyObject *t)
    bint GP_IS_TUPLE "PyTuple_CheckExact" (PyObject *o)
    bint GP_IS_FLOAT "PyFloat_CheckExact" (PyObject *o)
    double GP_FLOAT "PyFloat_AS_DOUBLE" (PyObject *o)
    char *GP_BYTES "PyBytes_AS_STRING" (PyObject *b)
    Py_ssize_t GP_BYTES_SIZE "PyBytes_GET_SIZE" (PyObject *b)
    int GP_EQUAL "PyObject_RichCompareBool" (PyObject *a, PyObject *b, int op) except -1

cdef extern from *:
    """
    #include <charconv>
    #include <cmath>
    #include <cstring>

    /* Writes v the way agent/_expo_py.format_value does: NaN, +Inf, -Inf; integral values
       below 1e15 as integers; everything else as Python's repr() (shortest round-trip digits,
       exponent form when the decimal point falls outside (-4, 16]). Needs 32 bytes. */
    static int gp_format_double(char *out, double v) {
        if (std::isnan(v)) { std::memcpy(out, "NaN", 3); return 3; }
        if (std::isinf(v)) { std::memcpy(out, v > 0 ? "+Inf" : "-Inf", 4); return 4; }
        if (v > -1e15 && v < 1e15) {
            long long i = (long long)v;
            if ((double)i == v) {
                static const char pairs[] =
                    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                    "8081828384858687888990919293949596979899";
                char *p = out;
                unsigned long long u;
                if (i < 0) { *p++ = '-'; u = (unsigned long long)(-i); } else { u = (unsigned long long)i; }
                char tmp[24]; int n = 24;
                while (u >= 100) { unsigned d = (unsigned)(u % 100) * 2; u /= 100; tmp[--n] = pairs[d + 1]; tmp[--n] = pairs[d]; }
                if (u >= 10) { unsigned d = (unsigned)u * 2; tmp[--n] = pairs[d + 1]; tmp[--n] = pairs[d]; }
                else tmp[--n] = (char)('0' + u);
                std::memcpy(p, tmp + n, 24 - n);
                return (int)(p - out) + 24 - n;
            }
        }
        char sci[40];
        auto res = std::to_chars(sci, sci + sizeof(sci), v, std::chars_format::scientific);
        const char *s = sci, *end = res.ptr;
        char *p = out;
        if (*s == '-') { *p++ = '-'; s++; }
        char digits[20]; int nd = 0;
        while (s < end && *s != 'e') { if (*s != '.') digits[nd++] = *s; s++; }
        int exp10 = 0; s++;  /* skip 'e' */
        int neg = (*s == '-'); s++;
        while (s < end) exp10 = exp10 * 10 + (*s++ - '0');
        if (neg) exp10 = -exp10;
        int decpt = exp10 + 1;
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) {
                *p++ = '0'; *p++ = '.';
                for (int k = 0; k < -decpt; k++) *p++ = '0';
                std::memcpy(p, digits, nd); p += nd;
            } else if (decpt >= nd) {
                std::memcpy(p, digits, nd); p += nd;
                for (int k = nd; k < decpt; k++) *p++ = '0';
                *p++ = '.'; *p++ = '0';
            } else {
                std::memcpy(p, digits, decpt); p += decpt;
                *p++ = '.';
                std::memcpy(p, digits + decpt, nd - decpt); p += nd - decpt;
            }
        } else {
            *p++ = digits[0];
            if (nd > 1) { *p++ = '.'; std::memcpy(p, digits + 1, nd - 1); p += nd - 1; }
            *p++ = 'e';
            int e = exp10;
            if (e < 0) { *p++ = '-'; e = -e; } else { *p++ = '+'; }
            if (e >= 100) { *p++ = (char)('0' + e / 100); e %= 100; *p++ = (char)('0' + e / 10); *p++ = (char)('0' + e % 10); }
            else { *p++ = (char)('0' + e / 10); *p++ = (char)('0' + e % 10); }
        }
        return (int)(p - out);
    }
    """
    int gp_format_double(char *out, double v) nogil

import re as _re

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Room for one formatted value plus the newline (gp_format_double needs at most 25 bytes).
DEF VALUE_ROOM = 40
# Buffers still referenced by a caller are never reused; past this many, renders allocate.
DEF POOL_LIMIT = 4

_METRIC_NAME = _re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = _re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TYPES = ("gauge", "counter", "info", "histogram")


def format_value(double v):
    """The text of one sample value, as a render writes it."""
    cdef char out[VALUE_ROOM]
    cdef int n = gp_format_double(out, v)
    return out[:n].decode("ascii")


def escape_label_value(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _as_float(name, value):
    if value is None or isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{name}: sample value {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: sample value {value!r} is not a number") from None


def _series_prefix(name, labelnames, labelvalues):
    if type(labelvalues) is not tuple:
        raise TypeError(f"{name}: label values must be a tuple, got {type(labelvalues).__name__}")
    if len(labelvalues) != len(labelnames):
        raise ValueError(f"{name}: {len(labelvalues)} label values for {len(labelnames)} label names {labelnames}")
    pairs = []
    for k, v in zip(labelnames, labelvalues):
        if type(v) is not str:
            raise TypeError(f"{name}: label {k} value {v!r} is not a str")
        if v != "":
            pairs.append(f'{k}="{escape_label_value(v)}"')
    if pairs:
        return f"{name}{{{','.join(pairs)}}} ".encode()
    return f"{name} ".encode()


def format_le(double v):
    """A histogram bound as the `le` label writes it: +Inf, integral values with ".0"
    (OpenMetrics' canonical numbers, as client libraries write them), else repr()."""
    if v == float("inf"):
        return "+Inf"
    if -1e15 < v < 1e15 and v == <long long>v:
        return f"{<long long>v}.0"
    return repr(v)


def _histogram_les(name, labelnames, buckets):
    if "le" in labelnames:
        raise ValueError(f"{name}: a histogram cannot have a label named 'le'")
    if type(buckets) is not tuple:
        raise TypeError(f"{name}: histogram buckets must be a tuple of numbers")
    les = []
    cdef double last = -float("inf"), v
    for b in buckets:
        if type(b) is not float and type(b) is not int:
            raise TypeError(f"{name}: histogram bucket {b!r} is not a number")
        v = float(b)
        if v != v or v == float("inf") or v == -float("inf") or v <= last:
            raise ValueError(f"{name}: histogram buckets must be finite and increasing, got {buckets!r}")
        if v < 0:  # OpenMetrics forbids a _sum next to negative buckets; durations are never negative
            raise ValueError(f"{name}: histogram buckets must not be negative, got {buckets!r}")
        last = v
        les.append(format_le(v))
    les.append("+Inf")
    return tuple(les)


def _histogram_prefixes(name, labelnames, labelvalues, les):
    base = _series_prefix(name, labelnames, labelvalues)
    pairs = [f'{k}="{escape_label_value(v)}"' for k, v in zip(labelnames, labelvalues) if v != ""]
    out = [(name + "_bucket{" + ",".join([*pairs, 'le="' + le + '"']) + "} ").encode() for le in les]
    rest = base[len(name):]
    return (*out, (name + "_sum").encode() + rest, (name + "_count").encode() + rest)


def _histogram_value(name, value, Py_ssize_t n):
    if type(value) is not tuple or len(value) != 2:
        raise TypeError(f"{name}: histogram value must be (cumulative counts, sum), got {value!r}")
    counts, total = value
    if not isinstance(counts, (tuple, list)) or len(counts) != n:
        raise ValueError(f"{name}: histogram needs {n} cumulative counts (one per bucket and +Inf), got {counts!r}")
    return [_as_float(name, c) if type(c) is not float else c for c in counts], (
        _as_float(name, total) if type(total) is not float else total)


def _header(name, type_, help_, labelnames, bint openmetrics):
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


cdef class _FamilyState:
    """What a render keeps of one family: its header and, in sample order, the label
    tuples and encoded prefixes of its live series. The prefixes also sit back to back in
    one blob, so the per-tick copy reads memory sequentially."""
    cdef object key  # (type, help, labelnames): a change re-renders everything
    cdef bytes header
    cdef list keys
    cdef list prefixes
    cdef bytes blob
    cdef Py_ssize_t *offsets  # len(keys) + 1 offsets into blob
    cdef unsigned long long generation
    cdef bint histogram
    cdef object les  # histogram: the `le` texts of the bounds the prefixes were made for
    cdef dict hist  # histogram: label values -> line prefixes

    def __dealloc__(self):
        PyMem_Free(self.offsets)

    cdef int set_series(self, list keys, list prefixes) except -1:
        cdef Py_ssize_t i, n = PyList_GET_SIZE(prefixes), pos = 0
        cdef Py_ssize_t *offsets = <Py_ssize_t*>PyMem_Malloc((n + 1) * sizeof(Py_ssize_t))
        if offsets == NULL:
            raise MemoryError()
        for i in range(n):
            offsets[i] = pos
            pos += GP_BYTES_SIZE(GP_LIST_ITEM(<PyObject*>prefixes, i))
        offsets[n] = pos
        PyMem_Free(self.offsets)
        self.offsets = offsets
        self.keys = keys
        self.prefixes = prefixes
        self.blob = b"".join(prefixes)
        return 0


cdef class ExpositionEncoder:
    """Renders families to text 0.0.4 (default) or OpenMetrics 1.0.

    render() returns fresh bytes. render_view() returns a read-only memoryview of a pooled
    buffer with no copy; that buffer is reused only once nothing references the view any
    more, so a caller may keep serving it while later renders run.
    """

    cdef readonly bint openmetrics
    cdef dict _families
    cdef list _pool
    cdef unsigned long long _generation
    cdef Py_ssize_t _last_used

    def __init__(self, bint openmetrics=False):
        self.openmetrics = openmetrics
        self._families = {}
        self._pool = []
        self._generation = 0

    @property
    def series_cached(self):
        """How many series prefixes are kept (the series of the last render)."""
        return sum(len((<_FamilyState>st).keys) + (len((<_FamilyState>st).hist) if (<_FamilyState>st).histogram else 0)
                   for st in self._families.values())

    def render(self, families):
        cdef Py_ssize_t used
        buf = self._render(families)
        used = self._last_used
        return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(buf), used)

    def render_view(self, families):
        buf = self._render(families)
        return memoryview(buf)[:self._last_used].toreadonly()

    cdef bytearray _take_buffer(self):
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(self._pool)):
            # 1 = only the pool holds it: no view or caller can see it any more.
            if Py_REFCNT(PyList_GET_ITEM(self._pool, i)) == 1:
                return <bytearray>PyList_GET_ITEM(self._pool, i)
        buf = bytearray(1 << 16)
        if PyList_GET_SIZE(self._pool) < POOL_LIMIT:
            self._pool.append(buf)
        return buf

    cdef bytearray _render(self, families):
        cdef bytearray buf = self._take_buffer()
        cdef char *out = PyByteArray_AS_STRING(buf)
        cdef Py_ssize_t cap = PyByteArray_GET_SIZE(buf)
        cdef Py_ssize_t used = 0, i, n, nprev, plen
        cdef bint rebuilding
        cdef bytes header
        cdef list samples, prev_keys, prev_prefixes, new_keys, new_prefixes
        cdef dict index
        cdef _FamilyState st
        cdef PyObject *item
        cdef PyObject *vobj
        cdef PyObject *lvp
        cdef PyObject *kp
        cdef PyObject *prefp
        cdef const char *blob
        cdef Py_ssize_t *offsets
        cdef double v
        cdef bint openmetrics = self.openmetrics

        self._generation += 1
        generation = self._generation
        for fam in families:
            samples = fam.samples
            n = PyList_GET_SIZE(samples)
            if n == 0:
                continue
            name = fam.name
            labelnames = fam.labelnames
            key = (fam.type, fam.help, labelnames)
            st = self._families.get(name)
            if st is None or st.key != key:
                st = _FamilyState()
                st.key = key
                st.header = _header(name, fam.type, fam.help, labelnames, openmetrics)
                st.set_series([], [])
                st.histogram = fam.type == "histogram"
                st.hist = {}
                self._families[name] = st
            st.generation = generation
            header = st.header
            plen = PyBytes_GET_SIZE(header)
            if used + plen > cap:
                cap = _grow(buf, used + plen)
                out = PyByteArray_AS_STRING(buf)
            memcpy(out + used, PyBytes_AS_STRING(header), plen)
            used += plen
            if st.histogram:
                body = _histogram_body(st, name, labelnames, getattr(fam, "buckets", None), samples)
                plen = PyBytes_GET_SIZE(body)
                if used + plen > cap:
                    cap = _grow(buf, used + plen)
                    out = PyByteArray_AS_STRING(buf)
                memcpy(out + used, PyBytes_AS_STRING(body), plen)
                used += plen
                continue

            prev_keys = st.keys
            prev_prefixes = st.prefixes
            nprev = PyList_GET_SIZE(prev_keys)
            blob = PyBytes_AS_STRING(st.blob)
            offsets = st.offsets
            rebuilding = False
            new_keys = new_prefixes = None
            index = None
            for i in range(n):
                item = GP_LIST_ITEM(<PyObject*>samples, i)
                if GP_IS_TUPLE(item) and GP_TUPLE_SIZE(item) == 2:
                    lvp = GP_TUPLE_ITEM(item, 0)
                    vobj = GP_TUPLE_ITEM(item, 1)
                else:
                    lv, vtmp = <object>item
                    lvp = <PyObject*>lv
                    vobj = <PyObject*>vtmp
                if GP_IS_FLOAT(vobj):
                    v = GP_FLOAT(vobj)
                else:
                    v = _as_float(name, <object>vobj)
                if not rebuilding:
                    if i < nprev:
                        kp = GP_LIST_ITEM(<PyObject*>prev_keys, i)
                        if _same_labels(lvp, kp):
                            # Same series at the same place as last time: the common case.
                            plen = offsets[i + 1] - offsets[i]
                            if used + plen + VALUE_ROOM > cap:
                                cap = _grow(buf, used + plen + VALUE_ROOM)
                                out = PyByteArray_AS_STRING(buf)
                            memcpy(out + used, blob + offsets[i], plen)
                            used += plen
                            used += gp_format_double(out + used, v)
                            out[used] = b'\n'
                            used += 1
                            continue
                    # The series set changed: from here on, look prefixes up by labels.
                    rebuilding = True
                    index = dict(zip(prev_keys, prev_prefixes))
                    new_keys = prev_keys[:i]
                    new_prefixes = prev_prefixes[:i]
                lv = <object>lvp
                if type(lv) is not tuple:
                    _series_prefix(name, labelnames, lv)  # raises the clear error
                p = index.get(lv)
                if p is None:
                    p = _series_prefix(name, labelnames, lv)
                new_keys.append(lv)
                new_prefixes.append(p)
                prefp = <PyObject*>p  # new_prefixes keeps it alive
                plen = GP_BYTES_SIZE(prefp)
                if used + plen + VALUE_ROOM > cap:
                    cap = _grow(buf, used + plen + VALUE_ROOM)
                    out = PyByteArray_AS_STRING(buf)
                memcpy(out + used, GP_BYTES(prefp), plen)
                used += plen
                used += gp_format_double(out + used, v)
                out[used] = b'\n'
                used += 1
            if rebuilding:
                st.set_series(new_keys, new_prefixes)
            elif n < nprev:
                st.set_series(prev_keys[:n], prev_prefixes[:n])
        if openmetrics:
            if used + 6 > cap:
                cap = _grow(buf, used + 6)
                out = PyByteArray_AS_STRING(buf)
            memcpy(out + used, b"# EOF\n", 6)
            used += 6
        # Families not rendered this time are gone, and so are their series.
        stale = [k for k, s in self._families.items() if (<_FamilyState>s).generation != generation]
        for k in stale:
            del self._families[k]
        self._last_used = used
        return buf


cdef bytes _histogram_body(_FamilyState st, name, labelnames, buckets, list samples):
    """One histogram family's sample lines; prefixes kept per series while it lives."""
    les = _histogram_les(name, labelnames, buckets)
    if les != st.les:
        st.les = les
        st.hist = {}
    cdef dict prev = st.hist, seen = {}
    cdef list parts = []
    cdef Py_ssize_t n = len(les)
    for labelvalues, value in samples:
        counts, total = _histogram_value(name, value, n)
        if type(labelvalues) is not tuple:
            _series_prefix(name, labelnames, labelvalues)
        lines = prev.get(labelvalues)
        if lines is None:
            lines = _histogram_prefixes(name, labelnames, labelvalues, les)
        seen[labelvalues] = lines
        for prefix, count in zip(lines[:-2], counts):
            parts.append(prefix)
            parts.append(format_value(count).encode())
            parts.append(b"\n")
        parts.append(lines[-2])
        parts.append(format_value(total).encode())
        parts.append(b"\n")
        parts.append(lines[-1])
        parts.append(format_value(counts[-1]).encode())
        parts.append(b"\n")
    st.hist = seen
    return b"".join(parts)


cdef inline bint _same_labels(PyObject *a, PyObject *b) except -1:
    """Tuple equality without a call per tuple: label values are usually the very same
    str objects as last tick, so most elements compare by pointer alone."""
    cdef Py_ssize_t k, n
    cdef PyObject *x
    cdef PyObject *y
    if a == b:
        return True
    if not (GP_IS_TUPLE(a) and GP_IS_TUPLE(b)):
        return GP_EQUAL(a, b, Py_EQ)
    n = GP_TUPLE_SIZE(a)
    if n != GP_TUPLE_SIZE(b):
        return False
    for k in range(n):
        x = GP_TUPLE_ITEM(a, k)
        y = GP_TUPLE_ITEM(b, k)
        if x != y and not GP_EQUAL(x, y, Py_EQ):
            return False
    return True


cdef Py_ssize_t _grow(bytearray buf, Py_ssize_t need) except -1:
    cdef Py_ssize_t size = PyByteArray_GET_SIZE(buf)
    while size < need:
        size = size + (size >> 1) + 4096
    PyByteArray_Resize(buf, size)
    return size
