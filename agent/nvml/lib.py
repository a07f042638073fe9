"""The NVML library: pynvml, imported here and nowhere else.

The reader calls functions by name on whatever `lib` it is given; the simulator's fake takes
pynvml's constants, exception classes and structures from `load_real()` too, so both sides
share one definition of NVML's names.
"""

from __future__ import annotations

from types import ModuleType
from typing import cast


def load_real() -> ModuleType:
    """The pynvml module itself."""
    import pynvml  # untyped: the checker sees Any

    return cast(ModuleType, pynvml)
