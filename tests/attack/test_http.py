"""Hostile HTTP clients: header floods, slowloris, Accept bombs, the debug snapshot,
disconnects. After each, the agent's RSS, tick cadence and workload freshness hold."""

import pytest

from tests.attack import cases
from tests.attack.harness import Window, assert_healthy

pytestmark = pytest.mark.attack


def test_header_flood(agent):
    """Before: 20 clients x 17 headers of 60 KB held RSS at 130 MiB (threads, glibc arenas)."""
    w = Window(agent)
    r = cases.header_flood(agent, seconds=8)
    assert r["requests"] > 100 and "200" not in r["answers"], r  # refused, never read whole
    assert_healthy(agent, w)


def test_slowloris(agent):
    """Before: every slow connection held a thread and an fd with no deadline and no cap."""
    w = Window(agent)
    r = cases.slowloris(agent, seconds=8, connections=300)
    assert r["scrapes_ok"] > 0 and r["scrapes_failed"] == 0, r  # scrapes get through meanwhile
    assert r["agent_fds_peak"] < 200, r  # the connection cap, not one fd per attacker socket
    assert_healthy(agent, w)


def test_accept_header_bomb(agent):
    """Before: a 65 KB Accept cost 27 ms of CPU; 20 clients stretched the tick to 1.3 s."""
    w = Window(agent)
    cases.accept_bomb(agent, seconds=8)
    h = assert_healthy(agent, w)
    assert h.cpu_seconds < 0.8 * h.expected_ticks, h.summary()  # the agent never spent the whole machine


def test_debug_snapshot_is_off(agent):
    """Before: 675 KB of JSON built per request, for anyone."""
    w = Window(agent)
    assert cases.debug_snapshot(agent) == {"statuses": [404], "bytes": 68}
    assert_healthy(agent, w)


def test_disconnects_log_no_traceback(agent):
    """Before: every client disconnect logged a 25-line traceback."""
    w = Window(agent)
    assert cases.disconnects(agent)["tracebacks"] == 0
    assert_healthy(agent, w)
