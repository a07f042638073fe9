"""Push ingestion over the node-local gRPC socket: register, refresh, expire, refuse; who may
push for whom (peer credentials -> cgroup -> pod); bounds per pod; no tracebacks."""

import logging
import math
import os
import socket
import stat
import subprocess
import sys
import time
from types import MappingProxyType

import grpc
import pytest
from gpulse.kube.apiserver import PodIndex, PodInfo
from gpulse.refusals import Refusals
from gpulse.sim.proctree import cgroup_file, pod_cgroup_path, write_process
from gpulse.sim.scenario import CgroupSpec
from gpulse.workloads import push_pb2, push_pb2_grpc
from gpulse.workloads.push import PushServer, PushStore, push_once

from tests.conftest import wait_for

POD_UID = "0b7e4f4c-1c1d-4e7e-9a3b-5a1d2c3e4f50"
OTHER_UID = "9d2c1b0a-8f7e-4d6c-b5a4-3c2b1a0f9e8d"
CONTAINER = "a" * 64


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(tmp_path, clock):
    """An unattested service (--workloads.push-auth=none)."""
    store = PushStore(ttl=30.0, clock=clock)
    path = str(tmp_path / "run" / "push.sock")
    server = PushServer(path, store, auth="none")
    server.start()
    yield path, store
    server.stop()


def report(path, **fields):
    with grpc.insecure_channel("unix:" + path) as ch:
        return push_pb2_grpc.QueueDepthStub(ch).Report(push_pb2.ReportRequest(**fields), timeout=5)


def test_register_refresh_expire(service, clock):
    path, store = service
    assert push_once(path, "batch", "queue-0", 12, running_requests=3, server="kueue-worker", model="m") == 30.0
    (s,) = store.states()
    assert (s.namespace, s.pod, s.server, s.model, s.queue_depth, s.running_requests, s.scrape_up) == \
        ("batch", "queue-0", "kueue-worker", "m", 12, 3, True)
    clock.now += 20
    push_once(path, "batch", "queue-0", 4, server="kueue-worker", model="m")  # refresh, running now unknown
    clock.now += 20  # 40 s after the first report, 20 s after the refresh
    (s,) = store.states()
    assert (s.queue_depth, s.running_requests) == (4, None)
    clock.now += 10.5
    assert store.states() == ()


def test_default_server_label(service):
    path, store = service
    push_once(path, "batch", "job-1", 0)
    assert store.states()[0].server == "push"


def test_socket_is_writable_by_other_users(service):
    path, _ = service
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666


@pytest.mark.parametrize("fields,needle", [
    ({"pod": "p", "queue_depth": 1}, "namespace=''"),
    ({"namespace": "Bad_NS", "pod": "p", "queue_depth": 1}, "namespace='Bad_NS'"),
    ({"namespace": "ns", "pod": "", "queue_depth": 1}, "pod=''"),
    ({"namespace": "ns", "pod": "p"}, "queue_depth is required"),
    ({"namespace": "ns", "pod": "p", "queue_depth": -1}, "queue_depth=-1.0"),
    ({"namespace": "ns", "pod": "p", "queue_depth": math.nan}, "queue_depth=nan"),
    ({"namespace": "ns", "pod": "p", "queue_depth": math.inf}, "queue_depth=inf"),
    ({"namespace": "ns", "pod": "p", "queue_depth": 1, "running_requests": -2}, "running_requests=-2.0"),
    ({"namespace": "ns", "pod": "p", "queue_depth": 1, "server": "Has Space"}, "server='Has Space'"),
    ({"namespace": "ns", "pod": "p", "queue_depth": 1, "model": "x\ny"}, "model: at most 256 printable"),
])
def test_malformed_request_is_refused(service, fields, needle):
    path, store = service
    with pytest.raises(grpc.RpcError) as exc:
        report(path, **fields)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in exc.value.details()
    assert store.states() == ()


