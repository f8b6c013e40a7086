"""Where the sender's frames come from: a camera, a video file or the built-in pattern.

All sources share one interface (``FrameSource``) so the pipeline after them (preprocess,
head, send) is the same code on a laptop with a webcam, on a server with a video file and
in the tests, which feed the camera code a video file because no webcam exists there.

Threading: ``read()`` blocks (waiting for the camera, decoding), so it must not run on the
event loop that also drives WebRTC. ``frames()`` runs it in one dedicated worker thread.

Pacing: ``Pacer`` releases frames on a fixed grid of deadlines. When the consumer falls
behind it skips to the current deadline and counts what it skipped: frames are dropped,
never queued, so a slow head or network raises the drop count, not the latency.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

# OpenCV's FFmpeg backend prints its own errors ("moov atom not found") to stderr; ours say
# more, so keep FFmpeg quiet unless the user asked otherwise. Read when a capture opens.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2
import numpy as np

from splitcore.runtime.preprocess import ColorOrder

try:
    import av
except ImportError:  # PyAV is optional here: OpenCV decodes most files as well
    av = None

log = logging.getLogger(__name__)
TARGET_FPS = 30.0


class CaptureError(RuntimeError):
    """A source cannot deliver frames; the message says which one and what to use instead."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    ``image``: HxWx3 uint8 in the source's ``color`` order (BGR for every source here). A
    source may reuse this buffer: it is valid until the next ``read()``; copy it to keep it.
    ``timestamp``: ``time.monotonic()`` seconds when the source got the frame; the latency
    clock starts here. ``index``: position in the source's stream from 0; skipped frames
    use up indices, so gaps show drops. ``media_time``: seconds into a file, if known.
    ``result``: what ``frames(..., compute=f)`` made of the image, in the capture thread,
    and ``computed`` the ``time.monotonic()`` when it was done.
    """

    image: np.ndarray
    timestamp: float
    index: int
    media_time: float | None = None
    result: Any = None
    computed: float = 0.0


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

    def read(self) -> Frame | None:
        """Block until the next frame; None at the end of the stream."""

    def skip(self, n: int) -> int:
        """Discard up to ``n`` upcoming frames the consumer is too late for; return how many."""

    def close(self) -> None:
        """Release the device or file; idempotent."""


class _SourceBase:
    """Context-manager support shared by the sources."""

    def __enter__(self):
        self.open()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


def _describe_device(device: int | str) -> str:
    """Name a camera the way the user would look for it (``/dev/video0`` on Linux)."""
    if isinstance(device, int) and sys.platform.startswith("linux"):
        return f"/dev/video{device}"
    return f"camera index {device}" if isinstance(device, int) else str(device)


class CameraSource(_SourceBase):
    """A camera through OpenCV: an index, a ``/dev/videoN`` path, or any URL/file OpenCV opens.

    Asks for a one-frame driver buffer so a frame read late is still a recent one (not all
    backends honour it). A camera that stops delivering frames ends the stream (None).
    """

    color: ColorOrder = "bgr"
    realtime = True

    def __init__(self, device: int | str, fps: float = TARGET_FPS) -> None:
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.requested_fps = fps
        self.fps = fps
        self.name = f"camera:{_describe_device(self.device)}"
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def open(self) -> None:
        """Open the camera and check that it delivers a frame before anything else starts."""
        if self._cap is not None:
            return
        where = _describe_device(self.device)
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            raise CaptureError(f"no camera at {where}: OpenCV could not open it; "
                               "use --video FILE or the built-in pattern")
        cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not cap.grab():
            cap.release()
            raise CaptureError(f"camera at {where} opened but gave no frame (in use by another "
                               "program?); use --video FILE or the built-in pattern")
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = reported if reported and reported > 0 else self.requested_fps
        self._cap = cap

    def read(self) -> Frame | None:
        """Grab, stamp, then decode: the timestamp is taken as close to capture as possible."""
        if self._cap is None:
            raise CaptureError(f"{self.name} is not open; call open() first")
        if not self._cap.grab():
            log.warning("%s stopped delivering frames", self.name)
            return None
        stamp = time.monotonic()
        ok, image = self._cap.retrieve()
        if not ok:
            return None
        self._index += 1
        return Frame(image, stamp, self._index - 1)

    def skip(self, n: int) -> int:
        """Nothing to skip: a live camera only ever has the newest frame ready."""
        return 0

    def close(self) -> None:
        """Release the device so another program (or a new source) can open it."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _Decoder(Protocol):
    """One open video file; ``next`` returns (BGR image or None if not wanted, seconds)."""

    fps: float

    def next(self, want_image: bool) -> tuple[np.ndarray | None, float | None] | None: ...

    def close(self) -> None: ...


