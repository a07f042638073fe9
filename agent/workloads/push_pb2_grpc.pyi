# Type stub for the generated push_pb2_grpc.py (grpcio-tools writes no types); the same names
# and signatures, typed with grpc-stubs. Keep it in step with the .proto.

from collections.abc import Sequence
from typing import Any, Optional

import grpc

from . import push_pb2

GRPC_GENERATED_VERSION: str
GRPC_VERSION: str

class QueueDepthStub:
    Report: grpc.UnaryUnaryMultiCallable[push_pb2.ReportRequest, push_pb2.ReportReply]
    def __init__(self, channel: grpc.Channel) -> None: ...

class QueueDepthServicer:
    def Report(  # noqa: N802 - gRPC method name
        self, request: push_pb2.ReportRequest, context: grpc.ServicerContext,
    ) -> push_pb2.ReportReply: ...

def add_QueueDepthServicer_to_server(servicer: QueueDepthServicer, server: grpc.Server) -> None: ...  # noqa: N802

class QueueDepth:
    @staticmethod
    def Report(  # noqa: N802 - gRPC method name
        request: push_pb2.ReportRequest,
        target: str,
        options: Sequence[tuple[str, Any]] = ...,
        channel_credentials: Optional[grpc.ChannelCredentials] = ...,
        call_credentials: Optional[grpc.CallCredentials] = ...,
        insecure: bool = ...,
        compression: Optional[grpc.Compression] = ...,
        wait_for_ready: Optional[bool] = ...,
        timeout: Optional[float] = ...,
        metadata: Optional[Sequence[tuple[str, str | bytes]]] = ...,
    ) -> push_pb2.ReportReply: ...
