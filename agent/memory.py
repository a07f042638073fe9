"""Bounds on glibc's allocator, set once at start, before the agent's threads exist.

glibc gives threads their own malloc arenas (up to 8 per core) and keeps freed memory in
them; it also raises its mmap threshold to the size of any large block freed, after which
large buffers (a scraped body, a rendered exposition) come from the arenas and stay in the
process after use. Under many threads and large inputs both keep RSS high long after the
work is done: 20 concurrent requests with 1 MB of headers held the old server at 130 MiB,
63-71 MiB with MALLOC_ARENA_MAX=2 (see the issue's figures in docs/hardening.md).

So the agent sets, unless the environment already does (MALLOC_ARENA_MAX,
MALLOC_MMAP_THRESHOLD_, as the DaemonSet does too): two arenas, and a fixed 128 KiB mmap
threshold, so that every large buffer is mapped on its own and unmapped when freed.
Nothing happens on a C library other than glibc.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024


def bound_allocator() -> dict[str, int]:
    """Apply the bounds the environment does not set; -> what was set (empty elsewhere)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = {}
    for env, option, value in (("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
                               ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD)):
        if env in os.environ:
            continue
        if mallopt(option, value) == 1:
            applied[env] = value
        else:
            log.debug("mallopt(%d, %d) refused", option, value)
    return applied
