"""One agent per attack module (started once, stopped after): every test attacks it and then
asserts that it still holds, so a later test also sees what the earlier attacks left."""

import pytest

from tests.attack.harness import Agent, tmpdir


@pytest.fixture(scope="module")
def agent():
    a = Agent(tmpdir())
    yield a
    a.close()
