"""Push ingestion: a gRPC service on a node-local Unix socket (see push.proto).

A workload that is not an HTTP server reports its queue depth; the entry lives `ttl`
seconds after its last report. Who may report what:

- `auth="pod"` (the default): the caller is attested by its socket's peer credentials
  (gpulse.workloads.peers): its PID's cgroup names its pod, and the pod list names the pod.
  A pod may push only for itself: a request naming another pod is refused with
  PERMISSION_DENIED, one naming none is the caller's own; a caller in no pod, or in a pod
  not on this node, is refused too. An autoscaler reading these numbers can trust them.
- `auth="none"`: the request's namespace and pod are taken as given (once the pod list is
  known, the pod must be on this node). For a node without the Kubernetes API.

Requests are checked before anything is stored: Kubernetes name syntax, finite non-negative
numbers, bounded label lengths; a request that does not decode is refused like any other
(INVALID_ARGUMENT), never with a traceback. Memory is bounded per pod (`per_pod` series) and
in all (`max_entries`), so a flooding pod refuses only itself; in-flight RPCs are bounded
(`MAX_CONCURRENT_RPCS`, then RESOURCE_EXHAUSTED), and so are connections and bytes per pod
(the gateway). Every refusal is counted in gpulse_requests_refused_total{component="push"}
and logged at most once a minute per reason.

The socket is made world-writable: it lives in a host directory mounted only into the pods
that opt in, and those run as arbitrary UIDs; identity comes from the attestation, not from
file permissions.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Optional, overload

import grpc
from google.protobuf.message import DecodeError

from ..names import is_dns1123_label, is_dns1123_subdomain
from ..refusals import Refusals
from ..snapshot import WorkloadState
from . import push_pb2
from .peers import PeerGateway

if TYPE_CHECKING:
    from ..kube.apiserver import PodIndex

log = logging.getLogger(__name__)

DEFAULT_SERVER = "push"
MAX_ENTRIES = 4096
MAX_ENTRIES_PER_POD = 32  # like the model cap of a scraped endpoint
MAX_VALUE = 1e12
MAX_CONCURRENT_RPCS = 16
MAX_MESSAGE_BYTES = 4096  # a ReportRequest is a few hundred bytes
SERVICE = "gpulse.push.v1.QueueDepth"
COMPONENT = "push"
_SERVER = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")


class InvalidRequestError(ValueError):
    pass


class RefusedError(Exception):
    """A request refused for who sent it; carries the gRPC status and a refusal reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@overload
def _number(request: push_pb2.ReportRequest, field: str, required: Literal[True]) -> float: ...
@overload
def _number(request: push_pb2.ReportRequest, field: str, required: bool) -> Optional[float]: ...
def _number(request: push_pb2.ReportRequest, field: str, required: bool) -> Optional[float]:
    if not request.HasField(field):
        if required:
            raise InvalidRequestError(f"{field} is required")
        return None
    value: float = getattr(request, field)
    if not math.isfinite(value) or value < 0 or value > MAX_VALUE:
        raise InvalidRequestError(f"{field}={value!r}: expected a finite number from 0 to {MAX_VALUE:g}")
    return value


def validate(request: push_pb2.ReportRequest) -> tuple[str, str, str, str, float, Optional[float]]:
    """ReportRequest -> (namespace, pod, server, model, queue_depth, running_requests)."""
    ns, pod = request.namespace, request.pod
    if not is_dns1123_label(ns):
        raise InvalidRequestError(f"namespace={ns[:80]!r}: expected a Kubernetes namespace name")
    if not is_dns1123_subdomain(pod):
        raise InvalidRequestError(f"pod={pod[:80]!r}: expected a Kubernetes pod name")
    server = request.server or DEFAULT_SERVER
    if not _SERVER.match(server):
        raise InvalidRequestError(
            f"server={server[:80]!r}: expected lower-case letters, digits, '.', '_' or '-' (max 63)")
    model = request.model
    if len(model) > 256 or any(ord(c) < 32 for c in model):
        raise InvalidRequestError("model: at most 256 printable characters")
    return (ns, pod, server, model, _number(request, "queue_depth", True),
            _number(request, "running_requests", False))


