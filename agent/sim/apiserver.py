"""A fake Kubernetes API server on loopback: enough of /api/v1 for the agent's client.

Serves
  GET /api/v1/pods?fieldSelector=spec.nodeName=<node>            list, with resourceVersion
  GET /api/v1/pods?...&watch=1&resourceVersion=<rv>               chunked watch stream
  GET /api/v1/nodes/<name>                                        the scenario's node
  GET /apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName=<node>[&watch=1]
                                                                  the node's DRA ResourceSlices
Watches behave like the real server's: events after <rv>, a BOOKMARK when the watch times
out, and a 200 stream holding one ERROR event with a 410 Status when <rv> was compacted.
Pods and slices share one resourceVersion sequence, as in etcd. Pods carry the status a
kubelet reports (gpulse.sim.lifecycle): conditions, container states with each container's
runtime containerID, and ownerReferences; a pod with `startup:` exists only from its
scheduled time, and apply_pod() (called by the world as scenario time passes) adds or
changes it.

`start_fake_apiserver(scenario, endpoints)` holds the scenario's pods on its node; a pod
with an inference endpoint (`endpoints[(namespace, pod)] = (host, port, path)`) carries the
gpulse.dev/ scrape annotations pointing at it and podIP 127.0.0.1. Scenario annotations
win over the generated ones (that is how a scenario names gpulse.dev/server or breaks an
annotation on purpose). Pods that push get no scrape annotations.

Test hooks on the handle: add_pod(obj), update_pod(namespace, name, fn), delete_pod(namespace,
name), apply_pod(obj), add_slice(obj), update_slice(name, fn), delete_slice(name), expire()
(compacts history: watchers get 410 and must re-list), requests (paths seen).

Delegated authentication and authorization, as the agent's --web.kubernetes-auth calls them:
  POST /apis/authentication.k8s.io/v1/tokenreviews          tokens added with add_token()
  POST /apis/authorization.k8s.io/v1/subjectaccessreviews   non-resource grants added with grant()
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from . import dra
from .lifecycle import LONG_AGO_SCHEDULED, Timeline, pod_status, rfc3339

if TYPE_CHECKING:
    from .scenario import PodSpec, Scenario

# A Kubernetes API object as JSON (Pod, Node, Status, PodList, watch event).
_Obj = dict[str, Any]
# (namespace, pod) -> (host, port, path) of its inference endpoint.
_Endpoints = Mapping[tuple[str, str], tuple[str, int, str]]
# The collections served, by URL path, and the field selectors each accepts.
PODS, SLICES = "pods", "resourceslices"
_PATHS = {"/api/v1/pods": PODS, "/apis/resource.k8s.io/v1/resourceslices": SLICES}
_LIST_KINDS = {PODS: ("PodList", "v1"), SLICES: ("ResourceSliceList", "resource.k8s.io/v1")}
_SELECTORS = {PODS: ("spec.nodeName",), SLICES: ("spec.nodeName", "spec.driver")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connects when the agent scrapes in parallel


def pod_object(namespace: str, name: str, uid: str, node: str, annotations: Optional[Mapping[str, str]] = None,
               labels: Optional[Mapping[str, str]] = None, ip: str = "127.0.0.1", phase: str = "Running",
               containers: tuple[str, ...] = ("main",), container_ids: Optional[Mapping[str, str]] = None,
               status: Optional[_Obj] = None, owner: tuple[str, str] = ("", ""), created: str = "") -> _Obj:
    """A Pod object. `status` (as gpulse.sim.lifecycle writes it) replaces the minimal one:
    phase, IP and running containers with the containerIDs in `container_ids` (container
    name -> "containerd://<64 hex>")."""
    meta: _Obj = {"name": name, "namespace": namespace, "uid": uid,
                  "annotations": dict(annotations or {}), "labels": dict(labels or {})}
    if created:
        meta["creationTimestamp"] = created
    if owner[0]:
        api = {"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Job": "batch/v1"}.get(
            owner[0], "v1")
        meta["ownerReferences"] = [{"apiVersion": api, "kind": owner[0], "name": owner[1], "uid": f"{owner[1]}-uid",
                                    "controller": True, "blockOwnerDeletion": True}]
    if status is None:
        ids = container_ids or {}
        status = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                  "containerStatuses": [{"name": c, "ready": True, "restartCount": 0, "started": True,
                                         **({"containerID": ids[c]} if c in ids else {})} for c in containers]}
    return {
        "kind": "Pod", "apiVersion": "v1", "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": c} for c in containers]},
        "status": status,
    }


def scenario_pod(scenario: Scenario, pod: PodSpec, endpoints: _Endpoints, t: float, wall0: float,
                 timeline: Optional[Timeline] = None) -> Optional[_Obj]:
    """The Pod as the API server serves it at scenario time t; None before it is scheduled."""
    if timeline is not None and not timeline.exists(t):
        return None
    ann: dict[str, str] = {}
    ep = endpoints.get((pod.namespace, pod.name))
    if ep is not None:
        _host, port, path = ep
        ann = {"gpulse.dev/scrape": "true", "gpulse.dev/port": str(port), "gpulse.dev/path": path}
    ann.update(pod.annotations)
    ip = ep[0] if ep else "127.0.0.1"
    scheduled = timeline.spec.scheduled if timeline is not None else LONG_AGO_SCHEDULED
    obj = pod_object(pod.namespace, pod.name, pod.uid, scenario.node.name, ann, pod.labels, ip=ip,
                     containers=tuple(c.name for c in pod.containers),
                     status=pod_status(pod, timeline, t, wall0, ip, scenario.cgroup.runtime), owner=pod.owner,
                     created=rfc3339(wall0 + scheduled))
    _extended_resource_claim(obj, pod)
    return obj


def scenario_pods(scenario: Scenario, endpoints: _Endpoints, t: float = 0.0,
                  wall0: Optional[float] = None) -> list[_Obj]:
    """Every pod that exists at scenario time t; `wall0` is the wall time of scenario time 0."""
    wall0 = time.time() - t if wall0 is None else wall0
    out: list[_Obj] = []
    for pod in scenario.pods:
        obj = scenario_pod(scenario, pod, endpoints, t, wall0, Timeline(pod.startup) if pod.startup else None)
        if obj is not None:
            out.append(obj)
    return out


def _extended_resource_claim(obj: _Obj, pod: PodSpec) -> None:
    """The status the scheduler writes when DRA serves a pod's extended resource (KEP-5004)."""
    mappings = [{"containerName": c.name, "resourceName": ref.resource, "requestName": f"container-{ci}-request-{ri}"}
                for ci, c in enumerate(pod.containers) for ri, ref in enumerate(r for r in c.devices if r.claim)
                if ref.resource and ref.claim == dra.extended_resource_claim(pod.name)]
    if mappings:
        obj["status"]["extendedResourceClaimStatus"] = {"resourceClaimName": dra.extended_resource_claim(pod.name),
                                                        "requestMappings": mappings}


