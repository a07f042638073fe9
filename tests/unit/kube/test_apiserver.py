"""The Kubernetes API client and PodWatcher against the fake API server on loopback."""

import http.server
import logging
import os
import re
import threading

import pytest
from gpulse.kube import apiserver
from gpulse.kube.apiserver import Gone, KubeClient, KubeConfig, KubeError, PodIndex, PodInfo, PodWatcher
from gpulse.kube.source import as_identity
from gpulse.sim.apiserver import FakeApiServer, pod_object

from tests.conftest import wait_for

NODE = "node-a"


class Cfg:
    def __init__(self, url=""):
        self.kube_apiserver = url


@pytest.fixture
def api():
    node = {"kind": "Node", "metadata": {"name": NODE, "labels": {"node.kubernetes.io/instance-type": "g5.xlarge"}},
            "spec": {"providerID": "aws:///us-west-2b/i-0123"}}
    server = FakeApiServer(node, [pod_object("ns", "a", "uid-a", NODE), pod_object("ns", "other", "uid-o", "node-b")])
    yield server
    server.stop()


@pytest.fixture
def client(api):
    return KubeClient(KubeConfig(api.url))


def test_list_filters_by_node_and_returns_a_resource_version(client):
    pods, rv = client.list_pods(NODE)
    assert [(p.namespace, p.name, p.uid, p.node, p.phase, p.ip) for p in pods] == [
        ("ns", "a", "uid-a", NODE, "Running", "127.0.0.1")]
    assert rv.isdigit()


def test_pods_carry_their_container_ids():
    """containerID of every started container, init and ephemeral ones included: how a
    process's cgroup names its container (two containers of a pod on one GPU need it)."""
    obj = pod_object("ns", "p", "uid-p", NODE, containers=("main", "sidecar"),
                     container_ids={"main": "containerd://" + "a" * 64})
    obj["status"]["initContainerStatuses"] = [{"name": "init", "containerID": "cri-o://" + "b" * 64}]
    obj["status"]["ephemeralContainerStatuses"] = [{"name": "debug", "containerID": "docker://" + "c" * 64},
                                                    {"name": "waiting"}, "junk"]
    info = PodInfo.from_object(obj)
    assert dict(info.container_ids) == {"containerd://" + "a" * 64: "main", "cri-o://" + "b" * 64: "init",
                                        "docker://" + "c" * 64: "debug"}
    assert dict(as_identity(info).containers) == {"a" * 64: "main", "b" * 64: "init", "c" * 64: "debug"}
    assert PodInfo.from_object({"metadata": {"uid": "u"}}).container_ids == {}


def test_get_node(client):
    node = client.get_node(NODE)
    assert node["spec"]["providerID"] == "aws:///us-west-2b/i-0123"
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g5.xlarge"


def test_missing_node_is_a_one_line_error(client):
    with pytest.raises(KubeError, match=r"GET /api/v1/nodes/nope: HTTP 404: nodes \"nope\" not found") as exc:
        client.get_node("nope")
    assert exc.value.status == 404


def test_watch_from_compacted_version_raises_gone(api, client):
    _pods, rv = client.list_pods(NODE)
    api.expire()
    with pytest.raises(Gone):
        list(client.watch_pods(NODE, rv))


def test_watcher_add_update_delete(api, client):
    watcher = PodWatcher(client, NODE)
    watcher.start()
    try:
        assert watcher.wait_synced(10)
        index = watcher.index
        assert index.by_uid("uid-a").name == "a"
        assert index.by_uid("uid-o") is None  # another node's pod
        api.add_pod(pod_object("ns", "b", "uid-b", NODE, annotations={"x": "1"}))
        assert wait_for(lambda: index.by_uid("uid-b") is not None)
        assert index.by_name("ns", "b").annotations["x"] == "1"
        api.update_pod("ns", "b", lambda o: o["metadata"]["annotations"].update(x="2"))
        assert wait_for(lambda: index.by_uid("uid-b").annotations["x"] == "2")
        api.delete_pod("ns", "a")
        assert wait_for(lambda: index.by_uid("uid-a") is None)
        assert {p.uid for p in index.pods()} == {"uid-b"}
        assert watcher.status().up and watcher.status().error == ""
    finally:
        watcher.stop()


def test_watcher_relists_after_410(api, client):
    watcher = PodWatcher(client, NODE)
    watcher.start()
    try:
        assert watcher.wait_synced(10)
        assert watcher.relists == 1
        api.expire()  # ends the open watch; resuming from the old version gets 410
        assert wait_for(lambda: watcher.relists == 2)
        # and the re-listed watcher still follows changes
        api.add_pod(pod_object("ns", "c", "uid-c", NODE))
        assert wait_for(lambda: watcher.index.by_uid("uid-c") is not None)
        assert sum("watch=1" not in r and "/pods" in r for r in api.requests) == 2
    finally:
        watcher.stop()