class PushStore:
    """(namespace, pod, server, model) -> values, expiring `ttl` after the last report;
    at most `per_pod` series per pod and `max_entries` in all."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES,
                 per_pod: int = MAX_ENTRIES_PER_POD):
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.per_pod = per_pod
        # (namespace, pod, server, model) -> (queue_depth, running_requests, expires at)
        self._entries: dict[tuple[str, str, str, str], tuple[float, Optional[float], float]] = {}
        self._per_pod: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def report(self, namespace: str, pod: str, server: str, model: str, queue_depth: float,
               running_requests: Optional[float] = None) -> bool:
        """False when this is a new series and its pod, or the store, is full."""
        return self.admit(namespace, pod, server, model, queue_depth, running_requests) == ""

    def admit(self, namespace: str, pod: str, server: str, model: str, queue_depth: float,
              running_requests: Optional[float] = None) -> str:
        """"" when stored; "pod_quota" or "store_full" when refused."""
        key = (namespace, pod, server, model)
        owner = (namespace, pod)
        now = self.clock()
        with self._lock:
            if key not in self._entries:
                if self._per_pod.get(owner, 0) >= self.per_pod or len(self._entries) >= self.max_entries:
                    self._prune(now)
                if self._per_pod.get(owner, 0) >= self.per_pod:
                    return "pod_quota"
                if len(self._entries) >= self.max_entries:
                    return "store_full"
                self._per_pod[owner] = self._per_pod.get(owner, 0) + 1
            self._entries[key] = (queue_depth, running_requests, now + self.ttl)
        return ""

    def states(self) -> tuple[WorkloadState, ...]:
        now = self.clock()
        with self._lock:
            self._prune(now)
            items = sorted(self._entries.items())
        return tuple(WorkloadState(ns, pod, server, model, queue_depth=q, running_requests=r, scrape_up=True)
                     for (ns, pod, server, model), (q, r, _exp) in items)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._entries.items() if v[2] <= now]:
            del self._entries[key]
            owner = key[:2]
            left = self._per_pod.get(owner, 1) - 1
            if left > 0:
                self._per_pod[owner] = left
            else:
                self._per_pod.pop(owner, None)


class _Undecodable:
    """What _decode returns for bytes that are no ReportRequest."""


_UNDECODABLE = _Undecodable()


def _printable(text: str) -> str:
    """A peer's text for a one-line message and log: no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _decode(data: bytes) -> push_pb2.ReportRequest | _Undecodable:
    """grpcio logs a traceback when a deserializer raises (and treats None as a failure too):
    an undecodable request becomes a marker here and is refused by the handler instead."""
    try:
        return push_pb2.ReportRequest.FromString(data)
    except (DecodeError, ValueError, TypeError):
        return _UNDECODABLE


class _Service:
    def __init__(self, store: PushStore, pod_index: Optional[PodIndex], gateway: Optional[PeerGateway],
                 refusals: Refusals) -> None:
        self.store = store
        self.pod_index = pod_index
        self.gateway = gateway
        self.refusals = refusals

    def report(self, request: push_pb2.ReportRequest | _Undecodable,
               context: grpc.ServicerContext) -> push_pb2.ReportReply:
        try:
            if isinstance(request, _Undecodable):
                raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "invalid", "undecodable ReportRequest")
            caller = self._caller(context)
            if caller is not None:
                ns, pod = caller
                if (request.namespace or request.pod) and (request.namespace, request.pod) != caller:
                    raise RefusedError(grpc.StatusCode.PERMISSION_DENIED, "other_pod",
                                       f"the caller runs in pod {ns}/{pod} and may push only for it, not for "
                                       f"{_printable(request.namespace[:63])}/{_printable(request.pod[:253])}")
                request.namespace, request.pod = ns, pod
            try:
                ns, pod, server, model, queue, running = validate(request)
            except InvalidRequestError as exc:
                raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "invalid", str(exc)) from None
            index = self.pod_index
            if caller is None and index is not None and index.synced and index.by_name(ns, pod) is None:
                raise RefusedError(grpc.StatusCode.NOT_FOUND, "unknown_pod", f"pod {ns}/{pod} is not on this node")
            refused = self.store.admit(ns, pod, server, model, queue, running)
            if refused == "pod_quota":
                raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED, refused,
                                   f"pod {ns}/{pod} already pushes {self.store.per_pod} series (at most "
                                   f"{self.store.per_pod} per pod)")
            if refused:
                raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED, refused,
                                   f"more than {self.store.max_entries} pushed series on this node")
        except RefusedError as exc:
            self.refusals.refuse(COMPONENT, exc.reason, exc.message)
            context.abort(exc.code, exc.message)
        return push_pb2.ReportReply(ttl_seconds=self.store.ttl)

    def _caller(self, context: grpc.ServicerContext) -> Optional[tuple[str, str]]:
        """(namespace, pod) of the attested caller; None when pushes are not attested."""
        if self.gateway is None:
            return None
        peer = self.gateway.peer(context.peer())
        if peer is None:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED, "unattested",
                               "the connection did not come through the push socket")
        if peer.error:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED, "no_pod", peer.error)
        index = self.pod_index
        if index is None:
            raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "no_pod_list",
                               "the agent has no pod list (Kubernetes API off) to tell which pod pushes; "
                               "start it with --workloads.push-auth=none to trust what pushes name")
        if not index.synced:
            raise RefusedError(grpc.StatusCode.UNAVAILABLE, "no_pod_list", "the pod list is not loaded yet; retry")
        pod = index.by_uid(peer.pod_uid)
        if pod is None:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED, "unknown_pod",
                               f"PID {peer.pid} runs in pod UID {peer.pod_uid}, which is not on this node")
        return pod.namespace, pod.name


