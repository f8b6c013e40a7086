"""Train SplitNet on CIFAR-10 on the CPU, seeded, and save a checkpoint for export.

    python -m training.train [--epochs 16] [--out build/splitnet.pt]

The recipe is the fast CIFAR-10 one (Page's ResNet recipe as refined by hlb-CIFAR10 and
airbench), fitted to a 2-core CPU budget: a frozen patch-whitening stem, identity-initialised
convs, BatchNorm with a frozen scale whose shifts learn 64x faster, Nesterov SGD in decoupled
form on a triangular schedule, label smoothing, a lookahead-style weight average, alternating
flips and 2-pixel translations done on whole batches in PyTorch (there is no torchvision
here), channels-last tensors, and a malloc setting that keeps batch-sized buffers out of
mmap. No test-time augmentation: the exported model is what runs live. torch.compile is
optional (``--compile``): on this CPU it was no faster than eager mode (10-step runs at
batch 512: eager 2.52-2.54 ms an image at best, compiled 2.59-3.06) and costs ~40 s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.offline.datasets import default_data_path, load_cifar10  # noqa: E402
from training.net import SplitNet  # noqa: E402


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0,1], the model's input contract."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def translate(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (reflect padding), for a whole batch."""
    n = x.shape[0]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for sx in range(2 * pad + 1):          # group by shift: 25 slices, not n gathers
        for sy in range(2 * pad + 1):
            idx = ((dx == sx) & (dy == sy)).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = padded[idx, :, sy:sy + 32, sx:sx + 32]
    return out


