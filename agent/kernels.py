"""Picks the compiled hot-path kernels (ext/) or their pure-Python twins.

GPULSE_NO_EXTENSIONS=1 forces the twins. Everything else imports kernels from here:

- ExpositionEncoder(openmetrics=False).render(families) -> bytes, .render_view(families)
  -> read-only memoryview of a pooled buffer (no copy; reused only once unreferenced).
- compress(body) -> gzip bytes at a fast level (ISA-L, else zlib-ng, else zlib level 1).
- WindowSet(horizon, capacity) and fold_process_samples(samples, since_us).
- parse_exposition(data, max_samples=, max_line_bytes=) -> Exposition; ParseError.
- ExpositionParser(wanted, max_samples=, max_line_bytes=): the same parse fed in chunks
  (.feed(chunk), .close() -> Exposition), skipping lines of unwanted metric names before
  building anything; past max_samples kept samples a SampleLimitError (a ParseError).

Type checkers see the pure twins: the compiled extensions are untyped and behave the same.
"""

from __future__ import annotations

import os
import sys
import zlib
from typing import TYPE_CHECKING, Protocol, Union

__all__ = [
    "COMPRESSOR",
    "DEFAULT_MAX_SAMPLES",
    "EXTENSIONS_LOADED",
    "NO_EXTENSIONS",
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "Exposition",
    "ExpositionEncoder",
    "ExpositionParser",
    "ParseError",
    "SampleLimitError",
    "WindowSet",
    "compress",
    "fold_process_samples",
    "parse_exposition",
]

from ._expo_py import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, ExpositionEncoder
from ._textparse_py import (
    DEFAULT_MAX_SAMPLES,
    Exposition,
    ExpositionParser,
    ParseError,
    SampleLimitError,
    parse_exposition,
)
from ._window_py import WindowSet, fold_process_samples

NO_EXTENSIONS = os.environ.get("GPULSE_NO_EXTENSIONS", "") not in ("", "0")
EXTENSIONS_LOADED = False

if not TYPE_CHECKING and not NO_EXTENSIONS:
    try:
        from ._expo import ExpositionEncoder
        from ._textparse import Exposition, ExpositionParser, ParseError, SampleLimitError, parse_exposition
        from ._window import WindowSet, fold_process_samples

        EXTENSIONS_LOADED = True
    except ImportError:
        pass

Buffer = Union[bytes, bytearray, memoryview]


class _Deflate(Protocol):
    """The part of a zlib-like module used here (zlib, isal.isal_zlib, zlib_ng.zlib_ng)."""

    def compress(self, data: Buffer, /, level: int = ..., wbits: int = ...) -> bytes: ...


class _Zlib310:
    """zlib.compress takes wbits only from Python 3.11; a compressobj gives the same bytes."""

    @staticmethod
    def compress(data: Buffer, /, level: int = -1, wbits: int = zlib.MAX_WBITS) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, wbits)
        return c.compress(data) + c.flush()


def _fast_deflate() -> tuple[_Deflate, str]:
    # gzip framing (wbits=31) at level 1. At 10k series (2.5 MB) bench/RESULTS.md measures
    # ISA-L about 5x and zlib-ng about 3x faster than zlib; both are optional.
    try:
        from isal import isal_zlib
    except ImportError:
        pass
    else:
        return isal_zlib, "isal"
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        pass
    else:
        return zlib_ng, "zlib-ng"
    if sys.version_info >= (3, 11):
        return zlib, "zlib"
    return _Zlib310(), "zlib"


_GZIP_WBITS = 31
_fast_zlib, COMPRESSOR = _fast_deflate()


def compress(body: Buffer) -> bytes:
    """gzip-framed body (Content-Encoding: gzip) at level 1; accepts any bytes-like."""
    return _fast_zlib.compress(body, 1, wbits=_GZIP_WBITS)
