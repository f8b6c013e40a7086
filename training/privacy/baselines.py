"""What a plain "send the picture" design leaks: the frame itself, raw or compressed.

The attacker of such a design needs no attack: the receiver decodes the picture. The raw
uint8 frame (3,072 B) and JPEG/WebP frames at the qualities of ``bench.study`` (OpenCV's
``imencode`` for both), measured with the same metrics as the attacks, give the other end
of the scale.
"""
from __future__ import annotations

import cv2
import numpy as np

FORMATS = {"jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY), "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY)}


def roundtrip(rgb: np.ndarray, fmt: str, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded RGB uint8) of one HxWx3 RGB uint8 frame through ``fmt`` at ``quality``."""
    ext, flag = FORMATS[fmt]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise RuntimeError(f"cv2.imencode({ext}) failed")
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if back is None:
        raise RuntimeError(f"cv2.imdecode failed on its own {fmt}")
    return int(buf.size), cv2.cvtColor(back, cv2.COLOR_BGR2RGB)


def compressed(images: np.ndarray, fmt: str, quality: int) -> tuple[float, np.ndarray]:
    """(mean bytes a frame, decoded images uint8 [N,32,32,3])."""
    sizes, out = [], np.empty_like(images)
    for i, img in enumerate(images):
        n, out[i] = roundtrip(img, fmt, quality)
        sizes.append(n)
    return float(np.mean(sizes)), out
