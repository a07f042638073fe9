"""Exposition encoder: both implementations agree byte for byte, parse back with
prometheus_client, lint clean with promtool, and keep prefixes only for live series."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
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
            out[(fam.name, tuple(sorted((k, x) for k, x in zip(fam.labelnames, lv) if x != "")))] = v
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
        (Family("m", "histogram", "h", (), [((), 1.0)]), "unknown metric type 'histogram'"),
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
