"""Regenerates the committed gRPC stubs (`make proto`; tests check they are current).

protoc writes `import x_pb2` in each gRPC stub, which only resolves with the stub's own
folder on sys.path; inside the package it must be a relative import, so that one line is
rewritten after generation. Needs grpcio-tools (a dev dependency, never runtime).
"""

from __future__ import annotations

import os
import sys

AGENT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "agent")
# name -> (folder, proto file): the kubelet's PodResources API and the node-local push service
PROTOS = {
    "podresources": (os.path.join(AGENT_DIR, "kube"), "podresources.proto"),
    "push": (os.path.join(AGENT_DIR, "workloads"), "push.proto"),
}


def stubs(name: str) -> tuple:
    """The generated files; {name}_pb2_grpc.pyi is written by hand (protoc has no typed gRPC
    output) against grpc-stubs."""
    return f"{name}_pb2.py", f"{name}_pb2.pyi", f"{name}_pb2_grpc.py"


def generate(name: str, out_dir: str | None = None) -> None:
    from grpc_tools import protoc

    folder, proto = PROTOS[name]
    out_dir = out_dir or folder
    args = ["grpc_tools.protoc", f"-I{folder}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(folder, proto)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {os.path.join(folder, proto)}")
    stub = os.path.join(out_dir, f"{name}_pb2_grpc.py")
    absolute, relative = f"import {name}_pb2 as {name}__pb2", f"from . import {name}_pb2 as {name}__pb2"
    with open(stub, encoding="utf-8") as fh:
        text = fh.read()
    if absolute not in text:
        raise RuntimeError(f"{stub}: expected line {absolute!r} not found")
    with open(stub, "w", encoding="utf-8") as fh:
        fh.write(text.replace(absolute, relative))


if __name__ == "__main__":
    for proto_name in sys.argv[1:] or PROTOS:
        generate(proto_name)
