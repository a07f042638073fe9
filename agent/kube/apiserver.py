"""A small Kubernetes API client: this node's pods (list + watch) and its Node object.

Why the standard library's http.client and not the `kubernetes` package: a DaemonSet runs
on every node, so its memory and start-up are paid N times. The official client pulls in
its generated models for the whole API (thousands of modules), urllib3, requests-oauthlib
and google-auth, costs tens of MiB of RSS and about a second of import time, and the
agent needs a handful: list and watch pods and ResourceSlices, get one node, post reviews. http.client is already
loaded by the agent's own HTTP server, handles chunked watch streams, and with
ssl.create_default_context(cafile=...) does the in-cluster TLS the service account needs.

Configuration (`KubeConfig.load`):
  - config.kube_apiserver set: that URL; a service-account token and CA are still used
    when their files exist (a URL with https to a real cluster needs them);
  - otherwise in-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with
    /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}. The token is re-read
    every minute: projected service-account tokens rotate.

Shared interface (used by workload discovery and by pod attribution):

  PodIndex  - thread-safe view of the pods on this node, kept current by PodWatcher.
    .by_uid(uid) -> PodInfo | None       pod UID (as in /proc/<pid>/cgroup) -> pod
    .by_name(namespace, name) -> PodInfo | None
    .pods() -> tuple[PodInfo]            every pod on the node, any phase
    .synced -> bool                      True once the first list has completed
    .version -> int                      bumps on every change (cheap change detection)
    .subscribe(fn)                       fn(index) after every change, on the watch thread
  PodInfo   - frozen: uid, namespace, name, node, phase, ip, annotations, labels, container_ids,
              lifecycle (conditions, container states, owner: gpulse.kube.lifecycle)
  PodWatcher(client, node_name, index=None).start()/.stop(); .index; .status() -> (up, error)
  ListWatcher - the list-and-watch session PodWatcher and ResourceSliceWatcher share
  KubeClient(KubeConfig).list_pods(node) / .watch_pods(node, rv) / .get_node(name)

Watch protocol: list with fieldSelector=spec.nodeName=<node> gives a resourceVersion;
watch from it (allowWatchBookmarks) applying ADDED/MODIFIED/DELETED and advancing the
version on BOOKMARKs; a 410 Gone (as HTTP status or as an ERROR event) means the version
was compacted away, and the watcher re-lists. Other failures back off (1 s doubling to 30 s).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Optional, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from ..config import Config
from ..errors import OneLineError
from ..refresh import Refresher, SourceStatus
from .lifecycle import EMPTY as _NO_LIFECYCLE
from .lifecycle import PodLifecycle

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REFRESH_SECONDS = 60.0
WATCH_TIMEOUT_SECONDS = 300  # the API server ends a watch after this; the watcher resumes
# An object is at most ~1.5 MiB (etcd's request limit), so a watch event line is a little more
# and a list of one node's pods or slices well under the second bound; past them is not an API server.
MAX_EVENT_BYTES = 8 * 1024 * 1024
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_EMPTY: Mapping[str, str] = MappingProxyType({})


class KubeError(OneLineError):
    """A failed API call; str() is one line naming the request."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Gone(KubeError):  # noqa: N818 - the HTTP status's name; tests import it
    """410: the resourceVersion is too old; list again."""


@dataclass(frozen=True)
class KubeConfig:
    url: str
    token_path: str = ""
    ca_path: str = ""

    @classmethod
    def load(cls, config: Config, environ: Optional[Mapping[str, str]] = None,
             sa_dir: str = SERVICE_ACCOUNT_DIR) -> KubeConfig:
        environ = os.environ if environ is None else environ
        token = os.path.join(sa_dir, "token")
        ca = os.path.join(sa_dir, "ca.crt")
        token = token if os.path.isfile(token) else ""
        ca = ca if os.path.isfile(ca) else ""
        url = (config.kube_apiserver or "").rstrip("/")
        if url:
            if urlsplit(url).scheme not in ("http", "https"):
                raise KubeError(f"kube.apiserver: {url!r} is not an http(s) URL")
            return cls(url, token, ca)
        host = environ.get("KUBERNETES_SERVICE_HOST", "")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeError("kube.apiserver is empty and KUBERNETES_SERVICE_HOST is not set "
                            "(not in a cluster): set --kube.apiserver or --kube.enabled=false")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 service IP
        return cls(f"https://{host}:{port}", token, ca)


