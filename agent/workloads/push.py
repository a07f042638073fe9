"""Push ingestion: a gRPC service on a node-local Unix socket (see push.proto).

A workload that is not an HTTP server reports its queue depth with its pod identity; the
entry lives `ttl` seconds after its last report. Requests are checked before anything is
stored: Kubernetes name syntax for namespace and pod, finite non-negative numbers, bounded
label lengths, and (once the pod list is known) a pod that is on this node. Anything else
is refused with INVALID_ARGUMENT (or NOT_FOUND for a foreign pod), with a message naming
the field. The store is capped so a misbehaving client cannot grow the agent's memory.

The socket is made world-writable: it lives in a host directory mounted only into the
pods that opt in, and those run as arbitrary UIDs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, Optional, overload

import grpc

from ..names import is_dns1123_label, is_dns1123_subdomain
from ..snapshot import WorkloadState
from . import push_pb2, push_pb2_grpc

if TYPE_CHECKING:
    from ..kube.apiserver import PodIndex

log = logging.getLogger(__name__)

DEFAULT_SERVER = "push"
MAX_ENTRIES = 4096
MAX_VALUE = 1e12
_SERVER = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")


class InvalidRequestError(ValueError):
    pass


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
    """(namespace, pod, server, model) -> values, expiring `ttl` after the last report."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES):
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        # (namespace, pod, server, model) -> (queue_depth, running_requests, expires at)
        self._entries: dict[tuple[str, str, str, str], tuple[float, Optional[float], float]] = {}
        self._lock = threading.Lock()

    def report(self, namespace: str, pod: str, server: str, model: str, queue_depth: float,
               running_requests: Optional[float] = None) -> bool:
        """False when the store is full and this is a new entry."""
        key = (namespace, pod, server, model)
        now = self.clock()
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                self._prune(now)
                if len(self._entries) >= self.max_entries:
                    return False
            self._entries[key] = (queue_depth, running_requests, now + self.ttl)
        return True

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


class _Service(push_pb2_grpc.QueueDepthServicer):
    def __init__(self, store: PushStore, pod_index: Optional[PodIndex] = None) -> None:
        self.store = store
        self.pod_index = pod_index

    def Report(  # noqa: N802 - gRPC method name
            self, request: push_pb2.ReportRequest, context: grpc.ServicerContext) -> push_pb2.ReportReply:
        try:
            ns, pod, server, model, queue, running = validate(request)
        except InvalidRequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        index = self.pod_index
        if index is not None and index.synced and index.by_name(ns, pod) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"pod {ns}/{pod} is not on this node")
        if not self.store.report(ns, pod, server, model, queue, running):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {self.store.max_entries} pushed queues")
        return push_pb2.ReportReply(ttl_seconds=self.store.ttl)


class PushServer:
    def __init__(self, socket_path: str, store: PushStore, pod_index: Optional[PodIndex] = None) -> None:
        self.socket_path = socket_path
        self.store = store
        self.pod_index = pod_index
        self._server: Optional[grpc.Server] = None

    def start(self) -> None:
        directory = os.path.dirname(self.socket_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # left by a previous agent on this node
        server = grpc.server(ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpulse-push"),
                             options=[("grpc.max_receive_message_length", 64 * 1024)])
        push_pb2_grpc.add_QueueDepthServicer_to_server(_Service(self.store, self.pod_index), server)
        if server.add_insecure_port("unix:" + self.socket_path) == 0:
            raise OSError(f"workloads.push-socket: cannot listen on {self.socket_path}")
        server.start()
        os.chmod(self.socket_path, 0o666)  # noqa: S103 - world-writable on purpose (see the module docstring)
        self._server = server
        log.info("workloads: push service listening on unix:%s", self.socket_path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def push_once(socket_path: str, namespace: str, pod: str, queue_depth: float,
              running_requests: Optional[float] = None, server: str = "", model: str = "",
              timeout: float = 2.0) -> float:
    """Client helper (used by the simulation and examples): report once -> ttl seconds."""
    with grpc.insecure_channel("unix:" + socket_path) as channel:
        stub = push_pb2_grpc.QueueDepthStub(channel)
        request = push_pb2.ReportRequest(namespace=namespace, pod=pod, server=server, model=model,
                                         queue_depth=queue_depth)
        if running_requests is not None:
            request.running_requests = running_requests
        return stub.Report(request, timeout=timeout).ttl_seconds