class _PyAVDecoder:
    """Decode with PyAV: exact frame times from the container and FFmpeg's full format list."""

    def __init__(self, path: Path) -> None:
        self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise CaptureError(f"{path} has no video stream")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self._frames = self._container.decode(stream)

    def next(self, want_image: bool) -> tuple[np.ndarray | None, float | None] | None:
        """Decode one frame; converting it is skipped when the caller only skips it."""
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:
            raise CaptureError(f"decoding failed: {exc}") from exc
        image = frame.to_ndarray(format="bgr24") if want_image else None
        return image, (float(frame.time) if frame.time is not None else None)

    def close(self) -> None:
        """Free FFmpeg's demuxer and decoder."""
        self._container.close()


class _OpenCVDecoder:
    """Decode with OpenCV, for files PyAV cannot open or when PyAV is not installed."""

    def __init__(self, path: Path) -> None:
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise CaptureError(f"OpenCV cannot open {path}")
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = reported if reported and reported > 0 else 0.0

    def next(self, want_image: bool) -> tuple[np.ndarray | None, float | None] | None:
        """Grab one frame, and decode it only when the caller wants the pixels."""
        if not self._cap.grab():
            return None
        seconds = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if not want_image:
            return None, seconds
        ok, image = self._cap.retrieve()
        return (image, seconds) if ok else None

    def close(self) -> None:
        """Release the file."""
        self._cap.release()


def _open_decoder(path: Path, backend: str) -> _Decoder:
    """PyAV first (better timing), OpenCV if PyAV is missing or fails; errors say both."""
    if backend not in ("auto", "pyav", "opencv"):
        raise ValueError(f"backend must be 'auto', 'pyav' or 'opencv', not {backend!r}")
    reasons: list[str] = []
    if backend in ("auto", "pyav"):
        if av is None:
            reasons.append("PyAV: not installed")
        else:
            try:
                return _PyAVDecoder(path)
            except (av.FFmpegError, CaptureError) as exc:
                reasons.append(f"PyAV: {exc}")
    if backend in ("auto", "opencv"):
        try:
            return _OpenCVDecoder(path)
        except CaptureError as exc:
            reasons.append(f"OpenCV: {exc}")
    raise CaptureError(f"cannot decode {path} (is it a video file?): " + "; ".join(reasons))


