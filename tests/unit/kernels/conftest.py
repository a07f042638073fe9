"""Fixtures parametrized over [compiled, pure]: every kernel test runs on both."""

from __future__ import annotations

import pytest

from .impls import load


@pytest.fixture(params=["compiled", "pure"])
def impl(request):
    return request.param


@pytest.fixture
def expo(impl):
    return load("expo", impl)


@pytest.fixture
def window(impl):
    return load("window", impl)


@pytest.fixture
def textparse(impl):
    return load("textparse", impl)
