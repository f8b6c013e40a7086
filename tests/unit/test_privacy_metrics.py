"""PSNR and SSIM of training.privacy.metrics against values known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("skimage", reason="scikit-image is a training extra (requirements-train.txt)")
pytest.importorskip("torch", reason="PyTorch is a training extra (requirements-train.txt)")

from training.privacy import metrics  # noqa: E402


def textured(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, (32, 32, 3))


def test_identical_images() -> None:
    a = textured()
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_known_noise_level() -> None:
    """A +-0.05 checkerboard on a mid-grey image: MSE 0.0025 exactly, PSNR 10 log10(1/0.0025)."""
    a = np.full((32, 32, 3), 0.5)
    sign = np.where((np.indices((32, 32)).sum(0) % 2)[..., None] == 0, 1.0, -1.0)
    b = a + 0.05 * sign
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-9)  # 26.0206 dB
    assert metrics.psnr(textured(), textured() + 0.1) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01


def test_ssim_of_a_constant_shift() -> None:
    """Two flat images: no variance, so SSIM is the luminance term (2 mu_x mu_y + C1) /
    (mu_x^2 + mu_y^2 + C1) with C1 = (0.01 * data_range)^2."""
    c1 = 1e-4
    want = (2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1)  # 0.98361
    assert metrics.ssim(np.full((32, 32, 3), 0.5), np.full((32, 32, 3), 0.6)) == pytest.approx(want, abs=1e-9)


def test_ssim_falls_with_noise_and_is_symmetric() -> None:
    a = textured()
    noise = np.random.default_rng(1).normal(0, 1, a.shape)
    s = [metrics.ssim(a, np.clip(a + k * noise, 0, 1)) for k in (0.02, 0.1, 0.3)]
    assert 1 > s[0] > s[1] > s[2]
    b = np.clip(a + 0.1 * noise, 0, 1)
    assert metrics.ssim(a, b) == pytest.approx(metrics.ssim(b, a), abs=1e-12)
    assert metrics.ssim(a, textured(7)) < 0.3  # unrelated noise images: unrecognisable


def test_leakage_aggregates_both_layouts() -> None:
    a = (textured() * 255).round().astype(np.uint8)
    orig = np.stack([a, a])
    rec = orig.astype(np.float64).transpose(0, 3, 1, 2) / 255.0  # NCHW float, as the attacks give
    rec[1] = np.clip(rec[1] + 0.1, 0, 1)
    got = metrics.leakage(orig, rec)
    assert got.images == 2 and got.exact == pytest.approx(0.5)
    assert got.psnr_db is not None and 19 < got.psnr_db < 21
    assert 0.3 < got.ssim <= 1 and got.ssim_below_0_3 == 0.0
    raw = metrics.leakage(orig, orig)
    assert raw.psnr_db is None and raw.exact == 1.0 and raw.ssim == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.leakage(orig, rec[:1])
