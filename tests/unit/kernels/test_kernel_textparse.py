"""Text-format parser: both implementations agree value for value and error line for error
line; results match prometheus_client; hostile input fails fast with a clear error."""

from __future__ import annotations

import csv
import math
import pathlib

import pytest
from gpulse import _expo_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families as text_parse

from tests.conftest import shared_path

from .families import families, gpu_node_families
from .impls import both

pytestmark = pytest.mark.kernels



def _run(mod, data, **kw):
    try:
        return ("ok", mod.parse_exposition(data, **kw))
    except mod.ParseError as e:
        assert str(e).startswith(f"line {e.lineno}: ")
        return ("error", e.lineno)


def _canon(result):
    if result[0] == "error":
        return result
    exp = result[1]
    samples = [(n, l, "nan" if v != v else v, t) for n, l, v, t in exp.samples]
    return ("ok", samples, exp.types, exp.helps)


def _agree(data, **kw):
    compiled, pure = both("textparse")
    a, b = _canon(_run(compiled, data, **kw)), _canon(_run(pure, data, **kw))
    assert a == b
    return a


@settings(max_examples=150, deadline=None)
@given(families(), st.booleans())
def test_rendered_families_parse_to_the_same_values_as_prometheus_client(fams, with_timestamps):
    body = _expo_py.ExpositionEncoder().render(fams).decode()
    if with_timestamps:
        body = "".join(line + (" 1700000000000" if line and not line.startswith("#") else "") + "\n" for line in body.split("\n")[:-1])
    ok, samples, types, helps = _agree(body)
    expected = [(s.name, tuple(sorted(s.labels.items())), s.value, s.timestamp) for f in text_parse(body) for s in f.samples]
    got = [(n, tuple(sorted(l)), v, t) for n, l, v, t in samples]
    assert len(got) == len(expected)
    for (n1, l1, v1, t1), (n2, l2, v2, t2) in zip(got, expected):
        assert (n1, l1) == (n2, l2)
        assert v1 == v2 or (v1 == "nan" and math.isnan(v2))
        assert (t1 is None) == (t2 is None) and (t1 is None or t1 / 1000 == float(t2))
    assert types == {f.name: ("gauge" if f.type == "info" else f.type) for f in fams if f.samples}
    assert helps == {f.name: f.help.lstrip(" ") for f in fams if f.samples}  # blanks before HELP text are a separator, as in Go


GRAMMAR_PIECES = st.sampled_from(
    [b"m", b"m_total", b":x", b"9bad", b" ", b"\t", b"{", b"}", b",", b"=", b'"', b"\\", b"\\n", b'\\"', b"a", b"le",
     b"1", b"-2.5e3", b"+Inf", b"nan", b"NaN", b".5", b"1.", b"e", b"x", b"\n", b"# HELP ", b"# TYPE ", b"gauge", b"# EOF",
     b"# ", b"\xff", b"\xc3\xa9", b"\r", b"0x1p3", b"1_000"]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GRAMMAR_PIECES, max_size=40).map(b"".join))
