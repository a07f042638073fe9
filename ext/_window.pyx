# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Rolling time windows, compiled twin of agent/_window_py.py (identical results).

One fixed-capacity ring of (timestamp, value) per series key, in C arrays; aggregates
cover samples with timestamp > now - horizon and are summed oldest first, as the twin does.
"""

from libc.math cimport isfinite
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    #include <algorithm>
    /* Linear interpolation between closest ranks of the sorted values (numpy's default). */
    static double gp_quantile(double *vals, long n, double q) {
        std::stable_sort(vals, vals + n);
        double pos = q * (double)(n - 1);
        long lo = (long)pos;
        long hi = lo + 1 < n ? lo + 1 : n - 1;
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - (double)lo);
    }
    """
    double gp_quantile(double *vals, long n, double q) nogil


cdef class _Ring:
    cdef double *ts
    cdef double *vals
    cdef long cap, head, count

    def __cinit__(self, long cap):
        self.ts = <double*>malloc(cap * sizeof(double))
        self.vals = <double*>malloc(cap * sizeof(double))
        if self.ts == NULL or self.vals == NULL:
            raise MemoryError()
        self.cap = cap
        self.head = 0
        self.count = 0

    def __dealloc__(self):
        free(self.ts)
        free(self.vals)

    cdef inline void prune(self, double cutoff):
        while self.count > 0 and self.ts[self.head] <= cutoff:
            self.head = (self.head + 1) % self.cap
            self.count -= 1


cdef class WindowSet:
    """Per-key rings of timestamped samples with mean, max and quantile over the last
    `horizon` seconds (samples with t > now - horizon).

    observe() drops non-finite values (a NaN is not a measurement) and refuses a timestamp
    older than the key's last one. A full ring forgets its oldest sample. Aggregates of an
    empty window are None, so callers omit the sample.
    """

    cdef readonly double horizon
    cdef readonly long capacity
    cdef dict _rings
    cdef double *_scratch

    def __init__(self, horizon, capacity=1024):
        if not horizon > 0:
            raise ValueError(f"window horizon must be positive, got {horizon!r}")
        if capacity < 1:
            raise ValueError(f"window capacity must be at least 1, got {capacity!r}")
        self.horizon = float(horizon)
        self.capacity = int(capacity)
        self._rings = {}
        self._scratch = <double*>malloc(self.capacity * sizeof(double))
        if self._scratch == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._scratch)

    def observe(self, key, double t, double value):
        cdef _Ring ring
        cdef long last
        if not isfinite(value):
            return
        ring = self._rings.get(key)
        if ring is None:
            ring = _Ring(self.capacity)
            self._rings[key] = ring
        if ring.count > 0:
            last = (ring.head + ring.count - 1) % ring.cap
            if t < ring.ts[last]:
                raise ValueError(f"window {key!r}: sample at t={t!r} is older than the last one at t={ring.ts[last]!r}")
        if ring.count == ring.cap:
            ring.head = (ring.head + 1) % ring.cap
            ring.count -= 1
        last = (ring.head + ring.count) % ring.cap
        ring.ts[last] = t
        ring.vals[last] = value
        ring.count += 1

    cdef _Ring _live(self, key, double now):
        cdef _Ring ring = self._rings.get(key)
        if ring is None:
            return None
        ring.prune(now - self.horizon)
        return ring if ring.count > 0 else None

    def mean(self, key, double now):
        cdef _Ring ring = self._live(key, now)
        cdef double total = 0.0
        cdef long i
        if ring is None:
            return None
        for i in range(ring.count):
            total += ring.vals[(ring.head + i) % ring.cap]
        return total / ring.count

    def max(self, key, double now):
        cdef _Ring ring = self._live(key, now)
        cdef double best, x
        cdef long i
        if ring is None:
            return None
        best = ring.vals[ring.head]
        for i in range(1, ring.count):
            x = ring.vals[(ring.head + i) % ring.cap]
            if x > best:
                best = x
        return best

    def quantile(self, key, double q, double now):
        cdef _Ring ring
        cdef long i
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q!r}")
        ring = self._live(key, now)
        if ring is None:
            return None
        for i in range(ring.count):
            self._scratch[i] = ring.vals[(ring.head + i) % ring.cap]
        return gp_quantile(self._scratch, ring.count, q)

    def count(self, key, double now):
        """Number of samples in the window (0 when empty or unknown)."""
        cdef _Ring ring = self._live(key, now)
        return 0 if ring is None else ring.count

    def retain(self, keys):
        keep = set(keys)
        for key in [k for k in self._rings if k not in keep]:
            del self._rings[key]

    def __contains__(self, key):
        return key in self._rings

    def __len__(self):
        return len(self._rings)


def fold_process_samples(samples, since_us):
    """Folds NVML per-process utilization samples newer than `since_us` by PID.

    `samples` are what nvmlDeviceGetProcessUtilization (or GetProcessesUtilizationInfo)
    returns: objects with .pid, .timeStamp (µs, the driver's clock) and .smUtil (percent).
    Samples with timeStamp <= since_us were folded by an earlier call and are skipped.
    Returns {pid: (sum_sm, count, last_ts)}: mean SM utilization over the interval is
    sum_sm / count, and max(last_ts) is the `since_us` (lastSeenTimeStamp) of the next call.
    """
    cdef dict out = {}
    cdef unsigned long long since = since_us
    cdef unsigned long long ts
    cdef double sm
    for s in samples:
        ts = s.timeStamp
        if ts <= since:
            continue
        pid = s.pid
        sm = s.smUtil
        prev = out.get(pid)
        if prev is None:
            out[pid] = (sm, 1, ts)
        else:
            out[pid] = (<double>prev[0] + sm, <long>prev[1] + 1, ts if ts > <unsigned long long>prev[2] else prev[2])
    return out
