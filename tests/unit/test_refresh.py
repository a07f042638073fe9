"""The background-refresh helper: cadence, backoff, one status shape."""

import threading
import time

import pytest
from gpulse.refresh import Backoff, Refresher

from tests.conftest import wait_for


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_backoff_grows_and_caps():
    b = Backoff(base=0.5, ceiling=4.0)
    delays = [b.next_delay() for _ in range(8)]
    assert delays[0] < 1.0 and delays[3] > delays[0]
    assert max(delays) <= 4.0 * 1.2
    b.reset()
    assert b.next_delay() < 1.0


def test_status_follows_success_failure_and_age():
    clock = Clock()
    outcome = {"fail": None}

    def refresh():
        if outcome["fail"]:
            raise ValueError(outcome["fail"])

    r = Refresher("thing", refresh, 5.0, clock=clock)
    first = r.status()
    assert not first.up and first.age_seconds is None and first.error == "not yet refreshed"
    assert r.run_once()
    clock.t += 2
    assert r.status() == type(first)(True, 2.0, "")
    outcome["fail"] = "kaput\nsecond line"
    assert not r.run_once()
    st = r.status()
    assert not st.up and st.error == "ValueError: kaput" and st.age_seconds == 2.0  # age of the last good data
    outcome["fail"] = None
    assert r.run_once() and r.status().up and r.backoff.failures == 0


def test_stale_after_turns_an_old_success_down():
    clock = Clock()
    r = Refresher("thing", lambda: None, 5.0, stale_after=30.0, clock=clock)
    r.run_once()
    clock.t += 31
    st = r.status()
    assert not st.up and "no refresh for 31s" in st.error


def test_runs_on_its_thread_at_the_interval_and_backs_off_on_failure():
    calls, fail = [], threading.Event()

    def refresh():
        calls.append(time.monotonic())
        if fail.is_set():
            raise RuntimeError("down")

    r = Refresher("cadence", refresh, 0.05, retry_base=0.2, retry_ceiling=0.2)
    r.start()
    try:
        assert wait_for(lambda: len(calls) >= 4, timeout=5)
        assert any(t.name == "gpulse-cadence" for t in threading.enumerate())
        fail.set()
        n = len(calls)
        assert wait_for(lambda: not r.status().up, timeout=5)
        time.sleep(0.3)
        assert len(calls) - n <= 4, "a failing source is retried with backoff, not at the interval"
    finally:
        r.stop()
    assert not any(t.name == "gpulse-cadence" for t in threading.enumerate())


def test_wake_refreshes_now_and_stop_interrupts_a_blocking_refresh():
    release = threading.Event()
    calls = []

    def refresh():
        calls.append(1)
        if len(calls) == 2:
            release.wait(10)  # blocks like a watch until stop() interrupts it

    r = Refresher("blocking", refresh, 60.0, interrupt=release.set)
    r.start()
    assert wait_for(lambda: len(calls) == 1)
    r.wake()
    assert wait_for(lambda: len(calls) == 2), "wake() must not wait for the 60 s interval"
    started = time.monotonic()
    r.stop()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("interval", [0.0, 0.01])
def test_mark_up_from_a_long_running_refresh(interval):
    r = Refresher("watch", lambda: None, interval)
    r.mark_up()
    assert r.status().up
    r.mark_down("watch ended: 500")
    assert r.status().error == "watch ended: 500"
