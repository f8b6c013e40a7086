"""Camera frame -> model input, the one place that defines the model's input contract.

The model takes ``[N, 3, 32, 32]`` float32 RGB in [0, 1]; mean/std normalisation lives
inside the ONNX graph so that every caller (sender, browser, evaluation) only has to agree
on this much. Two entry points share one scaling helper so that a live frame and a data-set
image of the same pixels give bit-identical input:

- ``Preprocessor``: the per-frame path of the sender (any frame size, BGR or RGB), with
  preallocated buffers because it runs 30 times a second next to the head's inference;
- ``to_input``: batches of 32x32 RGB images (evaluation, tests, local full-model runs).

Scaling divides by 255 in float32 rather than multiplying by ``1/255``: the two differ by
one ulp for about half of the 256 values, and division is what training does
(``tensor.float().div_(255.0)``), so the deployed model sees exactly its training inputs.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

INPUT_SIZE = 32
INPUT_CHANNELS = 3
INPUT_DTYPE = np.float32
ColorOrder = Literal["bgr", "rgb"]
_SCALE = INPUT_DTYPE(255)


def _scale_into(chw: np.ndarray, out: np.ndarray) -> np.ndarray:
    """uint8 values -> float32 in [0, 1] in ``out``; shared so both entry points agree."""
    return np.divide(chw, _SCALE, out=out)


def _check_image(image: np.ndarray, what: str, ndims: tuple[int, ...]) -> None:
    """Reject wrong inputs with a message, instead of a NumPy or OpenCV error deep inside."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim not in ndims or image.shape[-1] != INPUT_CHANNELS:
        raise ValueError(
            f"{what} must be uint8 with {' or '.join(str(n) for n in ndims)} dimensions and "
            f"{INPUT_CHANNELS} channels last, got {image.dtype} {image.shape}")


class Preprocessor:
    """Resize a camera frame to the model input, reusing its buffers on every call.

    ``color`` is the channel order of the frames it will be given: "bgr" for OpenCV and
    every ``sender.capture`` source, "rgb" for e.g. PyAV ``to_ndarray(format="rgb24")``.

    The array returned by a call is overwritten by the next call (that is what saves the
    allocation); pass ``copy=True`` to keep a result, e.g. when queueing it.
    """

    def __init__(self, color: ColorOrder = "bgr", size: int = INPUT_SIZE) -> None:
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', not {color!r}")
        if size < 1:
            raise ValueError(f"size must be positive, not {size}")
        self.color: ColorOrder = color
        self.size = size
        self._small = np.empty((size, size, INPUT_CHANNELS), np.uint8)
        self._out = np.empty((1, INPUT_CHANNELS, size, size), INPUT_DTYPE)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of every returned array, for checking against the model's input."""
        n, c, h, w = self._out.shape
        return n, c, h, w

    def __call__(self, frame: np.ndarray, copy: bool = False) -> np.ndarray:
        """Return the ``[1, 3, size, size]`` float32 RGB input for one HxWx3 uint8 frame."""
        _check_image(frame, "frame", (3,))
        if frame.shape[:2] == (self.size, self.size):
            small = frame  # already the right size: INTER_AREA would copy it unchanged
        else:
            # INTER_AREA averages every source pixel, so small details of a large frame
            # are blended in instead of aliased away as with bilinear sampling.
            small = cv2.resize(frame, (self.size, self.size), dst=self._small,
                               interpolation=cv2.INTER_AREA)
        chw = small.transpose(2, 0, 1)  # a view: no copy until the scaling writes `_out`
        if self.color == "bgr":
            chw = chw[::-1]  # BGR -> RGB as a view as well
        _scale_into(chw, self._out[0])
        return self._out.copy() if copy else self._out


def to_input(rgb: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` (or one ``[H, W, 3]``) RGB uint8 -> new ``[N, 3, H, W]`` float32.

    No resizing: this is for images already at the model's size (32x32 data-set images).
    The result is C-contiguous, which ONNX Runtime needs to use it without a copy.
    """
    _check_image(rgb, "rgb", (3, 4))
    batch = rgb[None] if rgb.ndim == 3 else rgb
    n, h, w, c = batch.shape
    out = np.empty((n, c, h, w), INPUT_DTYPE)
    return _scale_into(batch.transpose(0, 3, 1, 2), out)
