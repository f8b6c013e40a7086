"""The white-box attack: regularised maximum likelihood (rML), He et al. (ACSAC 2019, sec. 3).

Knowing the head f, find x* = argmin_x ||f(x) - v||^2 / ||v||^2 + lambda * TV(x) over images
x in [0, 1], where v is the latent the receiver decoded from the wire. The head is the
shipped ONNX graph run with torch ops (``onnx_torch``: weights from the file's initializers,
no checkpoint needed). The image is parametrised as sigmoid(u) so it stays in [0, 1]; Adam
from a grey start, a batch of images at once (their losses are independent sums). TV is the
anisotropic L1 total variation, averaged per pixel.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from training.privacy.onnx_torch import OnnxModule


@dataclass(frozen=True)
class WhiteBoxConfig:
    steps: int = 300
    lr: float = 0.05
    tv: float = 0.05
    batch: int = 50
    seed: int = 0


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image anisotropic TV of [N, 3, H, W], mean over pixels: [N]."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dh + dw


def invert(head: OnnxModule, latents: np.ndarray, cfg: WhiteBoxConfig,
           progress: Callable[[int], object] | None = None) -> np.ndarray:
    """[N, 3, 32, 32] float32 reconstructions of the observed ``latents`` [N, ...]."""
    torch.manual_seed(cfg.seed)
    head.eval()
    for p in head.buffers():
        p.requires_grad_(False)
    out = []
    for k in range(0, len(latents), cfg.batch):
        v = torch.from_numpy(latents[k:k + cfg.batch])
        norm = v.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        u = torch.zeros((len(v), 3, 32, 32), requires_grad=True)
        opt = torch.optim.Adam([u], lr=cfg.lr)
        for _ in range(cfg.steps):
            x = torch.sigmoid(u)
            fit = (head(x) - v).flatten(1).pow(2).sum(1) / norm
            loss = (fit + cfg.tv * total_variation(x)).sum()
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            if progress:
                progress(len(v))
        out.append(torch.sigmoid(u).detach())
    return torch.cat(out).numpy()