def test_undecodable_request_is_refused_without_a_traceback(service, caplog):
    path, store = service
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel("unix:" + path) as ch:
        raw = ch.unary_unary("/gpulse.push.v1.QueueDepth/Report", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        for junk in (b"\xff\xff\xff\xff", b"\x0a\xff", b"\x2a" * 50):
            with pytest.raises(grpc.RpcError) as exc:
                raw(junk, timeout=5)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, junk
            assert "undecodable" in exc.value.details()
    assert store.states() == ()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def test_pod_not_on_this_node_is_refused(tmp_path, clock):
    index = PodIndex()
    index.replace([PodInfo(uid="u", namespace="batch", name="here", annotations=MappingProxyType({}))])
    store = PushStore(ttl=30.0, clock=clock)
    server = PushServer(str(tmp_path / "p.sock"), store, index, auth="none")
    server.start()
    try:
        push_once(server.socket_path, "batch", "here", 1)
        with pytest.raises(grpc.RpcError) as exc:
            push_once(server.socket_path, "batch", "elsewhere", 1)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert [s.pod for s in store.states()] == ["here"]
    finally:
        server.stop()


def test_store_is_capped(clock):
    store = PushStore(ttl=30.0, clock=clock, max_entries=2)
    assert store.report("ns", "a", "push", "", 1)
    assert store.report("ns", "b", "push", "", 1)
    assert not store.report("ns", "c", "push", "", 1)
    assert store.report("ns", "a", "push", "", 2)  # refreshing an existing entry still works
    clock.now += 31
    assert store.report("ns", "c", "push", "", 1)  # expired entries make room


def test_quota_is_per_pod(clock):
    """A pod that floods new series refuses only itself, never a newcomer."""
    store = PushStore(ttl=30.0, clock=clock, per_pod=3)
    assert all(store.admit("ns", "flood", "push", f"m{i}", 1) == "" for i in range(3))
    assert store.admit("ns", "flood", "push", "m3", 1) == "pod_quota"
    assert store.admit("ns", "flood", "push", "m0", 5) == ""  # its existing series still refresh
    assert store.admit("ns", "quiet", "push", "", 1) == ""
    clock.now += 31
    assert store.admit("ns", "flood", "push", "m3", 1) == ""  # expired series free the quota


def test_stale_socket_is_replaced(tmp_path, clock):
    path = str(tmp_path / "push.sock")
    left = socket.socket(socket.AF_UNIX)
    left.bind(path)  # a socket left by a previous agent
    left.close()
    server = PushServer(path, PushStore(30.0, clock), auth="none")
    server.start()
    try:
        assert push_once(path, "ns", "p", 1) == 30.0
    finally:
        server.stop()
    assert not os.path.exists(path)


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path, clock):
    path = tmp_path / "push.sock"
    path.write_text("precious")
    server = PushServer(str(path), PushStore(30.0, clock), auth="none")
    with pytest.raises(OSError, match="exists and is not a socket"):
        server.start()
    assert path.read_text() == "precious"


def test_stop_leaves_a_file_that_replaced_the_socket(tmp_path, clock):
    path = tmp_path / "push.sock"
    server = PushServer(str(path), PushStore(30.0, clock), auth="none")
    server.start()
    path.unlink()
    path.write_text("someone else's")
    server.stop()
    assert path.read_text() == "someone else's"


# --- attested pushes (--workloads.push-auth=pod) ----------------------------------------------
class Attested:
    """A push server whose callers are attested through a generated /proc: processes are put
    in pods by writing their cgroup file, as the kubelet's runtime would have."""

    def __init__(self, tmp_path, clock, index=None):
        self.proc = tmp_path / "proc"
        self.proc.mkdir()
        if index is None:
            index = PodIndex()
            index.replace([PodInfo(uid=POD_UID, namespace="batch", name="queue-0"),
                           PodInfo(uid=OTHER_UID, namespace="llm", name="vllm-0")])
        self.index = index
        self.store = PushStore(ttl=30.0, clock=clock)
        self.refusals = Refusals()
        self.path = str(tmp_path / "push.sock")
        self.server = PushServer(self.path, self.store, index, auth="pod", procfs=str(self.proc),
                                 refusals=self.refusals)
        self.server.start()

    def put_in_pod(self, pid, uid=POD_UID):
        cg = CgroupSpec(version=2, driver="systemd", runtime="containerd")
        write_process(str(self.proc), pid, cgroup_file(2, pod_cgroup_path(cg, "burstable", uid, CONTAINER)), 1)

    def stop(self):
        self.server.stop()


