"""The dispatch module loads the extensions whenever they were built."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
from gpulse import kernels

from .impls import NO_EXTENSIONS, PACKAGE_DIR, built

pytestmark = pytest.mark.kernels


@pytest.mark.parametrize("kernel", ["expo", "window", "textparse"])
def test_built_extension_is_the_one_loaded(kernel):
    if NO_EXTENSIONS:
        assert not kernels.EXTENSIONS_LOADED
        pytest.skip("GPULSE_NO_EXTENSIONS=1: the twins are expected")
    if not built(kernel):
        pytest.skip(f"gpulse._{kernel} extension not built")
    assert kernels.EXTENSIONS_LOADED, f"gpulse._{kernel} is built in {PACKAGE_DIR} but gpulse.kernels loaded the pure twins"
    public = {"expo": "ExpositionEncoder", "window": "WindowSet", "textparse": "parse_exposition"}[kernel]
    assert getattr(kernels, public).__module__ == f"gpulse._{kernel}"


def test_no_extensions_env_forces_twins():
    code = "from gpulse import kernels; print(kernels.EXTENSIONS_LOADED, kernels.ExpositionEncoder.__module__, kernels.parse_exposition.__module__, kernels.WindowSet.__module__)"
    out = subprocess.run([sys.executable, "-c", code], env={"GPULSE_NO_EXTENSIONS": "1", "PATH": ""}, cwd=PACKAGE_DIR.parent, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "gpulse._expo_py", "gpulse._textparse_py", "gpulse._window_py"]


def test_compress_is_gzip_and_takes_views():
    body = b'gpulse_gpu_temperature_celsius{gpu="0"} 41\n' * 5000
    for data in (body, memoryview(body), bytearray(body)):
        packed = kernels.compress(data)
        assert packed[:2] == b"\x1f\x8b"
        assert gzip.decompress(packed) == body
    assert len(kernels.compress(body)) < len(body) // 10
    assert kernels.COMPRESSOR in ("isal", "zlib-ng", "zlib")
