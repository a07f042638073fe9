"""Regenerates the committed PodResources stubs (`make proto`, and the currency test).

protoc writes `import podresources_pb2` in the gRPC stub, which only works when
agent/kube is on sys.path; inside the package it must be a relative import, so the
one line is rewritten after generation. Needs grpcio-tools (a test dependency).
"""

from __future__ import annotations

import os
import sys

KUBE_DIR = os.path.dirname(os.path.abspath(__file__))
PROTO = "podresources.proto"
STUBS = ("podresources_pb2.py", "podresources_pb2_grpc.py")
_ABSOLUTE_IMPORT = "import podresources_pb2 as podresources__pb2"
_RELATIVE_IMPORT = "from . import podresources_pb2 as podresources__pb2"


def generate(out_dir: str = KUBE_DIR) -> None:
    from grpc_tools import protoc  # test/build dependency only

    args = ["grpc_tools.protoc", f"-I{KUBE_DIR}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", os.path.join(KUBE_DIR, PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {os.path.join(KUBE_DIR, PROTO)}")
    grpc_stub = os.path.join(out_dir, STUBS[1])
    with open(grpc_stub, encoding="utf-8") as fh:
        text = fh.read()
    if _ABSOLUTE_IMPORT not in text:
        raise RuntimeError(f"{grpc_stub}: expected line {_ABSOLUTE_IMPORT!r} not found")
    with open(grpc_stub, "w", encoding="utf-8") as fh:
        fh.write(text.replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT))


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else KUBE_DIR)
