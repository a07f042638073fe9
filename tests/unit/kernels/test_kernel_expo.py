"""Exposition encoder: both implementations agree byte for byte, parse back with
prometheus_client, lint clean with promtool, and keep prefixes only for live series."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
from gpulse import _expo_py
from gpulse.family import Family
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from .families import VALUES, families, gpu_node_families
from .impls import both

pytestmark = pytest.mark.kernels


@settings(max_examples=150, deadline=None)
@given(ticks=st.lists(families(), min_size=1, max_size=4), openmetrics=st.booleans())
def test_compiled_and_pure_render_identical_bytes(ticks, openmetrics):
    compiled, pure = both("expo")
    c_enc, p_enc = compiled.ExpositionEncoder(openmetrics), pure.ExpositionEncoder(openmetrics)
    for fams in ticks:  # several renders: series appear, vanish and change between ticks
        assert c_enc.render(fams) == p_enc.render(fams)
        assert bytes(c_enc.render_view(fams)) == bytes(p_enc.render_view(fams))
        assert c_enc.series_cached == p_enc.series_cached


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_value_text_identical_and_round_trips(v):
    compiled, pure = both("expo")
    text = compiled.format_value(v)
    assert text == pure.format_value(v)
    assert float(text) == v or (math.isnan(v) and math.isnan(float(text)))


@pytest.mark.parametrize(
    "value, text",
    [(0.0, "0"), (-0.0, "0"), (42.0, "42"), (-7.0, "-7"), (85899345920.0, "85899345920"), (999999999999999.0, "999999999999999"),
     (1e15, "1000000000000000.0"), (1e16, "1e+16"), (1.2e17, "1.2e+17"), (0.5, "0.5"), (1e-4, "0.0001"), (1e-5, "1e-05"),
     (123.456, "123.456"), (1e300, "1e+300"), (5e-324, "5e-324"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)
def test_value_text(expo, value, text):
    assert expo.format_value(value) == text


def _values_by_series(parsed):
    out = {}
    for fam in parsed:
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _expected(fams):
    out = {}
    for fam in fams:
        for lv, v in fam.samples:
            labels = tuple(sorted((k, x) for k, x in zip(fam.labelnames, lv) if x != ""))
            if fam.type != "histogram":
                out[(fam.name, labels)] = v
                continue
            counts, total = v
            les = [_expo_py.format_le(b) for b in fam.buckets] + ["+Inf"]
            for le, count in zip(les, counts):
                out[(fam.name + "_bucket", tuple(sorted(labels + (("le", le),))))] = count
            out[(fam.name + "_sum", labels)] = total
            out[(fam.name + "_count", labels)] = counts[-1]
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


@settings(max_examples=100, deadline=None)
@given(families())
def test_text_render_parses_back_with_prometheus_client(fams):
    for impl in both("expo"):
        body = impl.ExpositionEncoder().render(fams).decode()
        parsed = _values_by_series(text_parse(body))
        _same(parsed, _expected(fams))


@settings(max_examples=100, deadline=None)
@given(families())
def test_openmetrics_render_parses_back_with_prometheus_client(fams):
    for impl in both("expo"):
        body = impl.ExpositionEncoder(openmetrics=True).render(fams).decode()
        assert body.endswith("# EOF\n")
        parsed = _values_by_series(om_parse(body))
        _same(parsed, _expected(fams))


def test_gpu_node_parses_back_including_types(expo):
    fams = gpu_node_families()
    parsed = {f.name: f for f in text_parse(expo.ExpositionEncoder().render(fams).decode())}
    assert parsed["gpulse_gpu_xid_errors"].type == "counter"
    assert parsed["gpulse_gpu_info"].type == "gauge"  # info renders as gauge in text 0.0.4
    assert parsed["gpulse_gpu_info"].documentation == 'Identity of each GPU "as seen" by NVML.\nOne series per GPU.'
    om = {f.name: f for f in om_parse(expo.ExpositionEncoder(openmetrics=True).render(fams).decode())}
    assert om["gpulse_gpu"].type == "info"
    assert om["gpulse_gpu_xid_errors"].type == "counter"
    mig = [s for s in parsed["gpulse_gpu_memory_used_bytes"].samples if "gpu_instance_id" in s.labels]
    assert len(mig) == 28  # empty MIG labels are not written on whole-GPU series


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make deb-deps installs Debian's prometheus)")
def test_promtool_check_metrics_passes(expo):
    # promtool lints text 0.0.4 only; OpenMetrics is checked by prometheus_client's parser above.
    body = expo.ExpositionEncoder().render(gpu_node_families())
    res = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def test_prefixes_live_only_while_the_series_lives(expo):
    enc = expo.ExpositionEncoder()
    fams = gpu_node_families()
    total = sum(len(f.samples) for f in fams)
    enc.render(fams)
    assert enc.series_cached == total
    pods = fams[-1]
    pods.samples = pods.samples[:10]  # 54 pods went away
    body = enc.render(fams)
    assert enc.series_cached == total - 54
    assert body.count(b"gpulse_pod_gpu_utilization_ratio{") == 10
    enc.render(fams[:1])  # whole families went away
    assert enc.series_cached == len(fams[0].samples)


def test_changed_values_and_reordered_series_render_correctly(expo):
    enc = expo.ExpositionEncoder()
    fam = Family("m", "gauge", "h", ("k",))
    fam.samples = [(("a",), 1.0), (("b",), 2.0), (("c",), 3.0)]
    enc.render([fam])
    fam.samples = [(("c",), 30.0), (("a",), 10.0), (("d",), 40.0)]
    assert enc.render([fam]) == b'# HELP m h\n# TYPE m gauge\nm{k="c"} 30\nm{k="a"} 10\nm{k="d"} 40\n'
    fam2 = Family("m", "gauge", "new help", ("k",), [(("a",), 0.25)])
    assert enc.render([fam2]) == b'# HELP m new help\n# TYPE m gauge\nm{k="a"} 0.25\n'


def test_view_is_never_overwritten_while_held(expo):
    enc = expo.ExpositionEncoder()
    fam = Family("m", "gauge", "h", ("k",))
    views = []
    for tick in range(10):  # more views held than the pool keeps
        fam.samples = [((str(i),), float(tick * 1000 + i)) for i in range(200)]
        views.append((enc.render_view([fam]), enc.render([fam])))
    for view, copy in views:
        assert bytes(view) == copy
        assert view.readonly
    del views
    fam.samples = [(("x",), 1.0)]
    assert bytes(enc.render_view([fam])) == b'# HELP m h\n# TYPE m gauge\nm{k="x"} 1\n'


@pytest.mark.parametrize(
    "fam, message",
    [
        (Family("bad-name", "gauge", "h", (), [((), 1.0)]), "invalid metric name 'bad-name'"),
        (Family("m", "summary", "h", (), [((), 1.0)]), "unknown metric type 'summary'"),
        (Family("m", "histogram", "h", (), [((), 1.0)], (1.0,)), "histogram value must be"),
        (Family("m", "histogram", "h", (), [((), ((1.0,), 1.0))], (1.0,)), "histogram needs 2 cumulative counts"),
        (Family("m", "histogram", "h", (), [((), ((1.0, "x"), 1.0))], (1.0,)), "sample value 'x' is not a number"),
        (Family("m", "histogram", "h", ("le",), [(("1",), ((1.0,), 1.0))], ()), "cannot have a label named 'le'"),
        (Family("m", "histogram", "h", (), [((), ((1.0, 1.0), 1.0))], (2.0, 1.0)), "buckets must be finite and increasing"),
        (Family("m", "histogram", "h", (), [((), ((1.0, 1.0), 1.0))], (math.inf,)), "buckets must be finite and increasing"),
        (Family("m", "histogram", "h", (), [((), ((1.0, 1.0), 1.0))], [1.0]), "buckets must be a tuple of numbers"),
        (Family("m", "histogram", "h", (), [((), ((1.0, 1.0), 1.0))], (-1.0,)), "buckets must not be negative"),
        (Family("m", "histogram", "h", ("a",), [(["x"], ((1.0,), 1.0))], ()), "label values must be a tuple"),
        (Family("m", "gauge", "h", ("bad-label",), [(("x",), 1.0)]), "invalid label name 'bad-label'"),
        (Family("m", "gauge", "h", ("a", "b"), [(("x",), 1.0)]), "1 label values for 2 label names"),
        (Family("m", "gauge", "h", ("a",), [(["x"], 1.0)]), "label values must be a tuple"),
        (Family("m", "gauge", "h", ("a",), [((3,), 1.0)]), "label a value 3 is not a str"),
        (Family("m", "gauge", "h", ("a",), [(("x",), "1.0")]), "sample value '1.0' is not a number"),
        (Family("m", "gauge", "h", ("a",), [(("x",), None)]), "sample value None is not a number"),
    ],
)
def test_bad_families_get_a_clear_error_and_the_encoder_recovers(expo, fam, message):
    enc = expo.ExpositionEncoder()
    good = Family("ok", "gauge", "h", ("a",), [(("x",), 2.0)])
    enc.render([good])
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace("[", r"\[")):
        enc.render([good, fam])
    assert enc.render([good]) == b'# HELP ok h\n# TYPE ok gauge\nok{a="x"} 2\n'


def test_integer_values_are_accepted(expo):
    fam = Family("m", "gauge", "h", (), [((), 3), ((), True)])
    assert expo.ExpositionEncoder().render([fam]).endswith(b"m 3\nm 1\n")


# --- histograms -----------------------------------------------------------------------

STARTUP_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def startup_histogram():
    fam = Family("gpulse_workload_startup_seconds", "histogram", "Time from scheduled to model ready.",
                 ("namespace", "workload", "start"), buckets=STARTUP_BUCKETS)
    fam.add_histogram(("llm", "vllm", "initial"), (0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 4), 95.5 + 4000)
    fam.add_histogram(("llm", "vllm", "restart"), (0,) * 11, 0)
    fam.add_histogram(("llm", "", "initial"), (1,) * 11, 0.25)
    return fam


def test_histogram_text(expo):
    body = expo.ExpositionEncoder().render([startup_histogram()]).decode()
    lines = body.splitlines()
    assert lines[:2] == ["# HELP gpulse_workload_startup_seconds Time from scheduled to model ready.",
                         "# TYPE gpulse_workload_startup_seconds histogram"]
    assert lines[2:16] == [
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="5.0"} 0',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="10.0"} 0',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="20.0"} 0',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="30.0"} 1',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="60.0"} 2',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="120.0"} 3',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="300.0"} 3',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="600.0"} 3',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="1800.0"} 3',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="3600.0"} 3',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="initial",le="+Inf"} 4',
        'gpulse_workload_startup_seconds_sum{namespace="llm",workload="vllm",start="initial"} 4095.5',
        'gpulse_workload_startup_seconds_count{namespace="llm",workload="vllm",start="initial"} 4',
        'gpulse_workload_startup_seconds_bucket{namespace="llm",workload="vllm",start="restart",le="5.0"} 0',
    ]
    # An empty label value is not written, on the bucket lines as everywhere.
    assert 'gpulse_workload_startup_seconds_sum{namespace="llm",start="initial"} 0.25' in lines


@pytest.mark.parametrize("bound, text", [(5.0, "5.0"), (0.0, "0.0"), (-0.0, "0.0"), (0.25, "0.25"), (1e-05, "1e-05"),
                                         (3600, "3600.0"), (1e15, "1000000000000000.0"), (1e16, "1e+16"),
                                         (2.5, "2.5"), (math.inf, "+Inf")])
def test_le_is_a_canonical_number(expo, bound, text):
    assert expo.format_le(bound) == text


def test_histogram_parses_back_in_both_formats_with_types(expo):
    fam = startup_histogram()
    text = {f.name: f for f in text_parse(expo.ExpositionEncoder().render([fam]).decode())}
    om = {f.name: f for f in om_parse(expo.ExpositionEncoder(openmetrics=True).render([fam]).decode())}
    for parsed in (text, om):
        h = parsed["gpulse_workload_startup_seconds"]
        assert h.type == "histogram"
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in h.samples}
        assert samples[("gpulse_workload_startup_seconds_count",
                        (("namespace", "llm"), ("start", "initial"), ("workload", "vllm")))] == 4
        assert samples[("gpulse_workload_startup_seconds_bucket",
                        (("le", "60.0"), ("namespace", "llm"), ("start", "initial"), ("workload", "vllm")))] == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make deb-deps installs Debian's prometheus)")
def test_promtool_check_metrics_passes_with_a_histogram(expo):
    body = expo.ExpositionEncoder().render([*gpu_node_families(), startup_histogram()])
    res = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def test_histogram_series_come_and_go_with_the_rest(expo):
    enc = expo.ExpositionEncoder()
    fam = startup_histogram()
    gauge = Family("g", "gauge", "h", ("k",), [(("a",), 1.0)])
    enc.render([gauge, fam])
    assert enc.series_cached == 4
    fam.samples = fam.samples[:1]
    body = enc.render([gauge, fam])
    assert enc.series_cached == 2 and body.count(b"_count{") == 1
    fam.buckets = (1.0,)  # new bounds: new prefixes
    fam.samples = [(("x", "y", "z"), ((1.0, 2.0), 3.0))]
    assert enc.render([fam]).endswith(b'_bucket{namespace="x",workload="y",start="z",le="1.0"} 1\n'
                                      b'gpulse_workload_startup_seconds_bucket{namespace="x",workload="y",start="z",le="+Inf"} 2\n'
                                      b'gpulse_workload_startup_seconds_sum{namespace="x",workload="y",start="z"} 3\n'
                                      b'gpulse_workload_startup_seconds_count{namespace="x",workload="y",start="z"} 2\n')
    assert enc.series_cached == 1