def test_subscribers_see_every_change(api, client):
    seen = []
    index = PodIndex()
    index.subscribe(lambda ix: seen.append(len(ix.pods())))
    watcher = PodWatcher(client, NODE, index)
    watcher.start()
    try:
        assert watcher.wait_synced(10)
        api.add_pod(pod_object("ns", "d", "uid-d", NODE))
        assert wait_for(lambda: seen[-1:] == [2])
        assert seen[0] == 1
    finally:
        watcher.stop()


def test_unreachable_server_reports_down_and_retries(caplog):
    client = KubeClient(KubeConfig("http://127.0.0.1:9"), timeout=1)
    watcher = PodWatcher(client, NODE)
    with caplog.at_level(logging.WARNING, logger="gpulse.kube.apiserver"):
        watcher.start()
        try:
            assert wait_for(lambda: watcher.status().error != "not yet refreshed")
            up, error = watcher.status().up, watcher.status().error
            assert not up and "GET /api/v1/pods" in error
        finally:
            watcher.stop()


def test_empty_node_name_is_refused(client):
    with pytest.raises(KubeError, match="node.name is empty"):
        PodWatcher(client, "")


def test_bearer_token_from_service_account_file(tmp_path):
    server = FakeApiServer({"metadata": {"name": NODE}}, [pod_object("ns", "a", "uid-a", NODE)], token="s3cret")
    try:
        (tmp_path / "token").write_text("s3cret\n")
        kube = KubeConfig.load(Cfg(server.url), environ={}, sa_dir=str(tmp_path))
        assert kube.token_path == str(tmp_path / "token") and kube.ca_path == ""
        pods, _ = KubeClient(kube).list_pods(NODE)
        assert [p.name for p in pods] == ["a"]
        with pytest.raises(KubeError, match="HTTP 401"):
            KubeClient(KubeConfig(server.url)).list_pods(NODE)
    finally:
        server.stop()


def test_undecodable_token_file_is_one_warning_and_a_401(tmp_path, caplog):
    server = FakeApiServer({"metadata": {"name": NODE}}, [], token="s3cret")
    try:
        (tmp_path / "token").write_bytes(b"s3\xffcret\n")
        kube = KubeConfig.load(Cfg(server.url), environ={}, sa_dir=str(tmp_path))
        with caplog.at_level(logging.WARNING, logger="gpulse.kube.apiserver"), \
                pytest.raises(KubeError, match="HTTP 401"):
            KubeClient(kube).list_pods(NODE)
        assert [r.getMessage() for r in caplog.records] == [
            f"kube: service-account token {tmp_path / 'token'} is not UTF-8 text (byte 2)"]
    finally:
        server.stop()


def test_in_cluster_config(tmp_path):
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("not used here")
    kube = KubeConfig.load(Cfg(""), environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                           sa_dir=str(tmp_path))
    assert kube == KubeConfig("https://10.96.0.1:443", os.path.join(tmp_path, "token"), os.path.join(tmp_path, "ca.crt"))
    v6 = KubeConfig.load(Cfg(""), environ={"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
                         sa_dir=str(tmp_path))
    assert v6.url == "https://[fd00::1]:6443"


def test_outside_a_cluster_without_url_is_a_clear_error(tmp_path):
    with pytest.raises(KubeError, match="KUBERNETES_SERVICE_HOST is not set"):
        KubeConfig.load(Cfg(""), environ={}, sa_dir=str(tmp_path))
    with pytest.raises(KubeError, match="not an http"):
        KubeConfig.load(Cfg("ftp://x"), environ={}, sa_dir=str(tmp_path))


class _Raw(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("body, call, message", [
    (b"[]", "list", "the response is JSON list, not an object"),
    (b"[1]\n", "watch", "not a watch event b'[1]"),
    (b'{"type": "ADDED", "object": "x"}\n', "watch", "not a watch event"),
    (b"{" + b" " * 64 + b"}\n", "watch", "an event over 64 bytes"),
])
def test_odd_answers_are_one_line_errors(monkeypatch, body, call, message):
    monkeypatch.setattr(apiserver, "MAX_EVENT_BYTES", 64)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Raw,), {"body": body}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = KubeClient(KubeConfig(f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        with pytest.raises(KubeError, match=re.escape(message)):
            client.list_pods(NODE) if call == "list" else list(client.watch_pods(NODE, "1"))
    finally:
        server.shutdown()
        server.server_close()


def test_list_skips_items_that_are_not_objects_and_a_bad_resource_version():
    items, rv = KubeClient._items({"items": [{"metadata": {"name": "a"}}, "junk", 3], "metadata": {"resourceVersion": 7}})
    assert items == [{"metadata": {"name": "a"}}] and rv == ""
    assert KubeClient._items({"items": "x", "metadata": "y"}) == ([], "")


def test_a_review_reply_that_is_not_an_object_is_one_line():
    handler = type("H", (_Raw,), {"body": b"[]", "do_POST": _Raw.do_GET})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(KubeError, match="POST /x: the reply is JSON list, not an object"):
            KubeClient(KubeConfig(f"http://127.0.0.1:{server.server_address[1]}")).post_json("/x", {})
    finally:
        server.shutdown()
        server.server_close()
