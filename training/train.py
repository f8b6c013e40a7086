"""Train SplitNet on CIFAR-10 on the CPU, seeded, and save a checkpoint for export.

    python -m training.train --epochs 18 --out models/splitnet.pt

The recipe is chosen for a 2-core CPU budget: one-cycle SGD with Nesterov momentum, label
smoothing, flips and 2-pixel reflect-padded translations, a fixed patch-whitening stem, done on whole batches in PyTorch (there is
no torchvision here), and channels-last tensors, which oneDNN convolves faster on CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.datasets import default_data_path, load_cifar10  # noqa: E402
from training.net import SplitNet  # noqa: E402


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0,1], the model's input contract."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop after reflect padding, for a whole batch."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for sx in range(2 * pad + 1):          # group by shift: 81 slices, not n gathers
        for sy in range(2 * pad + 1):
            idx = ((dx == sx) & (dy == sy)).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = padded[idx, :, sy:sy + 32, sx:sx + 32]
    return out


def whiten_stem(model: SplitNet, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set the stem conv to whiten 3x3 patches (top eigenvectors of their covariance, scaled
    by 1/sqrt(eigenvalue), in +/- pairs) and freeze it: the first epochs then learn features
    instead of decorrelating pixels."""
    norm, conv = model.blocks[0][0], model.blocks[0][1][0]
    with torch.no_grad():
        patches = F.unfold(norm(images), conv.kernel_size, padding=1).transpose(1, 2).reshape(-1, conv.in_channels * 9)
        eigval, eigvec = torch.linalg.eigh(torch.cov(patches.T.double()))
        top = eigvec.T.flip(0)[:conv.out_channels // 2] / torch.sqrt(eigval.flip(0)[:conv.out_channels // 2, None] + eps)
        filters = torch.cat([top, -top]).float().view_as(conv.weight)
        conv.weight.copy_(filters)
    conv.weight.requires_grad_(False)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].contiguous(memory_format=torch.channels_last)
            correct += (model(xb).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def one_cycle(step: int, total: int, peak: float, warm: float = 0.2) -> float:
    """Linear warm-up to ``peak`` over the first ``warm`` of training, then linear to zero."""
    t = step / total
    return peak * (t / warm if t < warm else max(0.0, (1 - t) / (1 - warm)))


def param_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    """No weight decay on BatchNorm and bias parameters: decaying them only hurts."""
    decay, no_decay = [], []
    for p in (p for p in model.parameters() if p.requires_grad):
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    tr, te = load_cifar10(args.data, "train"), load_cifar10(args.data, "test")
    x_tr, y_tr = to_tensor(tr.images), torch.from_numpy(tr.labels)
    x_te, y_te = to_tensor(te.images), torch.from_numpy(te.labels)
    if args.limit:  # a random subset: the loader returns images grouped by class
        keep = torch.randperm(len(x_tr), generator=gen)[:args.limit]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    print(f"data: {len(x_tr)} train, {len(x_te)} test images in {time.perf_counter() - t0:.1f}s")

    model = SplitNet()
    whiten_stem(model, x_tr[torch.randperm(len(x_tr), generator=gen)[:5000]])
    model = model.to(memory_format=torch.channels_last)
    # Compiled for training only (about 20% faster here); evaluation uses the eager module,
    # which shares the parameters, so the compiled graph never recompiles for eval mode.
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.SGD(param_groups(model, args.wd), lr=0.0, momentum=0.9, nesterov=True)
    steps_per_epoch = len(x_tr) // args.batch  # drop the ragged last batch: one shape to compile
    total = args.epochs * steps_per_epoch
    step = 0
    bar = tqdm(total=total, unit="step", dynamic_ncols=True)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb = augment(x_tr[idx], gen).contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = one_cycle(step, total, args.lr)
            loss = F.cross_entropy(step_model(xb), y_tr[idx], label_smoothing=args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            bar.write(f"epoch {epoch + 1}: test top-1 {evaluate(model, x_te, y_te):.4f}")
    bar.close()
    acc = evaluate(model, x_te, y_te)
    elapsed = time.perf_counter() - t0
    report = {"test_top1": acc, "train_seconds": round(elapsed, 1), "epochs": args.epochs,
              "batch": args.batch, "lr": args.lr, "seed": args.seed, "threads": args.threads, "compiled": args.compile,
              "train_images": len(x_tr)}
    print(f"test top-1: {acc:.4f} ({acc * 100:.2f}%) after {elapsed / 60:.1f} min")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "report": report}, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_path()),
                   help="CIFAR-10: the .tar.xz, a cifar-10-batches-py/ folder or an image folder")
    p.add_argument("--epochs", type=int, default=17)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.4, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--smoothing", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip torch.compile (saves ~40 s of start-up on short runs)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke runs)")
    p.add_argument("--eval-every", type=int, default=5, help="print test accuracy every N epochs")
    p.add_argument("--out", type=Path, default=Path("build/splitnet.pt"))
    train(p.parse_args(argv))


if __name__ == "__main__":
    main()
