"""gRPC client for the kubelet's PodResources v1 API on its Unix socket.

One long-lived channel; every call carries a deadline and fails fast while the
kubelet is away (no wait-for-ready), so a refresh never hangs. After a failure the
caller backs off (gpulse.refresh) and `reset()` drops the channel so the next call
dials the socket afresh (a restarted kubelet recreates the socket file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, TypeVar

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

_T = TypeVar("_T")


class PodResourcesError(OneLineError):
    """One line: what failed, with the gRPC status."""


class PodResourcesClient:
    def __init__(self, socket_path: str, timeout_seconds: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[pb_grpc.PodResourcesListerStub] = None

    def _lister(self) -> pb_grpc.PodResourcesListerStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel("unix:" + self.socket_path, options=_CHANNEL_OPTIONS)
            self._stub = pb_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def _call(self, method: str, invoke: Callable[[pb_grpc.PodResourcesListerStub], _T]) -> _T:
        """invoke(stub) makes the call named `method`; a gRPC failure becomes a PodResourcesError."""
        try:
            return invoke(self._lister())
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "UNKNOWN"
            detail = (exc.details() if hasattr(exc, "details") else "") or ""
            detail = detail.splitlines()[0][:200] if detail else ""
            raise PodResourcesError(f"kubelet {method} on {self.socket_path}: {name}"
                                    + (f": {detail}" if detail else "")) from None

    def list(self) -> pb.ListPodResourcesResponse:
        return self._call("List", lambda stub: stub.List(pb.ListPodResourcesRequest(), timeout=self.timeout_seconds))

    def allocatable(self) -> pb.AllocatableResourcesResponse:
        return self._call("GetAllocatableResources",
                          lambda stub: stub.GetAllocatableResources(pb.AllocatableResourcesRequest(),
                                                                    timeout=self.timeout_seconds))

    def reset(self) -> None:
        """Drop the channel; the next call dials again."""
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    close = reset