def flip_for_epoch(x: torch.Tensor, base: torch.Tensor, epoch: int) -> torch.Tensor:
    """Alternating flips: a fixed random half of the images is mirrored on even epochs and the
    other half on odd ones, so every image is seen both ways every two epochs (random flips
    leave a quarter of the images unflipped over two epochs)."""
    flip = base ^ bool(epoch % 2)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


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


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, x: torch.Tensor, batch: int = 1000) -> None:
    """Recompute every BatchNorm's running statistics for the final weights, as SWA does:
    the weight average also averaged running statistics gathered under other weights, so
    they no longer match the layers they normalise. One pass over the (unaugmented)
    training images in a seeded random order (the loader groups them by class, and a
    one-class batch has a smaller variance), with cumulative, not exponential, averaging."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for i in range(0, len(x), batch):
        model(x[order[i:i + batch]].contiguous(memory_format=torch.channels_last))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def triangle(step: int, total: int, start: float = 0.2, peak_at: float = 0.23, end: float = 0.07) -> float:
    """Learning-rate multiplier: linear from ``start`` up to 1 at ``peak_at`` of training, then
    linear down to ``end`` (not zero: the weight average below does the final annealing)."""
    t = step / total
    if t < peak_at:
        return start + (1 - start) * t / peak_at
    return 1 + (end - 1) * (t - peak_at) / (1 - peak_at)


def param_groups(model: torch.nn.Module, args: argparse.Namespace) -> list[dict]:
    """Hyper-parameters in decoupled form (per 1,024 images, independent of momentum), as in
    the fast CIFAR-10 recipes, translated for a mean loss over ``args.batch`` images. The
    BatchNorm shifts learn ``bias_scale`` times faster but decay by the same amount per step."""
    lr = args.lr * args.batch / (1024 * (1 + 1 / (1 - args.momentum)))
    decay_per_step = args.wd * args.batch / (1024 * (1 + 1 / (1 - args.momentum)))
    shifts = [m.bias for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ids = {id(p) for p in shifts}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    blr = lr * args.bias_scale
    return [{"params": others, "lr": lr, "base_lr": lr, "weight_decay": decay_per_step / lr},
            {"params": shifts, "lr": blr, "base_lr": blr, "weight_decay": decay_per_step / blr}]


class WeightAverage:
    """Lookahead-style exponential average: every few steps the weights are pulled into the
    average and the average is copied back, with a decay that grows towards the end so the
    last epochs average strongly (it replaces annealing the learning rate to zero)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, decay: float) -> None:
        for k, v in self.model.state_dict().items():
            if k in self.avg:
                self.avg[k].lerp_(v, 1 - decay)
                v.copy_(self.avg[k])


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
    # Compiled (optional) for training only; evaluation uses the eager module, which shares
    # the parameters, so the compiled graph never recompiles for eval mode.
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.SGD(param_groups(model, args), momentum=args.momentum, nesterov=True)
    steps_per_epoch = len(x_tr) // args.batch  # drop the ragged last batch: one shape to compile
    total = args.epochs * steps_per_epoch
    avg_start, average = int(args.average_from * total), None
    flips = torch.rand(len(x_tr), generator=gen) < 0.5
    step = 0
    bar = tqdm(total=total, unit="step", dynamic_ncols=True)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb = translate(flip_for_epoch(x_tr[idx], flips[idx], epoch), gen)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * triangle(step, total)
            loss = F.cross_entropy(step_model(xb.contiguous(memory_format=torch.channels_last)), y_tr[idx],
                                   label_smoothing=args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= avg_start and step % args.average_every == 0:
                if average is None:
                    average = WeightAverage(model)
                else:
                    average.update(0.95 ** args.average_every * (step / total) ** 3)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        if average is not None:
            average.update(1.0)  # end every epoch on the averaged weights
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            bar.write(f"epoch {epoch + 1}: test top-1 {evaluate(model, x_te, y_te):.4f}")
    bar.close()
    if args.bn_recal:
        recalibrate_bn(model, x_tr)
    acc = evaluate(model, x_te, y_te)
    elapsed = time.perf_counter() - t0
    report = {"test_top1": acc, "train_seconds": round(elapsed, 1), "epochs": args.epochs,
              "batch": args.batch, "lr": args.lr, "momentum": args.momentum, "wd": args.wd,
              "bias_scale": args.bias_scale, "seed": args.seed, "threads": args.threads, "compiled": args.compile,
              "train_images": len(x_tr), "bn_recalibrated": args.bn_recal, "arch": {"relu_out": list(model.relu_out)}}
    print(f"test top-1: {acc:.4f} ({acc * 100:.2f}%) after {elapsed / 60:.1f} min")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "report": report}, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def recalibrate_checkpoint(args: argparse.Namespace) -> dict:
    """``--recalibrate CKPT``: the final step alone, on a checkpoint trained without it. The
    report keeps the training time and adds this step's, so the total stays what the whole
    command would take."""
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    state = torch.load(args.recalibrate, map_location="cpu", weights_only=False)
    report = state["report"]
    model = SplitNet.from_checkpoint(state).to(memory_format=torch.channels_last)
    tr, te = load_cifar10(args.data, "train"), load_cifar10(args.data, "test")
    recalibrate_bn(model, to_tensor(tr.images))
    acc = evaluate(model, to_tensor(te.images), torch.from_numpy(te.labels))
    elapsed = time.perf_counter() - t0
    report.update({"test_top1_before_bn_recal": report["test_top1"], "test_top1": acc, "bn_recalibrated": True,
                   "bn_recal_seconds": round(elapsed, 1),
                   "train_seconds": round(report["train_seconds"] + elapsed, 1)})
    print(f"test top-1: {report['test_top1_before_bn_recal']:.4f} -> {acc:.4f} after recomputing BatchNorm "
          f"statistics ({elapsed:.0f} s; {report['train_seconds'] / 60:.1f} min in all)")
    torch.save({"state_dict": model.state_dict(), "report": report}, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# glibc serves every allocation over 32 MB (a batch's activations) with a fresh mmap and gives
# it back on free, so each step page-faults hundreds of MB in again: a third of the CPU time
# went to the kernel here. Without mmap (and no trimming) the heap keeps and reuses them.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def ensure_malloc_env() -> None:
    """Re-execute this command once with ``MALLOC_ENV`` (glibc reads it only at start-up)."""
    if os.environ.get("MALLOC_MMAP_MAX_") is None and sys.platform.startswith("linux"):
        os.execve(sys.executable, [sys.executable, "-m", "training.train", *sys.argv[1:]],
                  {**os.environ, **MALLOC_ENV})


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        ensure_malloc_env()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_path()),
                   help="CIFAR-10: the .tar.xz, a cifar-10-batches-py/ folder or an image folder")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=11.5,
                   help="peak learning rate per 1,024 images, decoupled from momentum (see param_groups)")
    p.add_argument("--momentum", type=float, default=0.85, help="Nesterov momentum")
    p.add_argument("--wd", type=float, default=0.0153, help="weight decay per 1,024 images, decoupled from the lr")
    p.add_argument("--bias-scale", type=float, default=64.0, help="learning-rate factor for BatchNorm shifts")
    p.add_argument("--average-from", type=float, default=0.3,
                   help="start the weight average after this fraction of the steps")
    p.add_argument("--average-every", type=int, default=5, help="steps between weight-average updates")
    p.add_argument("--smoothing", type=float, default=0.2)
    p.add_argument("--no-bn-recal", dest="bn_recal", action="store_false",
                   help="keep the weight average's BatchNorm statistics instead of recomputing them "
                        "on the training images at the end (~70 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (no faster on the 2-core CPU it was tuned on)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke runs)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also print test accuracy every N epochs (0: only at the end; each costs ~10 s)")
    p.add_argument("--recalibrate", type=Path, default=None, metavar="CKPT",
                   help="only recompute the BatchNorm statistics of a checkpoint trained without it, "
                        "evaluate, and save to --out")
    p.add_argument("--out", type=Path, default=Path("build/splitnet.pt"))
    args = p.parse_args(argv)
    recalibrate_checkpoint(args) if args.recalibrate else train(args)


if __name__ == "__main__":
    main()
