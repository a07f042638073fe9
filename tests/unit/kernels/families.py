"""Family builders shared by the kernel tests: random (hypothesis) and GPU-node-like."""

from __future__ import annotations

import math

from gpulse.family import Family
from hypothesis import strategies as st

# Every character the exposition escapes, plus non-ASCII and blanks.
LABEL_TEXT = st.text(alphabet=st.sampled_from(list('ab\\"\n{}=,# \té€😀0')), max_size=8)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**18), max_value=10**18).map(float),
    st.sampled_from([0.0, -0.0, 1e15, -1e15, 1e16, 1e-5, 1e-4, 5e-324, 1e300, 1.2e17, math.nan, math.inf, -math.inf]),
)


BOUNDS = st.lists(st.one_of(st.floats(min_value=0, max_value=1e18),
                            st.sampled_from([0.0, 0.005, 1.0, 5.0, 1e15, 1e16, 3600.0])),
                  max_size=6, unique=True).map(lambda b: tuple(sorted(set(b))))


@st.composite
def histogram_value(draw, nbuckets):
    """(cumulative counts per bound and +Inf, sum), as a collector builds them."""
    steps = draw(st.lists(st.integers(min_value=0, max_value=10**6), min_size=nbuckets + 1, max_size=nbuckets + 1))
    counts, total = [], 0
    for step in steps:
        total += step
        counts.append(float(total))
    return tuple(counts), draw(st.floats(min_value=0, max_value=1e12))


@st.composite
def families(draw, max_families=4, max_series=6, histograms=True):
    out = []
    # Histograms get a "zz" prefix no other family has: their _bucket/_sum/_count names
    # must not meet another family's name.
    names = draw(st.lists(st.from_regex(r"[a-y][a-z0-9_]{0,10}", fullmatch=True), min_size=0, max_size=max_families, unique=True))
    for base in names:
        type_ = draw(st.sampled_from(["gauge", "counter", "info", "histogram"] if histograms else ["gauge", "counter", "info"]))
        name = {"gauge": base, "counter": base + "_total", "info": base + "_info", "histogram": "zz" + base}[type_]
        labelnames = tuple(draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n != "le"),
                                         max_size=4, unique=True)))
        help_ = draw(st.text(alphabet=st.sampled_from(list('ab \\\n"é')), max_size=12))
        fam = Family(name, type_, help_, labelnames)
        rows = draw(st.lists(st.tuples(*[LABEL_TEXT for _ in labelnames]), max_size=max_series, unique=True))
        if type_ == "histogram":
            fam.buckets = draw(BOUNDS)
            for labelvalues in rows:
                fam.samples.append((labelvalues, draw(histogram_value(len(fam.buckets)))))
            out.append(fam)
            continue
        for labelvalues in rows:
            value = 1.0 if type_ == "info" else draw(VALUES)
            if type_ == "counter":  # counters are never negative or NaN (OpenMetrics rejects them)
                value = 0.0 if math.isnan(value) else abs(value)
            fam.samples.append((labelvalues, value))
        out.append(fam)
    return out


def gpu_node_families(gpus=8, migs=7, pods=64):
    """A small GPU/MIG/pod node, shaped like the reference node's families."""
    fams = []
    gpu_labels = ("gpu", "uuid", "model", "gpu_instance_profile", "gpu_instance_id")
    temp = Family("gpulse_gpu_temperature_celsius", "gauge", "GPU core temperature.", gpu_labels[:3])
    mem = Family("gpulse_gpu_memory_used_bytes", "gauge", "Framebuffer memory used.", gpu_labels)
    xid = Family("gpulse_gpu_xid_errors_total", "counter", "XID errors seen since start.", ("gpu", "uuid", "xid"))
    info = Family("gpulse_gpu_info", "info", 'Identity of each GPU "as seen" by NVML.\nOne series per GPU.', ("gpu", "uuid", "model", "driver"))
    pod = Family("gpulse_pod_gpu_utilization_ratio", "gauge", "Per-pod share of GPU utilization.", ("namespace", "pod", "container", "gpu", "uuid"))
    for g in range(gpus):
        uuid = f"GPU-{g:08x}-1111-2222-3333-444455556666"
        temp.add((str(g), uuid, "NVIDIA H100 80GB HBM3"), 40 + g)
        info.add((str(g), uuid, "NVIDIA H100 80GB HBM3", "550.54.15"), 1)
        xid.add((str(g), uuid, "79"), g % 2)
        mem.add((str(g), uuid, "NVIDIA H100 80GB HBM3", "", ""), 2**33 + g * 12345)
        for m in range(migs if g < gpus // 2 else 0):
            mem.add((str(g), uuid, "NVIDIA H100 80GB HBM3", "1g.10gb", str(m)), 1.5e9 + m)
    for p in range(pods):
        pod.add(("team-" + str(p % 5), f"job-{p:05d}-3fa9c1-worker-2", "main", str(p % gpus), f"GPU-{p % gpus:08x}"), (p % 10) / 10 + 0.001)
    fams.extend([temp, mem, xid, info, pod])
    return fams
