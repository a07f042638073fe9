"""The committed gRPC stubs are what `make proto` generates from the .proto files."""

import filecmp
import os

import pytest

from tools import gen_proto as genproto

pytest.importorskip("grpc_tools")


@pytest.mark.parametrize("name", sorted(genproto.PROTOS))
def test_stubs_are_current(tmp_path, name):
    genproto.generate(name, str(tmp_path))
    folder = genproto.PROTOS[name][0]
    for stub in genproto.stubs(name):
        committed = os.path.join(folder, stub)
        assert filecmp.cmp(committed, str(tmp_path / stub), shallow=False), f"{committed} is stale: run `make proto`"
