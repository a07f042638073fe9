"""gRPC client for the kubelet's PodResources v1 API on its Unix socket.

One long-lived channel; every call carries a deadline and fails fast while the
kubelet is away (no wait-for-ready), so a refresh never hangs. After a failure the
caller backs off (gpulse.refresh) and `reset()` drops the channel so the next call
dials the socket afresh (a restarted kubelet recreates the socket file).
"""

from __future__ import annotations

import grpc

from ..errors import OneLineError
from . import podresources_pb2 as pb
from . import podresources_pb2_grpc as pb_grpc

_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # grpc's own reconnect backoff would otherwise grow to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.enable_http_proxy", 0),
)


class PodResourcesError(OneLineError):
    """One line: what failed, with the gRPC status."""


class PodResourcesClient:
    def __init__(self, socket_path: str, timeout_seconds: float = 2.0):
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self._channel = None
        self._stub = None

    def _lister(self):
        if self._stub is None:
            self._channel = grpc.insecure_channel("unix:" + self.socket_path, options=_CHANNEL_OPTIONS)
            self._stub = pb_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def _call(self, method: str, request):
        try:
            return getattr(self._lister(), method)(request, timeout=self.timeout_seconds)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "UNKNOWN"
            detail = (exc.details() if hasattr(exc, "details") else "") or ""
            detail = detail.splitlines()[0][:200] if detail else ""
            raise PodResourcesError(f"kubelet {method} on {self.socket_path}: {name}"
                                    + (f": {detail}" if detail else "")) from None

    def list(self) -> pb.ListPodResourcesResponse:
        return self._call("List", pb.ListPodResourcesRequest())

    def allocatable(self) -> pb.AllocatableResourcesResponse:
        return self._call("GetAllocatableResources", pb.AllocatableResourcesRequest())

    def reset(self) -> None:
        """Drop the channel; the next call dials again."""
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    close = reset
