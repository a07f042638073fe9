"""Liveness and readiness from the tick loop's progress."""

from gpulse.health import Health


def test_not_ready_until_a_tick_with_nvml_then_stale_then_hung():
    t = [0.0]
    h = Health(1.0, clock=lambda: t[0])
    assert h.liveness() == (True, "") and h.readiness() == (False, "first tick not done")
    h.tick_done(False, "NVMLError_LibraryNotFound: NVML Shared Library Not Found")
    assert h.readiness() == (False, "NVMLError_LibraryNotFound: NVML Shared Library Not Found")
    h.tick_done(True)
    assert h.readiness() == (True, "")
    t[0] = 6.0
    ready, reason = h.readiness()
    assert not ready and "stale after 5s" in reason
    assert h.liveness()[0], "stale is not dead"
    t[0] = 31.0
    alive, reason = h.liveness()
    assert not alive and "hung after 30s" in reason


def test_slow_intervals_scale_the_thresholds():
    t = [0.0]
    h = Health(10.0, clock=lambda: t[0])
    h.tick_done(True)
    t[0] = 29.0
    assert h.readiness()[0]
    t[0] = 99.0
    assert h.liveness()[0]
    t[0] = 101.0
    assert not h.liveness()[0]