class FakeApiServer:
    def __init__(self, node: _Obj, pods: Iterable[_Obj], token: str = "", watch_timeout_cap: float = 30.0,
                 slices: Iterable[_Obj] = ()) -> None:
        self.node = node
        self.token = token
        self.watch_timeout_cap = watch_timeout_cap
        self.requests: list[str] = []  # paths seen
        self._cond = threading.Condition()
        self._rv = 1
        self._compacted = 0  # a watch from a resourceVersion below this gets 410
        self._generation = 0  # bumped by expire(): open watches end
        self._objects: dict[tuple[str, str, str], _Obj] = {}  # (collection, namespace, name) -> object
        self._events: list[tuple[int, str, str, _Obj]] = []  # (rv, collection, type, object)
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}  # bearer token -> (user, groups)
        self._grants: set[tuple[str, str, str]] = set()  # (user or group, verb, non-resource path)
        self.reviews = 0  # TokenReviews and SubjectAccessReviews answered
        self._stopping = False
        for p in pods:
            self._store(PODS, p)
        for sl in slices:
            self._store(SLICES, sl)
        self._events.clear()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: (host, port)
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sim-apiserver", daemon=True)
        self._thread.start()

    # --- test hooks ---

    def add_pod(self, obj: _Obj) -> None:
        self._change(PODS, "ADDED", obj)

    def update_pod(self, namespace: str, name: str, fn: Callable[[_Obj], None]) -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(PODS, namespace, name)])
        fn(obj)
        self._change(PODS, "MODIFIED", obj)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(PODS, namespace, name)])
        self._change(PODS, "DELETED", obj)

    def apply_pod(self, obj: _Obj) -> None:
        """Add the pod, or replace it when it exists (a MODIFIED event)."""
        meta = obj["metadata"]
        with self._cond:
            known = (PODS, meta["namespace"], meta["name"]) in self._objects
        self._change(PODS, "MODIFIED" if known else "ADDED", obj)

    def add_slice(self, obj: _Obj) -> None:
        self._change(SLICES, "ADDED", obj)

    def update_slice(self, name: str, fn: Callable[[_Obj], None]) -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(SLICES, "", name)])
        fn(obj)
        self._change(SLICES, "MODIFIED", obj)

    def delete_slice(self, name: str) -> None:
        with self._cond:
            obj = copy.deepcopy(self._objects[(SLICES, "", name)])
        self._change(SLICES, "DELETED", obj)

    def expire(self) -> None:
        """Compact all history (as etcd does) and end open watches: clients must re-list."""
        with self._cond:
            self._rv += 1
            self._compacted = self._rv
            self._events.clear()
            self._generation += 1
            self._cond.notify_all()

    def add_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        self._tokens[token] = (user, tuple(groups))

    def grant(self, subject: str, path: str, verb: str = "get") -> None:
        """RBAC for a non-resource URL (a ClusterRole rule bound to a user or a group)."""
        self._grants.add((subject, verb, path))

    def pods(self) -> list[_Obj]:
        return self.objects(PODS)

    def objects(self, collection: str) -> list[_Obj]:
        with self._cond:
            return [copy.deepcopy(o) for (c, _, _), o in self._objects.items() if c == collection]

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- state ---

    @staticmethod
    def _key(collection: str, obj: _Obj) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return collection, meta.get("namespace", ""), meta["name"]

    def _store(self, collection: str, obj: _Obj) -> _Obj:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[self._key(collection, obj)] = obj
        return obj

    def _change(self, collection: str, kind: str, obj: _Obj) -> None:
        with self._cond:
            if kind == "DELETED":
                self._rv += 1
                obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = str(self._rv)
                self._objects.pop(self._key(collection, obj), None)
            else:
                obj = self._store(collection, obj)
            self._events.append((self._rv, collection, kind, obj))
            self._cond.notify_all()

    # --- HTTP ---

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api.requests.append(self.path)
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._json(401, _status(401, "Unauthorized", "Unauthorized"))
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                collection = _PATHS.get(parts.path)
                if collection is not None:
                    selector = query.get("fieldSelector", "")
                    field, _, value = selector.partition("=")
                    if selector and field not in _SELECTORS[collection]:
                        msg = f"unsupported field selector {selector!r}"
                        return self._json(400, _status(400, "BadRequest", msg))
                    match = (field, value) if selector else ("", "")
                    if query.get("watch") in ("1", "true"):
                        return self._watch(collection, match, query)
                    with api._cond:
                        items = [copy.deepcopy(o) for (c, _, _), o in api._objects.items()
                                 if c == collection and _on(o, match)]
                        rv = api._rv
                    kind, version = _LIST_KINDS[collection]
                    return self._json(200, {"kind": kind, "apiVersion": version,
                                            "metadata": {"resourceVersion": str(rv)}, "items": items})
                if parts.path.startswith("/api/v1/nodes/"):
                    name = unquote(parts.path[len("/api/v1/nodes/"):])
                    if name != api.node["metadata"]["name"]:
                        return self._json(404, _status(404, "NotFound", f'nodes "{name}" not found'))
                    return self._json(200, api.node)
                return self._json(404, _status(404, "NotFound", "the server could not find the requested resource"))

            def do_POST(self) -> None:
                api.requests.append(self.path)
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._json(401, _status(401, "Unauthorized", "Unauthorized"))
                try:
                    length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                    review = json.loads(self.rfile.read(length) or b"{}")
                    spec = review.get("spec") or {}
                except ValueError:
                    return self._json(400, _status(400, "BadRequest", "undecodable body"))
                api.reviews += 1
                if self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
                    found = api._tokens.get(str(spec.get("token", "")))
                    status: _Obj = {"authenticated": False, "error": "invalid bearer token"}
                    if found is not None:
                        status = {"authenticated": True, "user": {"username": found[0], "uid": "uid-" + found[0],
                                                                  "groups": list(found[1])}}
                    return self._json(201, {**review, "status": status})
                if self.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
                    attrs = spec.get("nonResourceAttributes") or {}
                    subjects = [spec.get("user", "")] + list(spec.get("groups") or [])
                    allowed = any((s, attrs.get("verb"), attrs.get("path")) in api._grants for s in subjects)
                    status = {"allowed": allowed}
                    if not allowed:
                        status["reason"] = "no RBAC rule allows it"
                    return self._json(201, {**review, "status": status})
                return self._json(404, _status(404, "NotFound", "the server could not find the requested resource"))

            def _watch(self, collection: str, match: tuple[str, str], query: Mapping[str, str]) -> None:
                try:
                    since = int(query.get("resourceVersion") or 0)
                except ValueError:
                    return self._json(400, _status(400, "BadRequest", "invalid resourceVersion"))
                timeout = min(float(query.get("timeoutSeconds") or api.watch_timeout_cap), api.watch_timeout_cap)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    with api._cond:
                        if since < api._compacted:
                            msg = f"too old resource version: {since} ({api._compacted})"
                            self._event("ERROR", _status(410, "Expired", msg))
                            return self._end()
                        generation = api._generation
                        deadline_wait = timeout
                        while not api._stopping and generation == api._generation:
                            pending = [(rv, k, o) for rv, c, k, o in api._events
                                       if rv > since and c == collection and _on(o, match)]
                            for _rv, kind, obj in pending:
                                self._event(kind, obj)
                            if api._events:
                                since = max(since, api._events[-1][0])
                            if not api._cond.wait(timeout=deadline_wait):
                                if query.get("allowWatchBookmarks") in ("1", "true"):
                                    kind, version = _LIST_KINDS[collection]
                                    self._event("BOOKMARK", {"kind": kind.removesuffix("List"), "apiVersion": version,
                                                             "metadata": {"resourceVersion": str(api._rv)}})
                                break
                    self._end()
                except OSError:
                    pass  # the client went away
                self.close_connection = True

            def _event(self, kind: str, obj: _Obj) -> None:
                data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _end(self) -> None:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _json(self, code: int, obj: _Obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

        return Handler


def _on(obj: _Obj, match: tuple[str, str]) -> bool:
    """Whether obj passes the field selector `field=value` ("" selects everything)."""
    field, value = match
    if not field:
        return True
    return bool(obj.get("spec", {}).get(field.removeprefix("spec.")) == value)


def _status(code: int, reason: str, message: str) -> _Obj:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


def node_object(scenario: Scenario) -> _Obj:
    n = scenario.node
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": n.name, "labels": dict(n.labels)},
            "spec": {"providerID": n.provider_id} if n.provider_id else {},
            "status": {"nodeInfo": {"kubeletVersion": "v1.30.0"}}}


def start_fake_apiserver(scenario: Scenario, endpoints: _Endpoints, token: str = "", t: float = 0.0,
                         wall0: Optional[float] = None) -> FakeApiServer:
    """-> handle with .url, .stop() and the test hooks above; the pods as of scenario time t."""
    return FakeApiServer(node_object(scenario), scenario_pods(scenario, endpoints, t, wall0), token=token,
                         slices=dra.resource_slices(scenario))
