"""The energy split of one GPU in one tick, and the idle-floor estimator."""

import random

import pytest
from gpulse.energy import Claim, IdleFloor, split


def test_whole_gpu_holder_gets_everything_busy_or_not():
    for rest in (0.0, None):
        parts, left = split(500.0, 70.0, [Claim(1.0, 0.4)], rest)
        assert parts == [pytest.approx(500.0)] and left == pytest.approx(0.0)
    parts, left = split(70.0, 70.0, [Claim(1.0, 0.0)], 0.0)
    assert parts == [pytest.approx(70.0)] and left == pytest.approx(0.0), "an idle exclusive holder pays its idle"


def test_shared_gpu_idle_by_allocation_active_by_activity():
    # 4 replicas, two held: idle 100 J splits 25/25 (50 unallocated), active 300 J splits by
    # activity 0.3 : 0.1 with 0.2 of host activity nobody holds.
    parts, left = split(400.0, 100.0, [Claim(0.25, 0.3), Claim(0.25, 0.1)], 0.2)
    assert parts[0] == pytest.approx(25 + 300 * 0.3 / 0.6)
    assert parts[1] == pytest.approx(25 + 300 * 0.1 / 0.6)
    assert left == pytest.approx(50 + 300 * 0.2 / 0.6)
    assert sum(parts) + left == pytest.approx(400.0)


def test_idle_holder_pays_only_its_idle_share():
    parts, left = split(300.0, 80.0, [Claim(0.5, 0.0), Claim(0.5, 0.6)], 0.0)
    assert parts[0] == pytest.approx(40.0) and parts[1] == pytest.approx(40.0 + 220.0) and left == pytest.approx(0)


def test_unknown_or_no_activity_splits_everything_by_allocation():
    for rest in (None, 0.0):
        parts, left = split(200.0, 50.0, [Claim(3 / 7, 0.0), Claim(1 / 7, 0.0)], rest)
        assert parts == [pytest.approx(200 * 3 / 7), pytest.approx(200 / 7)]
        assert left == pytest.approx(200 * 3 / 7)


def test_idle_floor_above_the_energy_makes_it_all_idle():
    parts, left = split(50.0, 80.0, [Claim(0.5, 0.9)], 0.1)
    assert parts == [pytest.approx(25.0)] and left == pytest.approx(25.0)


def test_no_claims_or_no_energy():
    assert split(90.0, 30.0, [], 0.2) == ([], 90.0)
    assert split(0.0, 30.0, [Claim(1.0, 1.0)], 0.0) == ([0.0], 0.0)


def test_over_allocation_never_mints_energy():
    parts, left = split(100.0, 100.0, [Claim(1.0), Claim(1.0)], 0.0)
    assert sum(parts) == pytest.approx(100.0) and left == pytest.approx(0.0)


def test_conservation_holds_for_any_input():
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(0, 9)
        claims = [Claim(rng.choice([0.0, 1 / 9, 1 / 7, 0.5, 1.0, 1.5]), rng.random() * rng.choice([0, 1]))
                  for _ in range(n)]
        total = rng.random() * 1000
        idle = rng.random() * 800
        rest = rng.choice([None, 0.0, rng.random()])
        parts, left = split(total, idle, claims, rest)
        assert all(p >= 0 for p in parts) and left >= -1e-9
        assert sum(parts) + left == pytest.approx(total, abs=1e-9)


def test_floor_is_the_lowest_power_at_low_activity():
    f = IdleFloor()
    assert f.estimate("g") is None
    f.observe("g", 300.0, 0.5)
    assert f.estimate("g") == (300.0, "lowest_seen")
    f.observe("g", 95.0, 0.04)
    f.observe("g", 80.0, 0.0)
    f.observe("g", 90.0, 0.01)
    assert f.estimate("g") == (80.0, "idle")
    f.observe("g", 0.0, 0.0)  # a sensor that is not ready is not an idle GPU
    f.observe("g", None, None)
    assert f.estimate("g") == (80.0, "idle")


def test_floor_from_a_line_fit_when_the_gpu_never_rests():
    f = IdleFloor()
    rng = random.Random(1)
    for _ in range(200):
        u = 0.3 + 0.4 * rng.random()
        f.observe("g", 70.0 + 525.0 * u + rng.gauss(0, 2.0), u)
    watts, how = f.estimate("g")
    assert how == "fit" and watts == pytest.approx(70.0, abs=4.0)


def test_no_fit_while_power_does_not_follow_activity():
    f = IdleFloor()
    rng = random.Random(2)
    for _ in range(300):
        f.observe("g", 200.0 + rng.gauss(0, 60.0), 0.3 + 0.4 * rng.random())
    assert f.estimate("g")[1] == "lowest_seen", "noise is not a line: the floor stays the lowest power seen"
    f2 = IdleFloor()
    for _ in range(300):
        f2.observe("g", 250.0, 0.6)  # constant load: no spread, no fit
    assert f2.estimate("g") == (250.0, "lowest_seen")


def test_floor_forgets_gone_gpus():
    f = IdleFloor()
    f.observe("a", 60.0, 0.0)
    f.observe("b", 70.0, 0.0)
    f.retain(["b"])
    assert f.estimate("a") is None and f.estimate("b") == (70.0, "idle")