def test_grammar_fuzz_both_agree(data):
    _agree(data)
    _agree(data + b"\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_both_agree(data):
    _agree(data)


def test_escapes_help_type_eof_and_timestamps(textparse):
    body = (
        b'# HELP m The \\\\ "m" \\n thing \\q\n'
        b"#  TYPE m counter\n"
        b"# a plain comment\n"
        b"# UNIT m seconds\n"
        b"\n"
        b'  m{a="x\\\\y\\"z\\n", b = "\xc3\xa9" ,} 12 1700000000000\n'
        b"m 1e-3\n"
        b"m{} NaN\n"
        b"n\t-Inf   \n"
        b"# EOF\n"
    )
    exp = textparse.parse_exposition(body)
    assert exp.helps == {"m": 'The \\ "m" \n thing \\q'}
    assert exp.types == {"m": "counter"}
    assert exp.samples[0] == ("m", (("a", 'x\\y"z\n'), ("b", "é")), 12.0, 1700000000000.0)
    assert exp.samples[1] == ("m", (), 0.001, None)
    assert math.isnan(exp.samples[2][2]) and exp.samples[2][1] == ()
    assert exp.samples[3] == ("n", (), -math.inf, None)
    assert textparse.parse_exposition("m 1\n").samples == [("m", (), 1.0, None)]
    assert textparse.parse_exposition(b"").samples == []


@pytest.mark.parametrize(
    "data, lineno, message",
    [
        (b"m 1\nm{a=\"x} 1\n", 2, "unterminated value of label a"),
        (b"m{a=\"1\",a=\"2\"} 1\n", 1, "duplicate label a"),
        (b"m{1a=\"1\"} 1\n", 1, "invalid label name"),
        (b"m{a\"1\"} 1\n", 1, "expected '=' after label a"),
        (b"m{a=1} 1\n", 1, "expected '\"' to open the value of label a"),
        (b"m{a=\"1\" b=\"2\"} 1\n", 1, "expected ',' or '}' after label a"),
        (b"m\n", 1, "expected a space between the metric name and the value"),
        (b"m{} \n", 1, "missing value"),
        (b"m 1 2 3\n", 1, "unexpected text after the timestamp"),
        (b"m 0x10\n", 1, "invalid value '0x10'"),
        (b"m 1_000\n", 1, "invalid value '1_000'"),
        (b"m 1 NaN\n", 1, "invalid timestamp 'NaN'"),
        (b"-m 1\n", 1, "invalid metric name"),
        (b"# TYPE m bogus\n", 1, "unknown metric type 'bogus'"),
        (b"# TYPE m " + b"b" * 60000 + b"\n", 1, "unknown metric type '" + "b" * 40 + "'"),  # a short line
        (b"# TYPE m gauge extra\n", 1, "unexpected text after the metric type"),
        (b"# HELP 1m x\n", 1, "HELP line without a valid metric name"),
        (b"# HELP m-x x\n", 1, "invalid metric name in HELP line"),
        (b"m{a=\"\xff\"} 1\n", 1, "value of label a is not valid UTF-8"),
        (b"m 1\nm 2\r\n", 2, "invalid value '2\\r'"),  # Prometheus fails CRLF on the value too
        (b"m 1\nm{a=\"x\"} 1 2 3", 2, "unexpected text after the timestamp"),  # the unterminated last line is read
        ("m 1\nm{a=\"\udcff\"} 1\n", 2, "text is not valid UTF-8"),
    ],
)
def test_errors_name_the_line_and_the_problem(textparse, data, lineno, message):
    with pytest.raises(textparse.ParseError) as err:
        textparse.parse_exposition(data)
    assert err.value.lineno == lineno
    assert str(err.value) == f"line {lineno}: {message}"
    assert isinstance(err.value, ValueError)


def test_every_cut_parses_as_prometheus_reads_it(textparse):
    """Prometheus reads a last line without a newline: a body cut at a line end parses to
    the lines before the cut, a cut inside a line parses that partial line or fails on it."""
    body = _expo_py.ExpositionEncoder().render(gpu_node_families(gpus=2, migs=2, pods=3))
    whole = textparse.parse_exposition(body).samples
    for cut in range(1, len(body)):
        lines = body[:cut].count(b"\n")
        if body[cut - 1] == 0x0A:
            assert textparse.parse_exposition(body[:cut]).samples == whole[:sum(
                1 for line in body[:cut].split(b"\n") if line and not line.startswith(b"#"))]
        else:
            try:
                textparse.parse_exposition(body[:cut])
            except textparse.ParseError as e:
                assert e.lineno == lines + 1


def test_prometheus_leniencies(textparse):
    """What Prometheus' scrape parser (model/textparse/promparse.go) accepts, read the same."""
    body = (
        b"\n"
        b" \t \n"                          # blanks-only line
        b"m 1\n"                             # a sample before its TYPE
        b"# TYPE m gauge\n"
        b"# TYPE m counter\n"                # repeated: the last wins
        b"#HELP m not help\n"                # no blank after '#': a comment
        b"# HELP m the help\n"
        b"# EOF\n"                           # text 0.0.4 has no end marker: a comment
        b'm{a="\\t\\d",b="y",} 2\n'       # unknown escapes kept, trailing comma
        b"\n\n"
        b"  m\t3   1700000000000  \n"
        b"m 4"                               # no final newline
    )
    exp = textparse.parse_exposition(body)
    assert exp.samples == [("m", (), 1.0, None), ("m", (("a", "\\t\\d"), ("b", "y")), 2.0, None),
                           ("m", (), 3.0, 1700000000000.0), ("m", (), 4.0, None)]
    assert exp.types == {"m": "counter"} and exp.helps == {"m": "the help"}
    assert _agree(body)[0] == "ok"
    assert textparse.parse_exposition(b"m 1").samples == [("m", (), 1.0, None)]
    assert textparse.parse_exposition(b"# HELP m x").helps == {"m": "x"}
    assert textparse.parse_exposition(b"\n\n").samples == []


def _feed(mod, chunks, wanted=None, **kw):
    try:
        p = mod.ExpositionParser(wanted, **kw)
        for c in chunks:
            p.feed(c)
        return _canon(("ok", p.close()))
    except mod.ParseError as e:
        return ("error", e.lineno, str(e), type(e).__name__)


def _chunks(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GRAMMAR_PIECES, max_size=40).map(b"".join), st.lists(st.integers(0, 400), max_size=6),
       st.sampled_from([None, ["m"], ["m_total", ":x"], []]))
