"""Pacing: release frames on a fixed grid of deadlines, and drop, never queue, late ones.

When the consumer (head, network) falls behind, the pacer skips to the current deadline and
counts what it skipped: frames are dropped, never queued, so a slow head or network raises
the drop count, not the latency.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import NamedTuple

from .source import TARGET_FPS, FrameSource


class Slot(NamedTuple):
    """Paced release number ``number`` (the grid's k): sleep ``delay`` seconds; ``skipped``
    deadlines were missed before it."""

    number: int
    delay: float
    skipped: int


class Pacer:
    """Release frames on the grid ``start + k / fps`` and drop, never queue, late ones.

    Deadlines are computed from the grid, not from "now", so waiting never drifts. When
    more than one period late, it jumps to the newest deadline already passed and counts
    the ones in between in ``dropped``: those frames are gone, the stream stays current.
    """

    def __init__(self, fps: float = TARGET_FPS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not fps > 0 or math.isinf(fps):
            raise ValueError(f"fps must be a positive finite number, not {fps}")
        self.fps = fps
        self.period = 1.0 / fps
        self.clock = clock
        self.dropped = 0
        self.released = 0
        self._start: float | None = None
        self._k = 0

    def schedule(self, now: float) -> Slot:
        """Plan the next release at time ``now`` (the logic of ``wait``, testable alone)."""
        skipped = 0
        if self._start is None:
            self._start = now
        else:
            self._k += 1
            late = now - self._deadline()
            if late > self.period:
                skipped = int(late / self.period)
                self._k += skipped
                self.dropped += skipped
        self.released += 1
        return Slot(self._k, max(0.0, self._deadline() - now), skipped)

    def _deadline(self) -> float:
        """Deadline of slot ``k``: multiplied out, so rounding errors do not add up."""
        return self._start + self._k * self.period  # type: ignore[operator]

    async def wait(self) -> Slot:
        """Sleep (without blocking the event loop) until the next deadline."""
        slot = self.schedule(self.clock())
        if slot.delay > 0:
            await asyncio.sleep(slot.delay)
        return slot


def pacer_for(source: FrameSource, target_fps: float = TARGET_FPS) -> Pacer | None:
    """The pacer a source should be read with: its own rate, capped at ``target_fps``.

    None for sources that are not realtime (read as fast as they decode).
    """
    if not source.realtime:
        return None
    if not source.fps > 0:
        raise ValueError(f"{source.name} has no frame rate yet; open() it first")
    return Pacer(min(source.fps, target_fps))
