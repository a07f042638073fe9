"""Push ingestion over the node-local gRPC socket: register, refresh, expire, refuse."""

import math
import os
import stat
from types import MappingProxyType

import grpc
import pytest
from gpulse.kube.apiserver import PodIndex, PodInfo
from gpulse.workloads import push_pb2, push_pb2_grpc
from gpulse.workloads.push import PushServer, PushStore, push_once


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
    store = PushStore(ttl=30.0, clock=clock)
    path = str(tmp_path / "run" / "push.sock")
    server = PushServer(path, store)
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


def test_pod_not_on_this_node_is_refused(tmp_path, clock):
    index = PodIndex()
    index.replace([PodInfo(uid="u", namespace="batch", name="here", annotations=MappingProxyType({}))])
    store = PushStore(ttl=30.0, clock=clock)
    server = PushServer(str(tmp_path / "p.sock"), store, index)
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


def test_stale_socket_file_is_replaced(tmp_path, clock):
    path = tmp_path / "push.sock"
    path.write_text("left over")
    server = PushServer(str(path), PushStore(30.0, clock))
    server.start()
    try:
        assert push_once(str(path), "ns", "p", 1) == 30.0
    finally:
        server.stop()
    assert not path.exists()
