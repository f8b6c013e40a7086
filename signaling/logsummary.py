"""Logging for things hostile clients can repeat at will: a few lines, then a count.

One line per refused message would let any client flood the log (and the disk) as fast as
it can send. ``SummaryLog`` writes the first ``first`` messages of each interval in full and
counts the rest by kind, then writes one summary line at the end of the interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any


class SummaryLog:
    def __init__(self, log: logging.Logger, what: str, interval_s: float = 10.0, first: int = 5) -> None:
        self.log, self.what, self.interval_s, self.first = log, what, interval_s, first
        self._window_end = 0.0
        self._written = 0
        self._held: Counter[str] = Counter()
        self._flush_at: asyncio.TimerHandle | None = None

    def warning(self, kind: str, msg: str, *args: Any) -> None:
        """Log ``msg % args`` unless this interval's quota is used; then count it as ``kind``."""
        now = time.monotonic()
        if now >= self._window_end:
            self.flush()
            self._window_end, self._written = now + self.interval_s, 0
        if self._written < self.first:
            self._written += 1
            self.log.warning(msg, *args)
            return
        self._held[kind] += 1
        if self._flush_at is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (tests of the class): flushed by the next call or by flush()
            self._flush_at = loop.call_later(max(0.0, self._window_end - now), self.flush)

    def flush(self) -> None:
        """Write the summary of what was held back, if anything."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._held:
            total = sum(self._held.values())
            kinds = ", ".join(f"{kind} x{n}" for kind, n in self._held.most_common(10))
            self.log.warning("%d more %s in the last %.0fs (not logged one by one): %s",
                             total, self.what, self.interval_s, kinds)
            self._held.clear()