class PushServer:
    def __init__(self, socket_path: str, store: PushStore, pod_index: Optional[PodIndex] = None, *,
                 auth: str = "pod", procfs: str = "/proc", refusals: Optional[Refusals] = None) -> None:
        if auth not in ("pod", "none"):
            raise ValueError(f"push auth {auth!r}: expected pod or none")
        self.socket_path = socket_path
        self.store = store
        self.pod_index = pod_index
        self.auth = auth
        self.procfs = procfs
        self.refusals = refusals or Refusals()
        self.gateway: Optional[PeerGateway] = None
        self._server: Optional[grpc.Server] = None
        self._inode: Optional[tuple[int, int]] = None

    def start(self) -> None:
        directory = os.path.dirname(self.socket_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        _clear_stale_socket(self.socket_path)
        server = grpc.server(ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpulse-push"),
                             maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
                             options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.max_concurrent_streams", 4),
                                      ("grpc.max_connection_idle_ms", 120_000)])
        gateway = PeerGateway(self.socket_path, self.procfs, self.refusals) if self.auth == "pod" else None
        service = _Service(self.store, self.pod_index, gateway, self.refusals)
        handler = grpc.unary_unary_rpc_method_handler(service.report, request_deserializer=_decode,
                                                      response_serializer=push_pb2.ReportReply.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Report": handler}),))
        try:
            if gateway is not None:
                gateway.listen()
                target = gateway.upstream
            else:
                target = self.socket_path
            if server.add_insecure_port("unix:" + target) == 0:
                raise OSError(f"workloads.push-socket: cannot listen on {target}")
            server.start()
            if gateway is not None:
                gateway.start()
        except BaseException:
            if gateway is not None:
                gateway.stop()
            raise
        os.chmod(self.socket_path, 0o666)  # noqa: S103 - world-writable on purpose (see the module docstring)
        st = os.stat(self.socket_path)
        self._inode = (st.st_dev, st.st_ino)
        self._server, self.gateway = server, gateway
        log.info("workloads: push service listening on unix:%s (%s)", self.socket_path,
                 "each pod pushes for itself" if gateway is not None else "pushes are not attested")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        try:  # only the socket this server made: never a file someone put there since
            st = os.stat(self.socket_path)
            if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.socket_path)
        except OSError:
            pass


def _clear_stale_socket(path: str) -> None:
    """Remove a socket left by a previous agent; refuse to touch anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"workloads.push-socket: {path} exists and is not a socket; not replacing it")
    os.unlink(path)


def push_once(socket_path: str, namespace: str, pod: str, queue_depth: float,
              running_requests: Optional[float] = None, server: str = "", model: str = "",
              timeout: float = 2.0) -> float:
    """Client helper (used by the simulation and examples): report once -> ttl seconds.
    With attested pushes, namespace and pod may be "" (the caller's own pod)."""
    with grpc.insecure_channel("unix:" + socket_path) as channel:
        return report(channel, namespace, pod, queue_depth, running_requests, server, model, timeout)


def report(channel: grpc.Channel, namespace: str, pod: str, queue_depth: float,
           running_requests: Optional[float] = None, server: str = "", model: str = "",
           timeout: float = 2.0) -> float:
    """One Report on an open channel -> ttl seconds (grpc.RpcError when refused)."""
    call: Any = channel.unary_unary(f"/{SERVICE}/Report", request_serializer=push_pb2.ReportRequest.SerializeToString,
                                    response_deserializer=push_pb2.ReportReply.FromString)
    request = push_pb2.ReportRequest(namespace=namespace, pod=pod, server=server, model=model,
                                     queue_depth=queue_depth)
    if running_requests is not None:
        request.running_requests = running_requests
    reply: push_pb2.ReportReply = call(request, timeout=timeout)
    return float(reply.ttl_seconds)
