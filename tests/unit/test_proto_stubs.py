"""The committed push-service stubs are what `make proto` generates from push.proto."""

import os

import pytest

from agent.workloads import genproto

pytest.importorskip("grpc_tools")


def test_stubs_are_current(tmp_path):
    genproto.generate(str(tmp_path))
    for name in genproto.STUBS:
        with open(os.path.join(genproto.HERE, name), encoding="utf-8") as fh:
            committed = fh.read()
        with open(tmp_path / name, encoding="utf-8") as fh:
            fresh = fh.read()
        assert committed == fresh, f"agent/workloads/{name} is stale: run `make proto`"
