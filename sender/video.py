"""A video file as a frame source: PyAV first (exact frame times, FFmpeg's formats), OpenCV
as the fallback, optionally looped; played at its own rate or as fast as it decodes."""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType
from typing import Protocol

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # see sender.camera: our errors say more
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from splitcore.process.cli import logger  # noqa: E402
from splitcore.runtime.preprocess import ColorOrder  # noqa: E402

from .source import TARGET_FPS, Captured, CaptureError, SourceBase  # noqa: E402

av: ModuleType | None
try:
    import av
except ImportError:  # PyAV is optional here: OpenCV decodes most files as well
    av = None

log = logger("sender.video")
_Decoded = tuple[np.ndarray | None, float | None]


class _Decoder(Protocol):
    """One open video file; ``next`` returns (BGR image or None if not wanted, seconds)."""

    fps: float

    def next(self, want_image: bool) -> _Decoded | None: ...

    def close(self) -> None: ...


class _PyAVDecoder:
    """Decode with PyAV: exact frame times from the container and FFmpeg's full format list."""

    def __init__(self, path: Path) -> None:
        assert av is not None  # _open_decoder checks
        self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise CaptureError(f"{path} has no video stream")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self._frames = self._container.decode(stream)

    def next(self, want_image: bool) -> _Decoded | None:
        """Decode one frame; converting it is skipped when the caller only skips it."""
        assert av is not None
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

    def next(self, want_image: bool) -> _Decoded | None:
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


class VideoFileSource(SourceBase):
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
        self._pending: _Decoded | None = None
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

    def _next(self, want_image: bool) -> _Decoded | None:
        """The next decoded frame, restarting the file at its end when looping."""
        if self._decoder is None:
            raise CaptureError(f"{self.name} is not open; call open() first")
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        item = self._decoder.next(want_image)
        if item is None and self.loop:
            self._decoder.close()
            self._decoder = _open_decoder(self.path, self.backend)
            item = self._decoder.next(want_image)
        return item

    def read(self) -> Captured | None:
        """Decode the next frame; None at the end of a file that does not loop."""
        item = self._next(want_image=True)
        if item is None:
            return None
        image, seconds = item
        self._index += 1
        assert image is not None  # asked for with want_image=True
        return Captured(image, time.monotonic(), self._index - 1, seconds)

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
