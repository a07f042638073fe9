# Type stub for the generated podresources_pb2_grpc.py (grpcio-tools writes no types); the
# same names and signatures, typed with grpc-stubs. Keep it in step with the .proto.

from collections.abc import Sequence
from typing import Any, Optional

import grpc

from . import podresources_pb2

GRPC_GENERATED_VERSION: str
GRPC_VERSION: str

class PodResourcesListerStub:
    List: grpc.UnaryUnaryMultiCallable[podresources_pb2.ListPodResourcesRequest,
                                       podresources_pb2.ListPodResourcesResponse]
    GetAllocatableResources: grpc.UnaryUnaryMultiCallable[podresources_pb2.AllocatableResourcesRequest,
                                                          podresources_pb2.AllocatableResourcesResponse]
    def __init__(self, channel: grpc.Channel) -> None: ...

class PodResourcesListerServicer:
    def List(  # noqa: N802 - gRPC method name
        self, request: podresources_pb2.ListPodResourcesRequest, context: grpc.ServicerContext,
    ) -> podresources_pb2.ListPodResourcesResponse: ...
    def GetAllocatableResources(  # noqa: N802 - gRPC method name
        self, request: podresources_pb2.AllocatableResourcesRequest, context: grpc.ServicerContext,
    ) -> podresources_pb2.AllocatableResourcesResponse: ...

def add_PodResourcesListerServicer_to_server(  # noqa: N802 - generated name
    servicer: PodResourcesListerServicer, server: grpc.Server,
) -> None: ...

class PodResourcesLister:
    @staticmethod
    def List(  # noqa: N802 - gRPC method name
        request: podresources_pb2.ListPodResourcesRequest,
        target: str,
        options: Sequence[tuple[str, Any]] = ...,
        channel_credentials: Optional[grpc.ChannelCredentials] = ...,
        call_credentials: Optional[grpc.CallCredentials] = ...,
        insecure: bool = ...,
        compression: Optional[grpc.Compression] = ...,
        wait_for_ready: Optional[bool] = ...,
        timeout: Optional[float] = ...,
        metadata: Optional[Sequence[tuple[str, str | bytes]]] = ...,
    ) -> podresources_pb2.ListPodResourcesResponse: ...
    @staticmethod
    def GetAllocatableResources(  # noqa: N802 - gRPC method name
        request: podresources_pb2.AllocatableResourcesRequest,
        target: str,
        options: Sequence[tuple[str, Any]] = ...,
        channel_credentials: Optional[grpc.ChannelCredentials] = ...,
        call_credentials: Optional[grpc.CallCredentials] = ...,
        insecure: bool = ...,
        compression: Optional[grpc.Compression] = ...,
        wait_for_ready: Optional[bool] = ...,
        timeout: Optional[float] = ...,
        metadata: Optional[Sequence[tuple[str, str | bytes]]] = ...,
    ) -> podresources_pb2.AllocatableResourcesResponse: ...
