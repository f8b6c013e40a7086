"""PSNR and SSIM of reconstructions against the originals, the leakage figures of the study.

Both come from scikit-image (``skimage.metrics``), a well-kept reference implementation, so
the numbers compare with the literature (He et al. 2019 used scikit-image's SSIM too):

- images are float RGB in [0, 1], HWC, ``data_range=1``;
- SSIM: ``structural_similarity`` with its defaults (7x7 uniform window, sample covariance,
  K1 = 0.01, K2 = 0.03), ``channel_axis=-1`` (the mean over the three channels);
- PSNR: ``peak_signal_noise_ratio``, per image, then averaged over images. An image rebuilt
  exactly has an infinite PSNR: the mean is over the other images and ``exact`` counts the
  share left out (all of them for the raw-frame baseline, whose PSNR is then ``None``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage import metrics as _sk

# typed handles on scikit-image's (untyped) functions
_PSNR: Callable[..., float] = _sk.peak_signal_noise_ratio
_SSIM: Callable[..., float] = _sk.structural_similarity


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"need two HxWx3 images of one shape, got {a.shape} and {b.shape}")


def psnr(original: np.ndarray, recon: np.ndarray) -> float:
    """PSNR in dB of one HxWx3 image in [0, 1]; ``inf`` when identical."""
    _check(original, recon)
    a, b = original.astype(np.float64), recon.astype(np.float64)
    if np.array_equal(a, b):
        return math.inf
    return float(_PSNR(a, b, data_range=1.0))


def ssim(original: np.ndarray, recon: np.ndarray) -> float:
    """SSIM of one HxWx3 image in [0, 1] (scikit-image defaults, mean over channels)."""
    _check(original, recon)
    return float(_SSIM(original.astype(np.float64), recon.astype(np.float64),
                                       data_range=1.0, channel_axis=-1))


@dataclass(frozen=True)
class Leakage:
    """Means over images; ``psnr_db`` is over the inexact ones, None when all are exact."""

    psnr_db: float | None
    ssim: float
    images: int
    exact: float  # share of images rebuilt bit for bit (infinite PSNR)
    ssim_below_0_3: float  # share of images He et al. would call unrecognisable

    def as_dict(self) -> dict:
        return {"psnr_db": self.psnr_db, "ssim": self.ssim, "images": self.images, "exact": self.exact,
                "ssim_below_0_3": self.ssim_below_0_3}


def to_hwc01(images: np.ndarray) -> np.ndarray:
    """[N,32,32,3] uint8 or [N,3,32,32] float in [0,1] -> [N,32,32,3] float64 in [0,1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    return np.clip(images.astype(np.float64), 0.0, 1.0)


def leakage(originals: np.ndarray, recons: np.ndarray) -> Leakage:
    """Mean PSNR and SSIM over a batch (either layout of ``to_hwc01``)."""
    a, b = to_hwc01(originals), to_hwc01(recons)
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need as many reconstructions as originals (got {len(a)} and {len(b)}), at least one")
    p = np.array([psnr(x, y) for x, y in zip(a, b, strict=True)])
    s = np.array([ssim(x, y) for x, y in zip(a, b, strict=True)])
    finite = p[np.isfinite(p)]
    mean_psnr = float(finite.mean()) if len(finite) else None
    return Leakage(mean_psnr, float(s.mean()), len(a), float(1 - len(finite) / len(p)), float((s < 0.3).mean()))
