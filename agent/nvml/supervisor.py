"""Keeps an NvmlReader running: start with backoff, restart after a driver reload.

NVML missing or failing at start leaves the agent serving (gpulse_source_up{source="nvml"}
0, /readyz 503) and retries after 1 s, doubling to 60 s. A reader that reports
`needs_restart` (the driver was reloaded under it) is stopped and started again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Optional

from ..errors import one_line
from ..refresh import SourceStatus
from .reader import NvmlReader

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0


class NvmlSupervisor:
    def __init__(self, load: Callable[[], Any], clock: Callable[[], float] = time.monotonic):
        self._load = load
        self._clock = clock
        self.reader: Optional[NvmlReader] = None
        self.error = "not started"
        self._retry_at = 0.0
        self._backoff = 1.0

    def ready_reader(self, now: float) -> Optional[NvmlReader]:
        """The running reader, starting or restarting it when due; None while NVML is down."""
        if self.reader is not None and self.reader.needs_restart:
            log.warning("NVML needs a restart (%s): re-initialising", self.reader.needs_restart)
            self.error = f"NVML restarting: {self.reader.needs_restart}"
            self._stop_reader()
        if self.reader is None and now >= self._retry_at:
            self._start(now)
        return self.reader

    def _start(self, now: float) -> None:
        try:
            reader = NvmlReader(self._load(), clock=self._clock)
            reader.start()
        except Exception as exc:  # noqa: BLE001 - NVML missing or failing: keep serving, retry
            self.error = one_line(exc)
            self._retry_at = now + self._backoff
            log.warning("NVML not available (retry in %.0fs): %s", self._backoff, self.error)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            return
        self.reader, self.error, self._backoff = reader, "", 1.0
        log.info("NVML started: driver %s, %d GPUs", reader.driver_version, len(reader.devices))

    def _stop_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.stop()
            except Exception:
                log.debug("stopping the NVML reader failed", exc_info=True)

    def stop(self) -> None:
        self._stop_reader()

    def status(self) -> SourceStatus:
        """NVML is read in the tick itself: no age to report."""
        return SourceStatus(self.reader is not None, None, self.error)
