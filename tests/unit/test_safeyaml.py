"""Bounded YAML: depth, alias expansion, cycles, size and encoding refused in one line."""

import time

import pytest
from gpulse import safeyaml


def _laughs(levels=9, width=9, mapping=False):
    if mapping:
        keys = "abcdefghi"[:width]
        lines = ["x0: &x0 {" + ", ".join(f"{k}: 1" for k in keys) + "}"]
        lines += [f"x{i}: &x{i} {{" + ", ".join(f"{k}: *x{i - 1}" for k in keys) + "}" for i in range(1, levels)]
    else:
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text,needle", [
    (_laughs(), "aliases are expanded"),
    (_laughs(mapping=True), "aliases are expanded"),
    ("base: &b {a: 1, b: 2}\n" + "".join(f"m{i}: &m{i} {{<<: [*{'b' if i == 0 else f'm{i - 1}'}, "
                                          f"*{'b' if i == 0 else f'm{i - 1}'}], k{i}: 1}}\n" for i in range(40)),
     "aliases are expanded"),
    ("a: &a [*a]\n", "refers to a node that contains it"),
    ("k: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
    ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x\n", "nested deeper than 64 levels"),
    ("k: [1, 2\n", "invalid YAML"),
    ("k: " + "9" * 5000 + "\n", "invalid value"),
])
def test_refused_in_one_line_and_fast(text, needle):
    started = time.monotonic()
    with pytest.raises(safeyaml.YamlError) as exc:
        safeyaml.loads(text)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert time.monotonic() - started < 5  # each of these took minutes or gigabytes unbounded


def test_ordinary_aliases_and_merges_still_load():
    doc = safeyaml.loads("defaults: &d {interval: 1s, window: 10s}\ncollect: {<<: *d, window: 30s}\nl: [*d, *d]\n")
    assert doc["collect"] == {"interval": "1s", "window": "30s"}
    assert doc["l"] == [doc["defaults"], doc["defaults"]]


def test_files_are_bounded_and_utf8(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"k: v\n" * (safeyaml.MAX_BYTES // 5 + 1))
    with pytest.raises(safeyaml.YamlError, match="larger than"):
        safeyaml.load_file(str(big))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(safeyaml.YamlError) as exc:
        safeyaml.load_file(str(bad))
    assert exc.value.at("bad.yaml") == "bad.yaml:2: not UTF-8 text (byte 8)"
