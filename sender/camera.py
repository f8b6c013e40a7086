"""A camera through OpenCV: an index, a ``/dev/videoN`` path, or any URL/file OpenCV opens.

A device that does not exist is refused before OpenCV is asked: OpenCV's V4L2 backend would
print its own warnings and probe for seconds before saying no.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# OpenCV's own logging (V4L2 probing warnings) and FFmpeg's errors ("moov atom not found")
# go to stderr; ours say more. Read when the first capture opens; a user's setting wins.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402

from splitcore.process.cli import logger  # noqa: E402
from splitcore.runtime.preprocess import ColorOrder  # noqa: E402

from .source import TARGET_FPS, Captured, CaptureError, SourceBase  # noqa: E402

log = logger("sender.camera")


def _describe_device(device: int | str) -> str:
    """Name a camera the way the user would look for it (``/dev/video0`` on Linux)."""
    if isinstance(device, int) and sys.platform.startswith("linux"):
        return f"/dev/video{device}"
    return f"camera index {device}" if isinstance(device, int) else str(device)




def _missing_device(device: int | str) -> str | None:
    """The ``/dev/videoN`` path a Linux camera needs, when that file does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    path = f"/dev/video{device}" if isinstance(device, int) else device
    if path.startswith("/dev/") and not Path(path).exists():
        return path
    return None
class CameraSource(SourceBase):
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
        if (missing := _missing_device(self.device)) is not None:
            raise CaptureError(f"no camera at {where}: {missing} does not exist; "
                               "use --video FILE or the built-in pattern")
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

    def read(self) -> Captured | None:
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
        return Captured(image, stamp, self._index - 1)

    def skip(self, n: int) -> int:
        """Nothing to skip: a live camera only ever has the newest frame ready."""
        return 0

    def close(self) -> None:
        """Release the device so another program (or a new source) can open it."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
