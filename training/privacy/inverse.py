"""The black-box attack: an inverse network from the decoded latent to the 32x32 frame.

He et al. (ACSAC 2019, section 4): the attacker queries the head with images of the same
distribution (here the CIFAR-10 training split), and trains a decoder on (latent, image)
pairs with a pixel MSE loss. The decoder is sized per split: a latent at full resolution
(stem, 24x32x32) gets three 3x3 convs; each halving of resolution adds a learned 2x
upsampling (transposed conv) so the decoder can put back what pooling removed; the 2,048
features are read as their 128x4x4 map (the head flattens a 128x4x4 tensor: reading it as a
map is the strongest attacker, which is the one to measure). A batch-norm on the input
makes one learning rate fit every codec's value range.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

FEATURES_MAP = (128, 4, 4)  # the features latent is Flatten(128x4x4)


def latent_map_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """C, H, W the decoder reads (a latent without its batch dimension)."""
    if len(shape) == 3:
        return (int(shape[0]), int(shape[1]), int(shape[2]))
    if len(shape) == 1 and shape[0] == math.prod(FEATURES_MAP):
        return FEATURES_MAP
    raise ValueError(f"no decoder for a latent of shape {shape}")


class InverseNet(nn.Module):
    """Latent [N, *shape] -> image [N, 3, 32, 32] in [0, 1]."""

    def __init__(self, shape: tuple[int, ...], width: int = 32, size: int = 32) -> None:
        super().__init__()
        c, h, _ = latent_map_shape(shape)
        self.map_shape = (c, *latent_map_shape(shape)[1:])
        ups = int(round(math.log2(size / h)))
        if h << ups != size:
            raise ValueError(f"latent height {h} does not double up to {size}")
        w = width * (2 ** min(ups, 2))  # more channels where the map is coarser
        layers: list[nn.Module] = [nn.BatchNorm2d(c), nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(ups):
            layers += [nn.ConvTranspose2d(w, max(width, w // 2), 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            w = max(width, w // 2)
        layers += [nn.Conv2d(w, width, 3, padding=1), nn.ReLU(inplace=True),
                   nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z.reshape(z.shape[0], *self.map_shape))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch: int = 128
    lr: float = 2e-3
    width: int = 32
    seed: int = 0


def train(latents: np.ndarray, images: np.ndarray, cfg: TrainConfig,
          progress: Callable[[int], object] | None = None) -> tuple[InverseNet, dict]:
    """Fit a decoder on (latent, image) pairs: ``images`` uint8 [N,32,32,3]. Adam, a cosine
    learning-rate decay, MSE; seeded. Returns the net (eval mode) and its training record."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = InverseNet(latents.shape[1:], cfg.width)
    z = torch.from_numpy(latents)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    steps = cfg.epochs * math.ceil(len(z) / cfg.batch)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.15)
    net.train()
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(z), generator=gen)
        total, n = 0.0, 0
        for k in range(0, len(z), cfg.batch):
            idx = order[k:k + cfg.batch]
            loss = nn.functional.mse_loss(net(z[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
            if progress:
                progress(len(idx))
        losses.append(total / n)
    net.eval()
    return net, {"epochs": cfg.epochs, "width": cfg.width, "batch": cfg.batch, "lr": cfg.lr, "train_images": len(z),
                 "train_mse_per_epoch": [round(v, 6) for v in losses],
                 "params": sum(p.numel() for p in net.parameters())}


@torch.no_grad()
def reconstruct(net: InverseNet, latents: np.ndarray, batch: int = 256) -> np.ndarray:
    """[N, 3, 32, 32] float32 in [0, 1]."""
    out = [net(torch.from_numpy(latents[k:k + batch])) for k in range(0, len(latents), batch)]
    return torch.cat(out).numpy()
