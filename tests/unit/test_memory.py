"""glibc allocator bounds, applied at serve start unless the environment sets them."""

import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
@pytest.mark.parametrize("env,applied", [
    ({}, {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 131072}),
    ({"MALLOC_ARENA_MAX": "4"}, {"MALLOC_MMAP_THRESHOLD_": 131072}),  # the operator's setting wins
])
def test_bounds_unless_the_environment_sets_them(env, applied):
    code = "from gpulse import memory; print(sorted(memory.bound_allocator().items()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")} | env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sorted(applied.items()))
