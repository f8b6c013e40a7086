"""What every frame source gives the sender: the ``FrameSource`` contract and ``Captured``.

All sources (``sender.camera``, ``sender.video``, ``sender.pattern``) share this interface so
the pipeline after them (preprocess, head, encode, send) is the same code on a laptop with a
webcam, on a server with a video file and in the tests, which feed the camera code a video
file because no webcam exists there. This module imports no source, so each source imports
it without a cycle; ``sender.capture.open_source`` is where one is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

from splitcore.runtime.preprocess import ColorOrder

TARGET_FPS = 30.0


class CaptureError(RuntimeError):
    """A source cannot deliver frames; the message says which one and what to use instead."""


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured frame: the first typed value of the per-frame path.

    ``image``: HxWx3 uint8 in the source's ``color`` order (BGR for every source here). A
    source may reuse this buffer: it is valid until the next ``read()``; copy it to keep it.
    ``timestamp``: ``time.monotonic()`` seconds when the source got the frame; the latency
    clock starts here. ``index``: position in the source's stream from 0; skipped frames
    use up indices, so gaps show drops. ``media_time``: seconds into a file, if known.
    """

    image: np.ndarray
    timestamp: float
    index: int
    media_time: float | None = None


@runtime_checkable
class FrameSource(Protocol):
    """What the sender needs from a source; ``fps`` is meaningful once ``open()`` returned.

    ``realtime`` says the frames belong to wall-clock time (camera, pattern, a video played
    at its own speed) and should be paced; False means as fast as ``read()`` allows.
    """

    name: str
    fps: float
    color: ColorOrder
    realtime: bool

    def open(self) -> None:
        """Acquire the device or file; raise ``CaptureError`` if impossible; idempotent."""

    def read(self) -> Captured | None:
        """Block until the next frame; None at the end of the stream."""

    def skip(self, n: int) -> int:
        """Discard up to ``n`` upcoming frames the consumer is too late for; return how many."""

    def close(self) -> None:
        """Release the device or file; idempotent."""


class SourceBase:
    """Context-manager support shared by the sources (``with VideoFileSource(p) as s:``)."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
