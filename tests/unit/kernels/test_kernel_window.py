"""Rolling windows and the per-process fold: both implementations agree value for value."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .impls import both

pytestmark = pytest.mark.kernels

OPS = st.lists(
    st.tuples(
        st.sampled_from(["observe", "mean", "max", "quantile", "count", "retain"]),
        st.sampled_from(["a", "b", ("gpu", 0)]),
        st.floats(min_value=0, max_value=3),  # time step
        st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from([0.0, -0.0, math.nan, 1e308])),
        st.floats(min_value=0, max_value=1),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(OPS, st.sampled_from([0.5, 2.0, 10.0]), st.sampled_from([1, 3, 64]))
def test_compiled_and_pure_agree(ops, horizon, capacity):
    compiled, pure = both("window")
    sets = [compiled.WindowSet(horizon, capacity), pure.WindowSet(horizon, capacity)]
    now = 0.0
    for op, key, step, value, q in ops:
        now += step
        if op == "observe":
            results = [w.observe(key, now, value) for w in sets]
        elif op == "quantile":
            results = [w.quantile(key, q, now) for w in sets]
        elif op == "retain":
            results = [w.retain([key]) for w in sets]
        else:
            results = [getattr(w, op)(key, now) for w in sets]
        a, b = results
        assert a == b or (a != a and b != b), (op, a, b)
        assert len(sets[0]) == len(sets[1]) and (key in sets[0]) == (key in sets[1])


def test_aggregates_cover_the_horizon_only(window):
    w = window.WindowSet(horizon=10.0)
    for t, v in [(0, 100.0), (5, 1.0), (8, 2.0), (9, 3.0), (10, 6.0)]:
        w.observe("g", t, v)
    # t=0 is exactly at now - horizon: outside (the window is (now - horizon, now]).
    assert w.mean("g", 10.0) == 3.0
    assert w.max("g", 10.0) == 6.0
    assert w.quantile("g", 0.5, 10.0) == 2.5
    assert w.quantile("g", 0.0, 10.0) == 1.0 and w.quantile("g", 1.0, 10.0) == 6.0
    assert w.count("g", 10.0) == 4
    assert w.mean("g", 100.0) is None and w.max("g", 100.0) is None and w.quantile("g", 0.9, 100.0) is None


def test_empty_unknown_and_non_finite(window):
    w = window.WindowSet(5)
    assert w.mean("nope", 1.0) is None and "nope" not in w
    w.observe("x", 1.0, math.nan)
    w.observe("x", 1.0, math.inf)
    assert w.mean("x", 1.0) is None and w.count("x", 1.0) == 0


def test_capacity_forgets_oldest(window):
    w = window.WindowSet(100, capacity=3)
    for t in range(5):
        w.observe("k", float(t), float(t))
    assert w.count("k", 4.0) == 3 and w.mean("k", 4.0) == 3.0


def test_retain_contains_len(window):
    w = window.WindowSet(5)
    for k in ("a", "b", "c"):
        w.observe(k, 1.0, 1.0)
    assert len(w) == 3
    w.retain(["a", "c", "zzz"])
    assert len(w) == 2 and "b" not in w and "a" in w


def test_bad_arguments_are_refused(window):
    with pytest.raises(ValueError, match="horizon must be positive"):
        window.WindowSet(0)
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        window.WindowSet(1, capacity=0)
    w = window.WindowSet(5)
    w.observe("k", 2.0, 1.0)
    with pytest.raises(ValueError, match="older than the last one"):
        w.observe("k", 1.0, 1.0)
    with pytest.raises(ValueError, match=r"quantile must be within \[0, 1\]"):
        w.quantile("k", 1.5, 2.0)


def _samples(rows):
    return [SimpleNamespace(pid=p, timeStamp=t, smUtil=s, memUtil=0, encUtil=0, decUtil=0) for p, t, s in rows]


def test_fold_process_samples(window):
    rows = [(10, 100, 50), (11, 100, 20), (10, 200, 70), (10, 150, 10), (12, 90, 99)]
    out = window.fold_process_samples(_samples(rows), 95)
    assert out == {10: (130.0, 3, 200), 11: (20.0, 1, 100)}
    assert window.fold_process_samples([], 0) == {}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 2**40), st.integers(0, 100)), max_size=50), st.integers(0, 2**40))
def test_fold_agrees(rows, since):
    compiled, pure = both("window")
    assert compiled.fold_process_samples(_samples(rows), since) == pure.fold_process_samples(_samples(rows), since)
