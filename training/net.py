"""SplitNet: a small CIFAR-10 CNN built as a chain of blocks, so every boundary is a split point.

The block outputs are deliberately narrow (24x32x32, 32x16x16, 64x8x8, 128x4x4) and each block
is wide inside (64, 256, 256 channels): the narrow boundaries are what travels over the
network, the wide insides are what buys accuracy. The squeezes into the stage1 and stage2
boundaries are linear (no ReLU), as in MobileNetV2's linear bottlenecks: a ReLU on a narrow
layer zeroes about half of what little gets through, so those two latents are signed; the
stem and features latents end in ReLU and are non-negative (the codecs' calibrated ranges
handle both). The stem is a
fixed patch-whitening convolution (set from the data by ``training.train``), as in the fast
CIFAR-10 training recipes: it spares the first epochs the work of decorrelating pixels.
"""
from __future__ import annotations

import torch
from torch import nn

# ImageNet-free statistics of the CIFAR-10 training set (RGB, [0,1] scale).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Lives inside the graph so both Python and the browser feed plain RGB in [0,1]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(CIFAR_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


def conv_bn(cin: int, cout: int, k: int = 3, pool: bool = False, relu: bool = True) -> nn.Sequential:
    """Conv (+ max-pool) + BatchNorm (+ ReLU). (GELU inside the blocks cost 20% more time per
    step on this CPU.) The conv
    starts as an identity on its first channels (dirac init), an implicit residual that lets
    the first epochs train as if the net were shallower."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers.append(batch_norm(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    nn.init.dirac_(layers[0].weight[:min(cin, cout)])
    return nn.Sequential(*layers)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with its scale frozen at 1 and fast running statistics (momentum 0.4), as in
    the fast CIFAR-10 recipes: with the scale fixed, the convs are scale-invariant and only
    the shift learns (at a much higher rate, see ``training.train.param_groups``)."""
    bn = nn.BatchNorm2d(channels, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage(cin: int, width: int, cout: int, relu_out: bool = True) -> nn.Sequential:
    """Conv + pool at full width, a residual conv, then a 1x1 squeeze to the boundary width
    (linear when ``relu_out`` is False)."""
    return nn.Sequential(
        conv_bn(cin, width, pool=True),
        Residual(conv_bn(width, width)),
        conv_bn(width, cout, k=1, relu=relu_out),
    )


class Scale(nn.Module):
    """A fixed logit scale (1/8): keeps a high one-cycle learning rate stable, as in the
    fast CIFAR-10 ResNet recipes; the exporter folds it into the preceding Gemm's graph."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class SplitNet(nn.Module):
    """``blocks[i]`` maps boundary i to boundary i+1; the last block produces logits."""

    BLOCK_NAMES = ("stem", "stage1", "stage2", "stage3", "classifier")

    # Whether each stage's output (stage1, stage2, features) ends in ReLU. Checkpoints record
    # it ("arch" in their report): the weights alone cannot tell, ReLU has no parameters.
    RELU_OUT = (False, False, True)

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256),
                 outs: tuple[int, int, int, int] = (24, 32, 64, 128), classes: int = 10,
                 relu_out: tuple[bool, bool, bool] = RELU_OUT) -> None:
        super().__init__()
        self.relu_out = tuple(relu_out)
        self.blocks = nn.ModuleList([
            nn.Sequential(Normalize(), conv_bn(3, outs[0])),
            stage(outs[0], widths[0], outs[1], relu_out[0]),
            stage(outs[1], widths[1], outs[2], relu_out[1]),
            stage(outs[2], widths[2], outs[3], relu_out[2]),
            nn.Sequential(nn.Flatten(), nn.Linear(outs[3] * 16, classes), Scale(0.125)),
        ])

    @classmethod
    def from_checkpoint(cls, state: dict) -> SplitNet:
        """The net a ``training.train`` checkpoint holds, its weights loaded. Checkpoints from
        before linear boundaries say nothing of their arch: every boundary was ReLU."""
        relu_out = state.get("report", {}).get("arch", {}).get("relu_out", (True, True, True))
        net = cls(relu_out=tuple(relu_out))
        net.load_state_dict(state["state_dict"])
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
