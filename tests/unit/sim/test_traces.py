"""Traces: the pulse shape the scenarios use for bursty pods."""

import pytest
from gpulse.sim.traces import TraceError, parse_trace


def test_pulse_is_high_for_duty_times_period():
    t = parse_trace({"pulse": {"low": 0.0, "high": 0.9, "period": "20s", "duty": 0.25, "phase": "2s"}})
    assert [t.at(x) for x in (2, 6.9, 7, 21.9, 22, 27)] == [0.9, 0.9, 0.0, 0.0, 0.9, 0.0]
    assert t.at(0) == 0.0 and t.at(1.9) == 0.0
    mean = sum(t.at(i / 10) for i in range(2000)) / 2000
    assert mean == pytest.approx(0.9 * 0.25, abs=0.01)


@pytest.mark.parametrize("body,needle", [
    ({"low": 0, "high": 1, "period": "10s", "duty": 1.0}, "duty must be between 0 and 1"),
    ({"low": 0, "high": 1, "period": "0s", "duty": 0.5}, "period must be positive"),
    ({"low": 0, "high": 1, "period": "10s"}, "missing key 'duty'"),
])
def test_bad_pulses(body, needle):
    with pytest.raises(TraceError, match=needle):
        parse_trace({"pulse": body})
