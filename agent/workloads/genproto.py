"""Regenerates the committed push-service stubs (`make proto`, and the currency test).

protoc writes `import push_pb2` in the gRPC stub, which only resolves with agent/workloads
on sys.path; inside the package it must be relative, so that one line is rewritten.
Needs grpcio-tools (a test/build dependency, never a runtime one).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "push.proto"
STUBS = ("push_pb2.py", "push_pb2_grpc.py")
_ABSOLUTE_IMPORT = "import push_pb2 as push__pb2"
_RELATIVE_IMPORT = "from . import push_pb2 as push__pb2"


def generate(out_dir: str = HERE) -> None:
    from grpc_tools import protoc

    args = ["grpc_tools.protoc", f"-I{HERE}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", os.path.join(HERE, PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {os.path.join(HERE, PROTO)}")
    stub = os.path.join(out_dir, STUBS[1])
    with open(stub, encoding="utf-8") as fh:
        text = fh.read()
    if _ABSOLUTE_IMPORT not in text:
        raise RuntimeError(f"{stub}: expected line {_ABSOLUTE_IMPORT!r} not found")
    with open(stub, "w", encoding="utf-8") as fh:
        fh.write(text.replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT))


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else HERE)