def test_streaming_agrees_with_one_shot_and_between_twins(data, cuts, wanted):
    compiled, pure = both("textparse")
    chunks = _chunks(data, cuts)
    a, b = _feed(compiled, chunks, wanted), _feed(pure, chunks, wanted)
    assert a == b
    if wanted is None:
        one = _canon(_run(pure, data))
        assert (a[0], a[1] if a[0] == "error" else a[1:]) == (one[0], one[1] if one[0] == "error" else one[1:])


@settings(max_examples=100, deadline=None)
@given(families(), st.lists(st.integers(0, 100_000), max_size=8), st.data())
def test_filter_keeps_exactly_the_wanted_names(fams, cuts, data):
    body = _expo_py.ExpositionEncoder().render(fams)
    names = sorted({n for n, *_ in _expo_py_samples(body)})
    wanted = data.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    whole = parse_both(body)
    for mod in both("textparse"):
        p = mod.ExpositionParser(wanted)
        for c in _chunks(body, cuts):
            p.feed(c)
        got = p.close()
        nan_safe = _canon(("ok", got))[1]  # NaN compares unequal to itself
        assert nan_safe == _canon(("ok", whole._replace(samples=[s for s in whole.samples if s[0] in wanted])))[1]
        assert got.types == {k: v for k, v in whole.types.items() if k in wanted}
        assert got.helps == {k: v for k, v in whole.helps.items() if k in wanted}


def _expo_py_samples(body):
    from gpulse import _textparse_py

    return _textparse_py.parse_exposition(body).samples


def parse_both(body):
    compiled, pure = both("textparse")
    a, b = compiled.parse_exposition(body), pure.parse_exposition(body)
    assert _canon(("ok", a)) == _canon(("ok", b))
    return b


