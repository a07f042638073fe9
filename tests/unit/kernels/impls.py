"""Loading a kernel implementation for tests: every kernel test runs against the compiled extension and its pure-Python twin.

The `compiled` case skips (with the reason) only when the extension was not built or
GPULSE_NO_EXTENSIONS=1; a built extension that fails to import fails the test.
"""

from __future__ import annotations

import glob
import importlib
import os
import pathlib

import pytest

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[3] / "agent"
NO_EXTENSIONS = os.environ.get("GPULSE_NO_EXTENSIONS", "") not in ("", "0")

TWINS = {"expo": "gpulse._expo_py", "window": "gpulse._window_py", "textparse": "gpulse._textparse_py"}


def built(kernel: str) -> bool:
    return bool(glob.glob(str(PACKAGE_DIR / f"_{kernel}.*.so")) + glob.glob(str(PACKAGE_DIR / f"_{kernel}.*.pyd")))


def load(kernel: str, impl: str):
    if impl == "pure":
        return importlib.import_module(TWINS[kernel])
    if NO_EXTENSIONS:
        pytest.skip("GPULSE_NO_EXTENSIONS=1: compiled kernels are disabled for this run")
    if not built(kernel):
        pytest.skip(f"gpulse._{kernel} extension not built (run: python setup.py build_ext --inplace)")
    return importlib.import_module(f"gpulse._{kernel}")


def both(kernel: str):
    """(compiled, pure) modules, for tests that compare the two."""
    return load(kernel, "compiled"), load(kernel, "pure")
