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
    src = WorkloadSource(config_mod.Config(kube_enabled=False, workloads_push_socket=sock))
    src.start()
    try:
        push_once(sock, "batch", "q", 7)
        states, status = src.current(), src.status()
        assert [(s.pod, s.queue_depth) for s in states] == [("q", 7)]
        assert status.up and status.error == ""
    finally:
        src.stop()


def test_source_outside_a_cluster_says_why(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    src = WorkloadSource(config_mod.Config(node_name="n", workloads_push_socket=""))
    src.start()
    try:
        states, status = src.current(), src.status()
        assert states == () and not status.up and "KUBERNETES_SERVICE_HOST is not set" in status.error
    finally:
        src.stop()
