"""Picks the compiled hot-path kernels (ext/) or their pure-Python twins.

GPULSE_NO_EXTENSIONS=1 forces the twins. Everything else imports kernels from here.
"""

from __future__ import annotations

import os

NO_EXTENSIONS = os.environ.get("GPULSE_NO_EXTENSIONS", "") not in ("", "0")

from ._expo_py import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE  # noqa: E402
from ._expo_py import ExpositionEncoder as PyExpositionEncoder  # noqa: E402
from ._window_py import WindowSet as PyWindowSet  # noqa: E402

ExpositionEncoder = PyExpositionEncoder
WindowSet = PyWindowSet
EXTENSIONS_LOADED = False

if not NO_EXTENSIONS:
    try:
        from ._expo import ExpositionEncoder  # type: ignore[no-redef]  # noqa: F401
        from ._window import WindowSet  # type: ignore[no-redef]  # noqa: F401
        EXTENSIONS_LOADED = True
    except ImportError:
        pass
