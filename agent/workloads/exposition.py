"""The one place the workload scraper gets its Prometheus text parser from.

`gpulse.kernels.parse_exposition` (Cython, pure twin without a compiler) returns
`Exposition(samples, types, helps)`; samples are `(name, labels, value, timestamp)` with
labels a tuple of `(key, value)` pairs. `parse()` narrows that to what the adapters need.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Optional, Union

from ..kernels import ParseError, parse_exposition

# What gpulse.kernels.parse_exposition returns per sample: (name, ((label, value), ...),
# value, timestamp or None).
LabelPairs = tuple[tuple[str, str], ...]
Sample = tuple[str, LabelPairs, float, Optional[float]]


class ExpositionError(ValueError):
    """The body is not Prometheus text format; str() says where."""


def parse(data: Union[str, bytes, bytearray, memoryview],
          wanted: Optional[Iterable[str]] = None) -> tuple[list[Sample], dict[str, str]]:
    """-> (samples, types); only samples named in `wanted` (all when None), never NaN.

    NaN samples are dropped here: an adapter must never turn "no value" into NaN.
    """
    try:
        result = parse_exposition(data)
    except ParseError as exc:
        raise ExpositionError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ExpositionError(f"byte {exc.start}: not UTF-8") from None
    want = frozenset(wanted) if wanted is not None else None
    samples = [s for s in result.samples
               if (want is None or s[0] in want) and not math.isnan(s[2])]
    return samples, result.types