class VideoFileSource(_SourceBase):
    """A video file, decoded with PyAV (OpenCV as fallback), optionally looped.

    ``realtime=True`` asks to be played at the file's own frame rate (``pacer_for`` reads
    ``realtime`` and ``fps``); False is for benchmarks and evaluation, as fast as decoding.
    """

    color: ColorOrder = "bgr"

    def __init__(self, path: str | Path, loop: bool = False, realtime: bool = True,
                 backend: str = "auto") -> None:
        self.path = Path(path)
        self.loop = loop
        self.realtime = realtime
        self.backend = backend
        self.name = f"video:{self.path.name}"
        self.fps = 0.0
        self._decoder: _Decoder | None = None
        self._pending: tuple[np.ndarray | None, float | None] | None = None
        self._index = 0

    def open(self) -> None:
        """Open the file and decode its first frame, so a file without frames fails here."""
        if self._decoder is not None:
            return
        if not self.path.is_file():
            raise CaptureError(f"video file not found: {self.path}")
        decoder = _open_decoder(self.path, self.backend)
        first = decoder.next(want_image=True)
        if first is None:
            decoder.close()
            raise CaptureError(f"{self.path} contains no decodable video frame")
        if decoder.fps <= 0:
            log.warning("%s does not state a frame rate; assuming %.0f fps", self.path, TARGET_FPS)
        self.fps = decoder.fps if decoder.fps > 0 else TARGET_FPS
        self._decoder, self._pending = decoder, first

    def _next(self, want_image: bool) -> tuple[np.ndarray | None, float | None] | None:
        """The next decoded frame, restarting the file at its end when looping."""
        if self._decoder is None:
            raise CaptureError(f"{self.name} is not open; call open() first")
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        item = self._decoder.next(want_image)
        if item is None and self.loop:
            self._decoder.close()
            self._decoder = _open_decoder(self.path, self.backend)
            item = self._decoder.next(want_image)
        return item

    def read(self) -> Frame | None:
        """Decode the next frame; None at the end of a file that does not loop."""
        item = self._next(want_image=True)
        if item is None:
            return None
        image, seconds = item
        self._index += 1
        return Frame(image, time.monotonic(), self._index - 1, seconds)  # type: ignore[arg-type]

    def skip(self, n: int) -> int:
        """Decode (inter-frame codecs need it) but do not convert ``n`` frames; count them."""
        done = 0
        while done < n and self._next(want_image=False) is not None:
            done += 1
        self._index += done
        return done

    def close(self) -> None:
        """Release the file."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self._pending = None


class Slot(NamedTuple):
    """One paced release: sleep ``delay`` seconds; ``skipped`` deadlines were missed before."""

    index: int
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


def _skip_then_read(source: FrameSource, skip: int,
                    compute: Callable[[np.ndarray], Any] | None = None) -> tuple[Frame | None, int]:
    """Worker-thread step: drop what the pacer says is stale, read the frame to use, and
    run ``compute`` on it while still on this thread (one hand-off per frame, not three).
    Also returns how many frames were really skipped (fewer at the end of a file)."""
    skipped = source.skip(skip) if skip else 0
    frame = source.read()
    if frame is not None and compute is not None:
        result = compute(frame.image)
        frame = replace(frame, result=result, computed=time.monotonic())
    return frame, skipped


async def frames(source: FrameSource, pacer: Pacer | None = None,
                 compute: Callable[[np.ndarray], Any] | None = None) -> AsyncIterator[Frame]:
    """Yield frames with ``read()`` in one dedicated thread, paced by ``pacer`` if given.

    The iterator owns the source: it opens it (if not yet open) and closes it when done,
    also when the consumer stops early (use ``contextlib.aclosing``). One thread for all
    calls because camera backends and decoders are not made for concurrent use.
    When the source runs faster than the pacer (a 60 fps file paced at 30), frames are
    skipped to keep the file in step with the wall clock. ``compute`` (the sender's
    preprocess and head) runs on the same thread right after each read, into ``Frame.result``:
    every thread hand-off costs the event loop a wake-up, and this path has no other use for
    the frame in between.
    """
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capture-{source.name}")
    try:
        await loop.run_in_executor(worker, source.open)
        ratio = source.fps / pacer.fps if pacer and source.fps > pacer.fps else 1.0
        first_slot: int | None = None
        consumed = 0  # source frames read or skipped so far
        while True:
            skip = 0
            if pacer is not None:
                slot = await pacer.wait()
                first_slot = slot.index if first_slot is None else first_slot
                due = math.floor((slot.index - first_slot) * ratio + 1e-9)  # frame of this slot
                skip = max(0, due - consumed)
            frame, skipped = await loop.run_in_executor(worker, _skip_then_read, source, skip, compute)
            if frame is None:
                if pacer is not None and skipped < skip:  # slots past the end: no frame was lost
                    pacer.dropped -= min(skip - skipped, slot.skipped)
                return
            consumed += skip + 1
            yield frame
    finally:
        await loop.run_in_executor(worker, source.close)
        worker.shutdown(wait=False)


def open_source(camera: int | str | None = None, video: str | Path | None = None,
                loop: bool = False, realtime: bool = True) -> FrameSource:
    """Build and open the source the command line asked for; the pattern if none.

    Opened here so that a missing camera or a bad file is reported before any WebRTC
    negotiation starts.
    """
    from .pattern import PatternSource  # here: pattern.py imports Frame from this module

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
