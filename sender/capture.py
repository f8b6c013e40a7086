"""Capture: choosing the source (``open_source``) and reading it on its own thread (``frames``).

Threading: a source's ``read()`` blocks (waiting for the camera, decoding), so it must not
run on the event loop that also drives WebRTC. ``frames()`` runs it in one dedicated worker
thread, paced by a ``Pacer``; the sender's preprocess and head run on that same thread right
after each read (``step``), because every thread hand-off costs the event loop a wake-up and
nothing else needs the frame in between.

The sources live in ``sender.source`` (the contract), ``sender.camera``, ``sender.video`` and
``sender.pattern``; pacing in ``sender.pacer``. Their names are re-exported here for the
code written before the split (``from sender.capture import VideoFileSource``).
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, overload

from .camera import CameraSource
from .pacer import Pacer, Slot, pacer_for
from .pattern import PatternSource
from .source import TARGET_FPS, Captured, CaptureError, FrameSource, SourceBase
from .video import VideoFileSource

__all__ = ["TARGET_FPS", "CameraSource", "CaptureError", "Captured", "Frame", "FrameSource", "Pacer",
           "PatternSource", "Slot", "SourceBase", "VideoFileSource", "frames", "open_source", "pacer_for"]

Frame = Captured  # the name before the split
T = TypeVar("T")


def open_source(camera: int | str | None = None, video: str | Path | None = None,
                loop: bool = False, realtime: bool = True) -> FrameSource:
    """Build and open the source the command line asked for; the pattern if none.

    Opened here so that a missing camera or a bad file is reported before any WebRTC
    negotiation starts.
    """
    if camera is not None and video is not None:
        raise ValueError("give a camera or a video file, not both")
    source: FrameSource
    if camera is not None:
        source = CameraSource(camera)
    elif video is not None:
        source = VideoFileSource(video, loop=loop, realtime=realtime)
    else:
        source = PatternSource()
    source.open()
    return source


def _identity(frame: Captured) -> Captured:
    return frame


def _skip_then_read(source: FrameSource, skip: int, step: Callable[[Captured], Any]) -> tuple[Any, int]:
    """Worker-thread step: drop what the pacer says is stale, read the frame to use, and
    run ``step`` on it while still on this thread. Also returns how many frames were really
    skipped (fewer at the end of a file)."""
    skipped = source.skip(skip) if skip else 0
    frame = source.read()
    return (step(frame) if frame is not None else None), skipped


@overload
def frames(source: FrameSource, pacer: Pacer | None = None) -> AsyncGenerator[Captured, None]: ...


@overload
def frames(source: FrameSource, pacer: Pacer | None, step: Callable[[Captured], T]) -> AsyncGenerator[T, None]: ...


async def frames(source: FrameSource, pacer: Pacer | None = None,
                 step: Callable[[Captured], Any] = _identity) -> AsyncGenerator[Any, None]:
    """Yield ``step(frame)`` for each frame ``read()`` in one dedicated thread, paced by
    ``pacer`` if given (``step`` defaults to the frame itself).

    The iterator owns the source: it opens it (if not yet open) and closes it when done,
    also when the consumer stops early (use ``contextlib.aclosing``). One thread for all
    calls because camera backends and decoders are not made for concurrent use.
    When the source runs faster than the pacer (a 60 fps file paced at 30), frames are
    skipped to keep the file in step with the wall clock.
    """
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capture-{source.name}")
    try:
        await loop.run_in_executor(worker, source.open)
        ratio = source.fps / pacer.fps if pacer and source.fps > pacer.fps else 1.0
        first_slot: int | None = None
        consumed = 0  # source frames read or skipped so far
        slot = Slot(0, 0.0, 0)
        while True:
            skip = 0
            if pacer is not None:
                slot = await pacer.wait()
                first_slot = slot.number if first_slot is None else first_slot
                due = math.floor((slot.number - first_slot) * ratio + 1e-9)  # frame of this slot
                skip = max(0, due - consumed)
            item, skipped = await loop.run_in_executor(worker, _skip_then_read, source, skip, step)
            if item is None:
                if pacer is not None and skipped < skip:  # slots past the end: no frame was lost
                    pacer.dropped -= min(skip - skipped, slot.skipped)
                return
            consumed += skip + 1
            yield item
    finally:
        await loop.run_in_executor(worker, source.close)
        worker.shutdown(wait=False)
