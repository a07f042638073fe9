from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReportRequest(_message.Message):
    __slots__ = ("namespace", "pod", "server", "model", "queue_depth", "running_requests")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RUNNING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    server: str
    model: str
    queue_depth: float
    running_requests: float
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., server: _Optional[str] = ..., model: _Optional[str] = ..., queue_depth: _Optional[float] = ..., running_requests: _Optional[float] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: float
    def __init__(self, ttl_seconds: _Optional[float] = ...) -> None: ...