def test_filter_skips_unwanted_lines_unread_and_caps_kept_samples(textparse):
    junk = b"".join(b'http_requests_total{handler="/h%d",code="200"} 1\n' % i for i in range(5000))
    bad = b"other_family{this is not parsed at all\n# HELP other_family \xff\n# TYPE other_family bogus\n"
    body = b"# TYPE q gauge\nq{model=\"a\"} 3\n" + junk + bad + b"q{model=\"b\"} 4"
    p = textparse.ExpositionParser(["q"], max_samples=2)
    for i in range(0, len(body), 1000):
        p.feed(body[i:i + 1000])
    exp = p.close()
    assert exp.samples == [("q", (("model", "a"),), 3.0, None), ("q", (("model", "b"),), 4.0, None)]
    assert exp.types == {"q": "gauge"} and exp.helps == {}
    # The cap counts kept samples only, and names the line where it was passed.
    p = textparse.ExpositionParser(["q"], max_samples=1)
    with pytest.raises(textparse.SampleLimitError, match=r"^line 5006: more than 1 samples$") as err:
        p.feed(body)
        p.close()
    assert isinstance(err.value, textparse.ParseError) and err.value.lineno == 5006
    # Unfiltered, the same body fails on the bad line.
    with pytest.raises(textparse.ParseError, match=r"^line 5003: "):
        textparse.parse_exposition(body)
    # A line longer than the limit is refused while it streams in, before its newline.
    p = textparse.ExpositionParser(["q"], max_line_bytes=100)
    p.feed(b"q 1\n" + b"x" * 60)
    with pytest.raises(textparse.ParseError, match=r"^line 2: line longer than 100 bytes$"):
        p.feed(b"x" * 60)
    p = textparse.ExpositionParser()
    p.close()
    with pytest.raises(ValueError, match="after close"):
        p.feed(b"m 1\n")


def test_limits_bound_hostile_input(textparse):
    with pytest.raises(textparse.ParseError, match=r"line 1: line longer than 100 bytes"):
        textparse.parse_exposition(b"m " + b"1" * 200 + b"\n", max_line_bytes=100)
    with pytest.raises(textparse.ParseError, match=r"line 1: line longer than 100 bytes"):
        textparse.parse_exposition(b"x" * 10_000, max_line_bytes=100)  # no newline at all
    with pytest.raises(textparse.ParseError, match=r"line 4: more than 3 samples"):
        textparse.parse_exposition(b"m 1\n" * 10, max_samples=3)
    many_help = b"".join(b"# HELP m%d x\n" % i for i in range(10))
    with pytest.raises(textparse.ParseError, match=r"line 4: more than 3 HELP/TYPE names"):
        textparse.parse_exposition(many_help, max_samples=3)
    # Thousands of labels on one line stay linear (duplicate check by set past a few labels).
    labels = ",".join(f'l{i}="v"' for i in range(5000))
    exp = textparse.parse_exposition(f"m{{{labels}}} 1\n".encode())
    assert len(exp.samples[0][1]) == 5000
    with pytest.raises(textparse.ParseError, match="duplicate label l0"):
        textparse.parse_exposition(f"m{{{labels},l0=\"v\"}} 1\n".encode())
    with pytest.raises(TypeError, match="exposition must be bytes or str"):
        textparse.parse_exposition(12)


def test_dcgm_exporter_style_body(textparse):
    """A body shaped like dcgm-exporter's, built from its default counter list."""
    lines = []
    counters = pathlib.Path(shared_path("anchors", "dcgm-exporter", "default-counters.csv"))
    fields = [row for row in csv.reader(counters.read_text().splitlines()) if row and not row[0].startswith("#")]
    for field, kind, help_ in fields:
        kind = kind.strip()
        if kind == "label":
            continue
        lines += [f"# HELP {field} {help_.strip()}", f"# TYPE {field} {kind}"]
        for gpu in range(8):
            lines.append(
                f'{field}{{gpu="{gpu}",UUID="GPU-{gpu:08x}-aaaa-bbbb-cccc-dddddddddddd",pci_bus_id="00000000:{gpu:02X}:00.0",'
                f'device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",DCGM_FI_DRIVER_VERSION="550.54.15"}} {gpu * 7}'
            )
    body = ("\n".join(lines) + "\n").encode()
    exp = textparse.parse_exposition(body)
    assert len(exp.samples) == 8 * len(exp.types) > 0
    assert exp.types["DCGM_FI_DEV_SM_CLOCK"] == "gauge"
    assert exp.helps["DCGM_FI_DEV_SM_CLOCK"] == "SM clock frequency (in MHz)."
    name, labels, value, ts = exp.samples[3]
    assert dict(labels)["device"] == "nvidia3" and value == 21.0 and ts is None
    assert _agree(body)[0] == "ok"
