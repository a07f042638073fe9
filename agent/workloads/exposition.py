"""The one place the workload scraper gets its Prometheus text parser from.

`gpulse.kernels.ExpositionParser` (Cython, pure twin without a compiler) reads the text as
Prometheus' scrape parser does; samples are `(name, labels, value, timestamp)` with labels a
tuple of `(key, value)` pairs. `parse()` narrows a whole body to what the adapters need;
`Stream` does the same for a body fed in chunks as it arrives (the scraper's path): lines
of families not wanted are skipped before anything is built for them, and more than
`max_series` kept samples end the parse with a one-line TooManySeriesError, so a body of
17,000 models costs the cap, not the body.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Optional, Union

from ..kernels import DEFAULT_MAX_SAMPLES, ExpositionParser, ParseError, SampleLimitError

# What gpulse.kernels.parse_exposition returns per sample: (name, ((label, value), ...),
# value, timestamp or None).
LabelPairs = tuple[tuple[str, str], ...]
Sample = tuple[str, LabelPairs, float, Optional[float]]
Data = Union[str, bytes, bytearray, memoryview]

# Samples of the wanted families kept from one endpoint: a server with a few hundred models,
# each with a handful of queue, KV and request-count series, stays well under it.
MAX_SERIES = 10_000


class ExpositionError(ValueError):
    """The body is not Prometheus text format; str() says where."""


class TooManySeriesError(ExpositionError):
    """More samples of the wanted families than the cap; str() says how many and where."""


class Stream:
    """feed(chunk) as the body arrives, then finish() -> (samples, types), as parse() gives."""

    def __init__(self, wanted: Optional[Iterable[str]] = None, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self._parser = ExpositionParser(wanted, max_samples=max_series)

    def feed(self, chunk: Data) -> None:
        try:
            self._parser.feed(chunk)
        except (ParseError, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def finish(self) -> tuple[list[Sample], dict[str, str]]:
        try:
            result = self._parser.close()
        except (ParseError, UnicodeDecodeError) as exc:
            raise self._error(exc) from None
        # NaN samples are dropped here: an adapter must never turn "no value" into NaN.
        return [s for s in result.samples if not math.isnan(s[2])], result.types

    def _error(self, exc: Exception) -> ExpositionError:
        if isinstance(exc, SampleLimitError):
            return TooManySeriesError(f"more than {self.max_series} series of the families gpulse reads "
                                      f"(at line {exc.lineno})")
        if isinstance(exc, UnicodeDecodeError):
            return ExpositionError(f"byte {exc.start}: not UTF-8")
        return ExpositionError(str(exc))


def parse(data: Data, wanted: Optional[Iterable[str]] = None,
          max_series: Optional[int] = None) -> tuple[list[Sample], dict[str, str]]:
    """-> (samples, types); only samples named in `wanted` (all when None), never NaN.

    With `wanted`, lines of other families are skipped unread (a broken line there is not
    an error). TooManySeriesError past `max_series` kept samples (default: MAX_SERIES with
    `wanted`, the kernel's own bound without).
    """
    if max_series is None:
        max_series = MAX_SERIES if wanted is not None else DEFAULT_MAX_SAMPLES
    stream = Stream(wanted, max_series)
    stream.feed(data)
    return stream.finish()
