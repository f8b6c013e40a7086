"""The built-in frame source: a synthetic moving scene, for machines without a camera.

Everything is computed from the frame index, so frame N is the same picture on every run
and every machine: a test or a benchmark that uses the pattern is reproducible, and a
receiver's output can be compared frame by frame. The scene moves (scrolling gradient,
shapes on different periods, a frame counter) so that consecutive latents differ and a
stuck pipeline is visible on the dashboard. It is drawn with OpenCV into one reused buffer:
a copy and a few fills per frame, far cheaper than the head it feeds.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from splitcore.runtime.preprocess import ColorOrder

from .source import TARGET_FPS, Captured, SourceBase

# Periods in frames (about 2 to 5 s at 30 fps), chosen pairwise coprime so the scene only
# repeats after their product, far longer than any run.
_SCROLL_PX_PER_FRAME = 2
_ORBIT_PERIODS = (97, 131)
_BOUNCE_PERIOD = 71
_SPIN_PERIOD = 149


def _background(width: int, height: int) -> np.ndarray:
    """A colour gradient twice as wide as the frame, periodic in x, darker towards the top.

    Scrolling is then just copying a window of it: no per-frame arithmetic on all pixels.
    """
    phase = np.arange(2 * width, dtype=np.float32) * (2 * math.pi / width)
    shade = np.linspace(0.55, 1.0, height, dtype=np.float32)[:, None]
    channels = [127.5 + 100.0 * np.sin(phase + k * 2 * math.pi / 3) for k in range(3)]
    bgr = np.stack([shade * c[None, :] for c in channels], axis=-1)
    return np.clip(bgr, 0, 255).astype(np.uint8)


def _triangle_wave(index: int, period: int) -> float:
    """0 -> 1 -> 0 over ``period`` frames, for bouncing back and forth."""
    t = (index % period) / period
    return 2 * t if t < 0.5 else 2 * (1 - t)


class PatternSource(SourceBase):
    """An endless synthetic BGR scene of ``width`` x ``height`` at a nominal ``fps``.

    ``read()`` returns the shared buffer (valid until the next read, like every source).
    ``skip`` only advances the index: the scene follows the wall clock when paced.
    """

    color: ColorOrder = "bgr"
    realtime = True

    def __init__(self, width: int = 320, height: int = 240, fps: float = TARGET_FPS) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"pattern must be at least 16x16, not {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        self.name = f"pattern:{width}x{height}"
        self._bg = _background(width, height)
        self._buf = np.empty((height, width, 3), np.uint8)
        self._index = 0

    def open(self) -> None:
        """Nothing to acquire; present so the pattern is a drop-in ``FrameSource``."""

    def close(self) -> None:
        """Nothing to release."""

    def render(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Draw frame ``index`` into ``out`` (default: the shared buffer) and return it."""
        img = self._buf if out is None else out
        w, h = self.width, self.height
        offset = (index * _SCROLL_PX_PER_FRAME) % w
        np.copyto(img, self._bg[:, offset:offset + w])
        unit = min(w, h)
        self._draw_disc(img, index, unit)
        self._draw_box(img, index, unit)
        self._draw_triangle(img, index, unit)
        scale = unit / 240
        cv2.putText(img, str(index), (max(2, w // 40), h - max(4, h // 30)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255),
                    max(1, round(2 * scale)), cv2.LINE_AA)
        return img

    def _draw_disc(self, img: np.ndarray, index: int, unit: int) -> None:
        """A disc on a Lissajous orbit around the centre."""
        ax = 2 * math.pi * index
        cx = self.width / 2 + 0.3 * self.width * math.sin(ax / _ORBIT_PERIODS[0])
        cy = self.height / 2 + 0.3 * self.height * math.sin(ax / _ORBIT_PERIODS[1])
        cv2.circle(img, (round(cx), round(cy)), max(2, unit // 8), (40, 60, 230), -1,
                   cv2.LINE_AA)

    def _draw_box(self, img: np.ndarray, index: int, unit: int) -> None:
        """A box bouncing left and right along the top."""
        side = max(2, unit // 6)
        x = round(_triangle_wave(index, _BOUNCE_PERIOD) * (self.width - side - 1))
        y = self.height // 8
        cv2.rectangle(img, (x, y), (x + side, y + side), (230, 200, 30), -1)

    def _draw_triangle(self, img: np.ndarray, index: int, unit: int) -> None:
        """A triangle spinning in the lower right quadrant."""
        angle = 2 * math.pi * index / _SPIN_PERIOD
        cx, cy, r = 0.75 * self.width, 0.7 * self.height, unit / 7
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3),
                cy + r * math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], (60, 220, 90), cv2.LINE_AA)

    def read(self) -> Captured:
        """Render the next frame; the pattern never ends."""
        image = self.render(self._index)
        self._index += 1
        return Captured(image, time.monotonic(), self._index - 1)

    def skip(self, n: int) -> int:
        """Jump the scene ahead; costs nothing because frames are computed from the index."""
        self._index += max(0, n)
        return max(0, n)