@pytest.fixture
def attested(tmp_path, clock):
    a = Attested(tmp_path, clock)
    yield a
    a.stop()


def test_a_pod_pushes_for_itself(attested):
    attested.put_in_pod(os.getpid())
    assert push_once(attested.path, "batch", "queue-0", 5) == 30.0
    assert push_once(attested.path, "", "", 6, model="m") == 30.0  # no name: the caller's own pod
    assert {(s.namespace, s.pod, s.model, s.queue_depth) for s in attested.store.states()} == \
        {("batch", "queue-0", "", 5), ("batch", "queue-0", "m", 6)}


def test_a_pod_cannot_push_for_another(attested):
    attested.put_in_pod(os.getpid())
    with pytest.raises(grpc.RpcError) as exc:
        push_once(attested.path, "llm", "vllm-0", 999)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "runs in pod batch/queue-0 and may push only for it, not for llm/vllm-0" in exc.value.details()
    assert attested.store.states() == ()
    assert attested.refusals.counts()[("push", "other_pod")] == 1


def test_a_process_in_no_pod_is_refused(attested):
    with pytest.raises(grpc.RpcError) as exc:  # this test process has no cgroup file in the generated /proc
        push_once(attested.path, "batch", "queue-0", 1)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"PID {os.getpid()}" in exc.value.details()


def test_a_pod_not_on_this_node_is_refused(attested):
    attested.put_in_pod(os.getpid(), uid="11111111-2222-3333-4444-555555555555")
    with pytest.raises(grpc.RpcError) as exc:
        push_once(attested.path, "", "", 1)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not on this node" in exc.value.details()


def test_identity_is_the_connecting_process_not_what_it_claims(attested):
    """Another process on the same socket is attested on its own: the child is put in the
    other pod, and pushes there; this process still may not."""
    child = subprocess.Popen([sys.executable, "-c", PUSHER, attested.path], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        attested.put_in_pod(child.pid, uid=OTHER_UID)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok 30.0"
        assert [(s.namespace, s.pod) for s in attested.store.states()] == [("llm", "vllm-0")]
    finally:
        child.stdin.close()
        child.wait(10)
    with pytest.raises(grpc.RpcError):
        push_once(attested.path, "llm", "vllm-0", 1)


PUSHER = """
import sys
from gpulse.workloads.push import push_once
sys.stdin.readline()
print("ok", push_once(sys.argv[1], "", "", 3), flush=True)
"""


def test_without_a_pod_list_pushes_say_why(tmp_path, clock):
    a = Attested(tmp_path, clock, index=PodIndex())  # never synced
    try:
        a.put_in_pod(os.getpid())
        with pytest.raises(grpc.RpcError) as exc:
            push_once(a.path, "", "", 1)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "retry" in exc.value.details()
    finally:
        a.stop()


def test_connections_per_pod_are_capped(attested):
    attested.put_in_pod(os.getpid())
    held = []
    try:
        for _ in range(attested.server.gateway.per_pod):
            s = socket.socket(socket.AF_UNIX)
            s.connect(attested.path)
            held.append(s)
        assert wait_for(lambda: attested.server.gateway._per_key.get(POD_UID) == attested.server.gateway.per_pod)
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(attested.path)
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed at once
        extra.close()
        assert attested.refusals.counts()[("push", "pod_connections")] >= 1
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: not attested.server.gateway._per_key)
    assert push_once(attested.path, "", "", 1) == 30.0  # the slots came back


def test_a_flooding_pod_is_slowed_not_the_others(attested):
    """Bytes past a pod's budget are not read: its RPCs wait while another pod's go through."""
    attested.put_in_pod(os.getpid())
    gateway = attested.server.gateway
    gateway.rate, gateway.burst = 2000.0, 2000.0  # ~15 reports a second
    with grpc.insecure_channel("unix:" + attested.path) as ch:
        from gpulse.workloads.push import report as report_on
        started, done = time.monotonic(), 0
        while time.monotonic() - started < 2.0:
            try:
                report_on(ch, "", "", 1, timeout=0.5)
                done += 1
            except grpc.RpcError:
                pass
    assert 0 < done < 200, done  # unthrottled, this loop makes ~1000 reports in 2 s
