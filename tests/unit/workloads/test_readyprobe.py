"""Ready probes: the endpoint a pod's annotations name, and rounds that reach every starting
pod even past MAX_PER_ROUND."""

import pytest
from gpulse.kube.apiserver import PodInfo
from gpulse.workloads import readyprobe
from gpulse.workloads.readyprobe import InvalidReadyEndpoint, ReadyEndpoint, ReadyProber, endpoint_for


def _pod(ip="10.0.0.5", **ann):
    return PodInfo("u1", "ns", "p", ip=ip, annotations={f"gpulse.dev/{k.replace('_', '-')}": v for k, v in ann.items()})


def test_endpoint_from_annotations():
    assert endpoint_for(_pod(port="8002")) is None, "no ready-path: no probe"
    assert endpoint_for(_pod(ready_path="/health", port="8000")) == ReadyEndpoint("10.0.0.5", 8000, "/health")
    assert endpoint_for(_pod(ready_path="/v2/health/ready", ready_port="8000", port="8002")).port == 8000
    assert endpoint_for(_pod(ip="", ready_path="/health", port="8000")) is None, "no IP yet"
    with pytest.raises(InvalidReadyEndpoint, match="ready-path"):
        endpoint_for(_pod(ready_path="health", port="8000"))
    with pytest.raises(InvalidReadyEndpoint, match="ready-port"):
        endpoint_for(_pod(ready_path="/health", ready_port="http"))


def test_rounds_reach_every_target_past_the_per_round_bound(monkeypatch):
    probed: list[int] = []
    monkeypatch.setattr(readyprobe, "probe", lambda ep, timeout: probed.append(ep.port) or ep.port % 2 == 0)
    prober = ReadyProber(interval=1.0, timeout=0.1)
    n = readyprobe.MAX_PER_ROUND + 4
    prober.set_targets({f"u{i}": ReadyEndpoint("10.0.0.1", 1000 + i, "/health") for i in range(n)})
    prober._round()
    assert probed == list(range(1000, 1000 + readyprobe.MAX_PER_ROUND))
    probed.clear()
    prober._round()
    assert probed[:4] == list(range(1000 + readyprobe.MAX_PER_ROUND, 1000 + n)), "the never-probed go first"
    assert len(probed) == readyprobe.MAX_PER_ROUND
    results = prober.results()
    assert set(results) == {f"u{i}" for i in range(n)}
    assert results["u0"][0] is True and results["u1"][0] is False
    prober.set_targets({"u3": ReadyEndpoint("10.0.0.1", 1003, "/health")})
    prober._round()
    assert set(prober.results()) == {"u3"}, "a pod no longer starting drops out"