@dataclass(frozen=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    node: str = ""
    phase: str = ""
    ip: str = ""
    resource_version: str = ""
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # containerID ("containerd://<id>") -> container name, from the statuses of containers,
    # init containers and ephemeral containers: how a process's cgroup names its container.
    container_ids: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    lifecycle: PodLifecycle = _NO_LIFECYCLE

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodInfo:
        """A Pod object as the API server's JSON decodes (not validated: missing fields are "")."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        return cls(uid=meta.get("uid", ""), namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                   node=spec.get("nodeName", "") or "", phase=status.get("phase", "") or "",
                   ip=status.get("podIP", "") or "", resource_version=meta.get("resourceVersion", ""),
                   annotations=MappingProxyType(dict(meta.get("annotations") or {})),
                   labels=MappingProxyType(dict(meta.get("labels") or {})),
                   container_ids=_container_ids(status), lifecycle=PodLifecycle.from_object(obj))


_CONTAINER_STATUSES = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")


def _container_ids(status: Mapping[str, Any]) -> Mapping[str, str]:
    """{containerID: name} of every container status that has both (a container not yet
    started has no containerID)."""
    ids: dict[str, str] = {}
    for key in _CONTAINER_STATUSES:
        for cs in status.get(key) or ():
            if isinstance(cs, Mapping):
                cid, name = cs.get("containerID"), cs.get("name")
                if isinstance(cid, str) and cid and isinstance(name, str) and name:
                    ids[cid] = name
    return MappingProxyType(ids) if ids else _EMPTY


class KubeClient:
    """The API calls over http.client; one connection per call (calls are rare; a watch holds one)."""

    def __init__(self, kube: KubeConfig, timeout: float = 10.0) -> None:
        self.kube = kube
        self.timeout = timeout
        parts = urlsplit(kube.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl: Optional[ssl.SSLContext] = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=kube.ca_path or None)
        self._token, self._token_read_at = "", -1e18
        self._token_lock = threading.Lock()

    # --- plumbing ---

    def _bearer(self) -> str:
        if not self.kube.token_path:
            return ""
        with self._token_lock:
            now = time.monotonic()
            if now - self._token_read_at >= TOKEN_REFRESH_SECONDS:
                try:
                    with open(self.kube.token_path, encoding="utf-8") as fh:
                        self._token = fh.read().strip()
                    self._token_read_at = now
                except OSError as exc:
                    log.warning("kube: cannot read service-account token %s: %s", self.kube.token_path, exc.strerror)
                except UnicodeDecodeError as exc:
                    log.warning("kube: service-account token %s is not UTF-8 text (byte %d)", self.kube.token_path,
                                exc.start)
            return self._token

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _open(self, path: str, timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connect(timeout)
        headers = {"Accept": "application/json", "User-Agent": "gpulse"}
        token = self._bearer()
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            conn.request("GET", self._prefix + path, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise KubeError(f"GET {path}: {exc}") from None
        if resp.status != 200:
            body = resp.read(2048)
            conn.close()
            reason = _status_message(body) or resp.reason
            cls = Gone if resp.status == 410 else KubeError
            raise cls(f"GET {path}: HTTP {resp.status}: {reason}", resp.status)
        return conn, resp

    def post_json(self, path: str, body: Mapping[str, Any], timeout: Optional[float] = None) -> dict[str, Any]:
        """POST a JSON object (a review: TokenReview, SubjectAccessReview) -> the decoded reply;
        KubeError (one line) unless the API server answers 200 or 201."""
        conn = self._connect(timeout or self.timeout)
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "gpulse"}
        token = self._bearer()
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            conn.request("POST", self._prefix + path, body=json.dumps(body).encode(), headers=headers)
            resp = conn.getresponse()
            data = resp.read(1024 * 1024)
            if resp.status not in (200, 201):
                raise KubeError(f"POST {path}: HTTP {resp.status}: {_status_message(data) or resp.reason}",
                                resp.status)
            reply = json.loads(data)
            if not isinstance(reply, dict):
                raise ValueError(f"the reply is JSON {type(reply).__name__}, not an object")
            return reply
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KubeError(f"POST {path}: {exc}") from None
        finally:
            conn.close()

    def _get_json(self, path: str) -> dict[str, Any]:
        """The decoded JSON body (an API object; its fields are not validated here)."""
        conn, resp = self._open(path, self.timeout)
        try:
            body = resp.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise KubeError(f"GET {path}: the response is over {MAX_RESPONSE_BYTES} bytes")
            data = json.loads(body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KubeError(f"GET {path}: unreadable response: {exc}") from None
        finally:
            conn.close()
        if not isinstance(data, dict):
            raise KubeError(f"GET {path}: the response is JSON {type(data).__name__}, not an object")
        return data

    # --- the calls ---

    @staticmethod
    def on_node(collection: str, node: str, extra: str = "") -> str:
        """The path of `collection` ("/api/v1/pods") selected to objects of spec.nodeName=`node`."""
        return collection + "?fieldSelector=" + quote(f"spec.nodeName={node}", safe="") + extra

    @staticmethod
    def pods_path(node: str, extra: str = "") -> str:
        return KubeClient.on_node("/api/v1/pods", node, extra)

    def list_pods(self, node: str) -> tuple[tuple[PodInfo, ...], str]:
        """-> (pods as PodInfo tuple, list resourceVersion)."""
        data = self._get_json(self.pods_path(node))
        items, rv = self._items(data)
        return tuple(PodInfo.from_object(o) for o in items), rv

    def watch_pods(self, node: str, resource_version: str,
                   on_connection: Optional[Callable[[http.client.HTTPConnection], object]] = None,
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields (event type, object dict) until the server ends the watch."""
        return self.watch(self.pods_path(node, self.watch_query(resource_version)), "pods", on_connection)

    @staticmethod
    def watch_query(resource_version: str) -> str:
        """The query suffix of a watch from `resource_version`, with bookmarks and the server-side timeout."""
        return (f"&watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}"
                f"&resourceVersion={quote(resource_version, safe='')}")

    def list_objects(self, path: str) -> tuple[list[dict[str, Any]], str]:
        """A list call: (items as decoded JSON, the list's resourceVersion)."""
        return self._items(self._get_json(path))

    @staticmethod
    def _items(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """A list's objects (what is not an object is skipped) and its resourceVersion."""
        items = data.get("items")
        objects = [o for o in items if isinstance(o, dict)] if isinstance(items, list) else []
        return objects, _resource_version(data)

    def watch(self, path: str, what: str,
              on_connection: Optional[Callable[[http.client.HTTPConnection], object]] = None,
              ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields (event type, object dict) of the watch at `path` until the server ends it;
        `what` names the resource in errors."""
        conn, resp = self._open(path, WATCH_TIMEOUT_SECONDS + 30.0)
        if on_connection:
            on_connection(conn)
        try:
            while True:
                try:
                    line = resp.readline(MAX_EVENT_BYTES + 1)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise KubeError(f"watch {what}: stream broke: {exc}") from None
                if not line:
                    return
                if len(line) > MAX_EVENT_BYTES:
                    raise KubeError(f"watch {what}: an event over {MAX_EVENT_BYTES} bytes")
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise KubeError(f"watch {what}: undecodable event {line[:80]!r}") from None
                kind = event.get("type", "") if isinstance(event, dict) else None
                obj = event.get("object") or {} if isinstance(event, dict) else None
                if not isinstance(kind, str) or not isinstance(obj, dict):
                    raise KubeError(f"watch {what}: not a watch event {line[:80]!r}")
                if kind == "ERROR":
                    code = obj.get("code", 0)
                    msg = f"watch {what}: {obj.get('message', 'error event')} (code {code})"
                    raise (Gone if code == 410 else KubeError)(msg, code)
                yield kind, obj
        finally:
            conn.close()

    def get_node(self, name: str) -> dict[str, Any]:
        """The Node object as a dict (metadata.labels, spec.providerID, status...)."""
        return self._get_json("/api/v1/nodes/" + quote(name, safe=""))


def _resource_version(obj: Mapping[str, Any]) -> str:
    """metadata.resourceVersion of an object or a list; "" when absent or not a string."""
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""


def _status_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace").strip()


class PodIndex:
    """Pods on this node by UID and by namespace/name; replaced wholesale on change."""

    def __init__(self) -> None:
        self._by_uid: Mapping[str, PodInfo] = MappingProxyType({})
        self._by_name: Mapping[tuple[str, str], PodInfo] = MappingProxyType({})
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[PodIndex], object]] = []
        self.synced = False
        self.version = 0

    def by_uid(self, uid: str) -> Optional[PodInfo]:
        return self._by_uid.get(uid)

    def by_name(self, namespace: str, name: str) -> Optional[PodInfo]:
        return self._by_name.get((namespace, name))

    def pods(self) -> tuple[PodInfo, ...]:
        return tuple(self._by_uid.values())

    def subscribe(self, fn: Callable[[PodIndex], object]) -> None:
        self._subscribers.append(fn)

    # --- writers (the watch thread) ---

    def replace(self, pods: Iterable[PodInfo]) -> None:
        self._publish({p.uid: p for p in pods if p.uid})
        self.synced = True

    def apply(self, kind: str, pod: PodInfo) -> None:
        with self._lock:
            current = dict(self._by_uid)
        if kind == "DELETED":
            current.pop(pod.uid, None)
        else:
            current[pod.uid] = pod
        self._publish(current)

    def _publish(self, by_uid: dict[str, PodInfo]) -> None:
        with self._lock:
            self._by_uid = MappingProxyType(by_uid)
            self._by_name = MappingProxyType({(p.namespace, p.name): p for p in by_uid.values()})
            self.version += 1
        for fn in list(self._subscribers):
            try:
                fn(self)
            except Exception:  # a subscriber's bug must not stop the watch
                log.exception("kube: pod index subscriber failed")


class _Synced(Protocol):
    synced: bool


IndexT = TypeVar("IndexT", bound=_Synced)


class ListWatcher(Generic[IndexT]):
    """One resource on this node kept current from list + watch, on a Refresher's thread:
    one refresh is one list-and-watch session; a session that fails backs off 1 s doubling
    to 30 s; a 410 Gone lists again at once. Subclasses say how to list (`_list`, False when
    the API server does not serve the resource: the session then idles `idle_when_unserved`
    seconds), where to watch (`_watch_path`) and how to apply an event (`_apply`)."""

    what = ""  # names the resource in logs and errors
    idle_when_unserved = 300.0

    def __init__(self, client: KubeClient, node_name: str, index: IndexT, source: str) -> None:
        if not node_name:
            raise KubeError("node.name is empty: set NODE_NAME from the downward API (spec.nodeName)")
        self.client = client
        self.node_name = node_name
        self.index = index
        self.relists = 0
        self._rv = ""
        self._conn: Optional[http.client.HTTPConnection] = None
        self._stopped = threading.Event()
        self.refresher = Refresher(source, self._session, 0.0, retry_base=1.0, retry_ceiling=30.0,
                                   interrupt=self._interrupt)

    def _list(self) -> bool:
        raise NotImplementedError

    def _watch_path(self, resource_version: str) -> str:
        raise NotImplementedError

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._stopped.clear()
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()

    def status(self) -> SourceStatus:
        """A live watch keeps the index current: its age is 0 while up, and since the last
        event once the watch is down."""
        status = self.refresher.status()
        return SourceStatus(True, 0.0, "") if status.up else status

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.index.synced and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.index.synced

    def _interrupt(self) -> None:
        self._stopped.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:  # wakes the blocked readline; close() alone does not
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _set_conn(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn
        if self.refresher.stopping:
            self._interrupt()

    def _session(self) -> None:
        """List (when there is no resourceVersion to resume from), then watch until the
        server ends the watch; raises on failure."""
        try:
            if not self._rv:
                served = self._list()
                self.refresher.mark_up()
                if not served:
                    self._stopped.wait(self.idle_when_unserved)
                    return
            started, events = time.monotonic(), 0
            for kind, obj in self.client.watch(self._watch_path(self._rv), self.what, self._set_conn):
                events += 1
                self._rv = _resource_version(obj) or self._rv
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(kind, obj)
                self.refresher.mark_up()
            if not events and time.monotonic() - started < 1.0 and not self.refresher.stopping:
                time.sleep(1.0)  # a server that ends watches at once must not make us spin
        except Gone as exc:
            log.info("kube: %s; listing %s again", exc, self.what)
            self._rv = ""
        except KubeError:
            raise
        except Exception:
            self._rv = ""  # after a surprise in a response, list again
            raise
        finally:
            self._conn = None


class PodWatcher(ListWatcher[PodIndex]):
    """Keeps a PodIndex current from list + watch of this node's pods (source "apiserver")."""

    what = "pods"

    def __init__(self, client: KubeClient, node_name: str, index: Optional[PodIndex] = None) -> None:
        super().__init__(client, node_name, index or PodIndex(), "pod-watch")

    def _list(self) -> bool:
        pods, self._rv = self.client.list_pods(self.node_name)
        self.index.replace(pods)
        self.relists += 1
        return True

    def _watch_path(self, resource_version: str) -> str:
        return KubeClient.pods_path(self.node_name, KubeClient.watch_query(resource_version))

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        self.index.apply(kind, PodInfo.from_object(obj))
