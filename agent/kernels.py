"""Picks the compiled hot-path kernels (ext/) or their pure-Python twins.

GPULSE_NO_EXTENSIONS=1 forces the twins. Everything else imports kernels from here:

- ExpositionEncoder(openmetrics=False).render(families) -> bytes, .render_view(families)
  -> read-only memoryview of a pooled buffer (no copy; reused only once unreferenced).
- compress(body) -> gzip bytes at a fast level (ISA-L, else zlib-ng, else zlib level 1).
- WindowSet(horizon, capacity) and fold_process_samples(samples, since_us).
- parse_exposition(data, max_samples=, max_line_bytes=) -> Exposition; ParseError.
"""

from __future__ import annotations

import os
import zlib

NO_EXTENSIONS = os.environ.get("GPULSE_NO_EXTENSIONS", "") not in ("", "0")

from ._expo_py import (  # noqa: E402,F401
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    ExpositionEncoder,  # noqa: E402
)
from ._textparse_py import Exposition, ParseError, parse_exposition  # noqa: E402
from ._window_py import WindowSet, fold_process_samples  # noqa: E402

EXTENSIONS_LOADED = False

if not NO_EXTENSIONS:
    try:
        from ._expo import ExpositionEncoder  # type: ignore[no-redef]  # noqa: F811
        from ._textparse import Exposition, ParseError, parse_exposition  # type: ignore[no-redef]  # noqa: F811
        from ._window import WindowSet, fold_process_samples  # type: ignore[no-redef]  # noqa: F811

        EXTENSIONS_LOADED = True
    except ImportError:
        pass

# gzip framing (wbits=31) at level 1. At 10k series (2.5 MB) bench/RESULTS.md measures
# ISA-L about 5x and zlib-ng about 3x faster than zlib; both are optional.
_GZIP_WBITS = 31
try:
    from isal import isal_zlib as _fast_zlib

    COMPRESSOR = "isal"
except ImportError:
    try:
        from zlib_ng import zlib_ng as _fast_zlib

        COMPRESSOR = "zlib-ng"
    except ImportError:
        _fast_zlib = zlib
        COMPRESSOR = "zlib"


def compress(body) -> bytes:
    """gzip-framed body (Content-Encoding: gzip) at level 1; accepts any bytes-like."""
    return _fast_zlib.compress(body, 1, wbits=_GZIP_WBITS)
