"""WorkloadSource: discovery, scraping and push behind current() and status()."""

from gpulse import config as config_mod
from gpulse.workloads.source import WorkloadSource


def test_source_disabled():
    src = WorkloadSource(config_mod.Config(workloads_enabled=False))
    src.start()
    try:
        states, status = src.current(), src.status()
        assert states == () and not status.up and "workloads.enabled is false" in status.error
    finally:
        src.stop()


def test_source_push_only_without_kube(tmp_path):
    from gpulse.workloads.push import push_once

    sock = str(tmp_path / "push.sock")
    src = WorkloadSource(config_mod.Config(kube_enabled=False, workloads_push_socket=sock, workloads_push_auth="none"))
    src.start()
    try:
        push_once(sock, "batch", "q", 7)
        states, status = src.current(), src.status()
        assert [(s.pod, s.queue_depth) for s in states] == [("q", 7)]
        assert status.up and status.error == ""
    finally:
        src.stop()


def test_attested_push_without_kube_says_how_to_trust_pushes(tmp_path):
    import grpc
    import pytest
    from gpulse.workloads.push import push_once

    sock = str(tmp_path / "push.sock")
    src = WorkloadSource(config_mod.Config(kube_enabled=False, workloads_push_socket=sock))
    src.start()
    try:
        with pytest.raises(grpc.RpcError) as exc:
            push_once(sock, "batch", "q", 7)
        # this process is in no pod of the (real) /proc, or there is no pod list: either way refused
        assert exc.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)
        assert src.current() == ()
    finally:
        src.stop()


def test_endpoints_without_a_finished_scrape_are_marked_stale(monkeypatch):
    """A result older than stale_after reports scrape_up 0 and no values, and the source says so."""
    import time

    from gpulse.snapshot import WorkloadState
    from gpulse.workloads.discovery import ScrapeTarget
    from gpulse.workloads.scrape import EndpointResult

    src = WorkloadSource(config_mod.Config(kube_enabled=False, workloads_push_socket=""))
    now = time.monotonic()
    fresh_t = ScrapeTarget("ns", "fresh", "u1", "127.0.0.1", 1, "/metrics")
    stale_t = ScrapeTarget("ns", "stale", "u2", "127.0.0.1", 2, "/metrics")
    results = (
        EndpointResult(fresh_t, True, "vllm", (WorkloadState("ns", "fresh", "vllm", "m", queue_depth=3),), 0.01,
                       finished_at=now),
        EndpointResult(stale_t, True, "vllm", (WorkloadState("ns", "stale", "vllm", "m", queue_depth=9),), 0.01,
                       finished_at=now - src.stale_after - 1),
    )
    monkeypatch.setattr(src.scraper, "results", lambda: results)
    by_pod = {s.pod: s for s in src.current()}
    assert by_pod["fresh"].scrape_up and by_pod["fresh"].queue_depth == 3
    assert not by_pod["stale"].scrape_up and by_pod["stale"].queue_depth is None
    status = src.status()
    assert not status.up and "1 endpoint(s) without a finished scrape" in status.error
    assert status.age_seconds > src.stale_after


def test_source_outside_a_cluster_says_why(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    src = WorkloadSource(config_mod.Config(node_name="n", workloads_push_socket=""))
    src.start()
    try:
        states, status = src.current(), src.status()
        assert states == () and not status.up and "KUBERNETES_SERVICE_HOST is not set" in status.error
    finally:
        src.stop()
