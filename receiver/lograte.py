"""Logging that a hostile peer cannot turn into a flood: one line per interval, with counts.

The first event of each kind in an interval (up to ``MAX_SHOWN`` kinds) is logged with its
detail (peer, frame, what was wrong), so a lone bad message is as easy to diagnose as
before; the rest of the interval is counted by kind and summarised in one line when the
interval is over. 177k bad messages once wrote 29 MB of log; with this, a subject costs at
most ``MAX_SHOWN + 1`` lines per interval.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_KINDS = 32  # kinds are error codes and reasons we name ourselves; a cap keeps it bounded anyway
MAX_SHOWN = 4   # kinds logged in full per interval; further kinds are only counted


class RateLimitedLog:
    """Warnings about one subject (a peer, the offers a receiver gets), rate-limited."""

    def __init__(self, log: logging.Logger, subject: str, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.subject, self.interval_s, self.clock = log, subject, interval_s, clock
        self._since: float | None = None   # start of the current interval (None: none open)
        self._held: dict[str, int] = {}    # events counted, not logged, in this interval
        self._shown: set[str] = set()      # kinds logged in full in this interval
        self.total = 0

    def event(self, kind: str, detail: str) -> None:
        """One occurrence of ``kind``; logs ``detail`` only if it opens an interval."""
        self.total += 1
        now = self.clock()
        if self._since is not None and now - self._since >= self.interval_s:
            self.flush()
        if self._since is None:
            self._since, self._shown = now, set()
        if kind not in self._shown and len(self._shown) < MAX_SHOWN:
            self._shown.add(kind)
            self.log.warning("%s: %s", self.subject, detail)
            return
        if kind not in self._held and len(self._held) >= MAX_KINDS:
            kind = "other"
        self._held[kind] = self._held.get(kind, 0) + 1

    def tick(self) -> None:
        """Called periodically: closes an interval that is over, so its summary is not held
        back until the next event."""
        if self._since is not None and self.clock() - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Log what the open interval counted (if anything) and close it."""
        if self._since is not None and self._held:
            n = sum(self._held.values())
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self._held.items(), key=lambda kv: -kv[1]))
            self.log.warning("%s: %d more in the last %.1f s (%s)", self.subject, n,
                             self.clock() - self._since, kinds)
        self._since, self._held, self._shown = None, {}, set()
