"""A defended split: the shipped stage1 head, then a narrow learned bottleneck trained against inversion.

    python -m training.defend [--channels 8] [--epochs 6] [--nopeek 0.5] [--noise 0.5] [--out build/defended.pt]
    python -m training.defend --export build/defended.pt     # ONNX files + the manifest's new split

Why this design (issue 15, section 3): the device should do little, so the split stays early
(after ``stage1``, whose head is the shipped one, unchanged and frozen); what crosses the
network is made private, small and still accurate by a learned *bottleneck* on the device:
a 3x3 stride-2 convolution from stage1's 32x16x16 latent to ``C``x8x8 (C = 8: 512 values, 512 B
a frame at int8). Three things work against an inverse network at once:

- **resolution and width**: 512 values for a 3,072-value frame, at 8x8;
- **NoPeek** (Vepakomma et al., 2020): the training loss adds the distance correlation between
  each batch of frames and their latents, so the bottleneck keeps what predicts the class and
  sheds what describes the picture;
- **noise during training** (He et al.'s defence, as Gaussian noise on the latent): the tail
  learns to read a latent whose fine detail is unreliable, so the bottleneck has no reason to
  carry it. The shipped head is deterministic: no randomness on the device, and the attacker
  sees clean latents (the stronger attacker).

On the server an ``Expand`` block (transposed conv back to 32x16x16) feeds the shipped stage1
tail, fine-tuned with it, from the shipped weights (read from ``models/*.onnx``: there is no
training checkpoint in the repository); the loss is cross-entropy plus distillation from the
full model's logits, so a few epochs recover the accuracy. The export traces head and tail to
ONNX, writes a full model (head then tail) for ``--verify`` and fidelity, and adds the split to
``models/manifest.json`` (run ``training.calibrate`` and ``training.quantize`` for it after).
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
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.offline.datasets import default_data_path, load_cifar10  # noqa: E402
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest  # noqa: E402
from training.privacy.onnx_torch import OnnxModule  # noqa: E402
from training.train import to_tensor  # noqa: E402

SPLIT_ID = "stage1-private"
BASE_SPLIT = "stage1"
TARGET_SPLIT = "stage2"  # the bottleneck's server side rebuilds this latent for the shipped tail


class Bottleneck(nn.Module):
    """Device side, after stage1: 32x16x16 -> C x 8 x 8 (``size`` 8: one 3x3 stride-2 conv) or
    C x 4 x 4 (``size`` 4: two, the first 64 wide with a ReLU), batch-normalised, linear."""

    def __init__(self, cin: int = 32, channels: int = 8, size: int = 8) -> None:
        super().__init__()
        if size not in (8, 4):
            raise ValueError(f"bottleneck size {size}: 8 or 4")
        layers: list[nn.Module] = []
        if size == 4:
            layers += [nn.Conv2d(cin, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
            cin = 64
        self.pre = nn.Sequential(*layers)
        self.conv = nn.Conv2d(cin, channels, 3, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pre(x)))


class Expand(nn.Module):
    """Server side: C x 8 x 8 -> the 64x8x8 latent the shipped stage2 tail reads (a narrow,
    unpooled stage2: conv, residual conv, linear 1x1 squeeze)."""

    def __init__(self, channels: int = 8, width: int = 128, cout: int = 64, size: int = 8) -> None:
        super().__init__()
        # from 4x4, a learned 2x upsampling first (the stage2 tail reads 8x8)
        first = (nn.ConvTranspose2d(channels, width, 2, stride=2, bias=False) if size == 4
                 else nn.Conv2d(channels, width, 3, padding=1, bias=False))
        self.inp = nn.Sequential(first, nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.res = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                 nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, cout, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)
        return self.out(h + self.res(h))


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation of two batches (rows flattened), in [0, 1]: NoPeek's loss."""
    def centred(a: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(a, a)
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
    a, b = centred(x.flatten(1)), centred(z.flatten(1))
    dcov2 = (a * b).mean()
    return dcov2.clamp_min(0).sqrt() / ((a * a).mean().sqrt() * (b * b).mean().sqrt()).sqrt().clamp_min(1e-9)


def load_onnx(path: Path) -> OnnxModule:
    """An ONNX graph (a shipped head, tail or full model) as a frozen torch module."""
    module = OnnxModule(path)
    for b in module.buffers():
        b.requires_grad_(False)
    return module.eval()


def trainable(module: OnnxModule) -> OnnxModule:
    """The interpreted graph with its Conv/Gemm weights and BatchNorm affine terms made
    parameters (running statistics stay fixed buffers: the graph runs BatchNorm in eval form)."""
    learn: set[str] = set()
    for op, ins, _, _ in module.nodes:
        if op in ("Conv", "Gemm"):
            learn.update(ins[1:])
        elif op == "BatchNormalization":
            learn.update(ins[1:3])
    for onnx_name, attr in module._names.items():
        if onnx_name in learn:
            value = getattr(module, attr)
            delattr(module, attr)
            module.register_parameter(attr, nn.Parameter(value.clone()))
    return module


@torch.no_grad()
def teacher_logits(m: Manifest, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The shipped full model's logits: what distillation pulls the defended net towards."""
    full = load_onnx(m.full.path)
    return torch.cat([full(images[k:k + batch]) for k in tqdm(range(0, len(images), batch), desc="teacher",
                                                              unit="batch", leave=False)])


@torch.no_grad()
def boundary_latents(m: Manifest, images: torch.Tensor, batch: int = 500, desc: str = "") -> tuple[torch.Tensor, ...]:
    """(stage1 latent, stage2 latent) of every image, float16 to halve the memory."""
    h1, t1 = load_onnx(m.split(BASE_SPLIT).head.path), load_onnx(m.split(TARGET_SPLIT).head.path)
    a, b = [], []
    for k in tqdm(range(0, len(images), batch), desc=desc or "latents", unit="batch", leave=False):
        x = images[k:k + batch]
        a.append(h1(x).half())
        b.append(t1(x).half())
    return torch.cat(a), torch.cat(b)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    m = Manifest.load(args.manifest)
    tr, te = load_cifar10(args.data, "train"), load_cifar10(args.data, "test")
    x_tr, y_tr = to_tensor(tr.images), torch.from_numpy(tr.labels)
    x_te, y_te = to_tensor(te.images), torch.from_numpy(te.labels)
    if args.limit:
        keep = torch.randperm(len(x_tr), generator=gen)[:args.limit]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    # the shipped heads are frozen: their latents (and their flips') are computed once
    views = [boundary_latents(m, x_tr, desc="train latents"),
             boundary_latents(m, x_tr.flip(3), desc="flipped latents")]
    te1, _ = boundary_latents(m, x_te, desc="test latents")
    teach = [teacher_logits(m, x_tr), teacher_logits(m, x_tr.flip(3))] if args.kd else None
    scale = float(views[0][1].float().var())  # the stage2 latent's variance: the MSE in its units
    small = x_tr[:, :, ::2, ::2].flatten(1)   # NoPeek compares against the frame at 16x16 (cheaper, same content)
    small_flip = x_tr.flip(3)[:, :, ::2, ::2].flatten(1)
    base = m.split(BASE_SPLIT)
    bottleneck = Bottleneck(base.shape[1], args.channels, args.size)
    expand = Expand(args.channels, args.width, m.split(TARGET_SPLIT).shape[1], args.size)
    rest = load_onnx(m.split(TARGET_SPLIT).tail.path)
    groups = [{"params": [*bottleneck.parameters(), *expand.parameters()], "lr": args.lr}]
    if args.tail_lr:  # fine-tune the shipped stage2 tail too, gently
        groups.append({"params": list(trainable(rest).parameters()), "lr": args.lr * args.tail_lr})
    opt = torch.optim.AdamW(groups, weight_decay=args.wd)
    steps_per_epoch = len(x_tr) // args.batch
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=total,
                                                pct_start=0.15)
    bar = tqdm(total=total, unit="step", dynamic_ncols=True, desc="defend")
    history = []
    for epoch in range(args.epochs):
        bottleneck.train()
        expand.train()
        soft = teach[epoch % 2] if teach is not None else None
        s1, s2 = views[epoch % 2]
        frames = small if epoch % 2 == 0 else small_flip
        perm = torch.randperm(len(x_tr), generator=gen)
        sums = np.zeros(3)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            z = bottleneck(s1[idx].float())
            noisy = z + args.noise * torch.randn(z.shape, generator=gen) if args.noise else z
            pred = expand(noisy)
            mse = F.mse_loss(pred, s2[idx].float()) / scale
            logits = rest(pred)
            ce = F.cross_entropy(logits, y_tr[idx], label_smoothing=args.smoothing)
            kd = (F.kl_div(F.log_softmax(logits / args.temp, 1), F.softmax(soft[idx] / args.temp, 1),
                           reduction="batchmean") * args.temp ** 2) if soft is not None else torch.zeros(())
            dcor = distance_correlation(frames[idx], z) if args.nopeek else torch.zeros(())
            loss = args.mse * mse + ce + args.kd * kd + args.nopeek * dcor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += (mse.item(), ce.item(), dcor.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, mse=f"{mse.item():.3f}", ce=f"{ce.item():.3f}", dcor=f"{dcor.item():.3f}")
        acc = top1(bottleneck, expand, rest, te1, y_te)
        history.append({"epoch": epoch + 1, "mse": round(sums[0] / steps_per_epoch, 4),
                        "ce": round(sums[1] / steps_per_epoch, 4), "dcor": round(sums[2] / steps_per_epoch, 4),
                        "test_top1": acc})
        bar.write(json.dumps(history[-1]))
    bar.close()
    acc = history[-1]["test_top1"]
    elapsed = time.perf_counter() - t0
    report = {"split": SPLIT_ID, "base_split": BASE_SPLIT, "target_split": TARGET_SPLIT, "channels": args.channels,
              "size": args.size, "width": args.width, "latent_shape": [args.channels, args.size, args.size], "test_top1": acc,
              "train_seconds": round(elapsed, 1), "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
              "wd": args.wd, "noise": args.noise, "nopeek": args.nopeek, "mse": args.mse, "kd": args.kd,
              "temp": args.temp, "tail_lr": args.tail_lr,
              "smoothing": args.smoothing, "seed": args.seed, "threads": args.threads, "train_images": len(x_tr),
              "history": history}
    print(f"test top-1: {acc:.4f} after {elapsed / 60:.1f} min")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"bottleneck": bottleneck.state_dict(), "expand": expand.state_dict(),
                "rest": {k: v.detach() for k, v in rest.named_parameters()} if args.tail_lr else None,
                "report": report}, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


@torch.no_grad()
def top1(bottleneck: Bottleneck, expand: Expand, rest: nn.Module, s1: torch.Tensor, labels: torch.Tensor,
         batch: int = 1000) -> float:
    bottleneck.eval()
    expand.eval()
    hits = 0
    for k in range(0, len(s1), batch):
        hits += int((rest(expand(bottleneck(s1[k:k + batch].float()))).argmax(1) == labels[k:k + batch]).sum())
    return hits / len(s1)


class Defended(nn.Module):
    """The whole defended network, in the order it runs: shipped stage1 head, bottleneck
    (device); expand, shipped stage2 tail (server)."""

    def __init__(self, m: Manifest, state: dict) -> None:
        super().__init__()
        r = state["report"]
        self.stage1 = load_onnx(m.split(BASE_SPLIT).head.path)
        size = r.get("size", 8)
        self.bottleneck = Bottleneck(m.split(BASE_SPLIT).shape[1], r["channels"], size)
        self.expand = Expand(r["channels"], r["width"], m.split(TARGET_SPLIT).shape[1], size)
        self.rest = load_onnx(m.split(TARGET_SPLIT).tail.path)
        for attr, value in (state.get("rest") or {}).items():  # a fine-tuned tail's weights
            getattr(self.rest, attr).copy_(value)
        self.bottleneck.load_state_dict(state["bottleneck"])
        self.expand.load_state_dict(state["expand"])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.expand(self.bottleneck(self.stage1(x))))


def export(ckpt: Path, manifest_path: Path) -> dict:
    """Full model, head and tail (cut from it, as ``training.export`` does), the split's
    manifest entry added or replaced. Calibrate and quantize it after (see ``main``)."""
    import onnx

    from training.calibrate import load_raw, write_raw
    from training.export import export_full, file_entry, rename_tensors, split_entry
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    m = Manifest.load(manifest_path)
    full = export_full(Defended(m, state))
    # the boundary: the bottleneck's last node, renamed to the split id
    rename_tensors(full, {[n for n in full.graph.node if n.name.startswith("/bottleneck/")][-1].output[0]: SPLIT_ID})
    onnx.checker.check_model(full)
    out, name = manifest_path.parent, "splitnet"
    entry = {**split_entry(full, SPLIT_ID, out, name),
             "full": file_entry(full, out / f"{name}.{SPLIT_ID}.onnx"),
             "defence": {k: v for k, v in state["report"].items() if k != "history"}}
    raw = load_raw(manifest_path)
    raw["splits"] = [s for s in raw["splits"] if s["id"] != SPLIT_ID] + [entry]
    write_raw(manifest_path, raw)
    Manifest.load(manifest_path)
    return entry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.defend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_path()))
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--channels", type=int, default=8, help="bottleneck channels")
    p.add_argument("--size", type=int, default=8, choices=(8, 4), help="bottleneck resolution (8x8 or 4x4)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=128, help="width of the server-side Expand block")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW rate of the new blocks")
    p.add_argument("--mse", type=float, default=1.0, help="weight of the stage2-latent loss")
    p.add_argument("--kd", type=float, default=0.0, help="weight of distillation from the full model's logits")
    p.add_argument("--temp", type=float, default=4.0, help="distillation temperature")
    p.add_argument("--tail-lr", type=float, default=0.0,
                   help="also fine-tune the shipped stage2 tail at this fraction of --lr (0: frozen)")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian noise on the (unit-variance) latent")
    p.add_argument("--nopeek", type=float, default=0.5, help="weight of the distance-correlation loss")
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="train on N random images only (smoke runs)")
    p.add_argument("--out", type=Path, default=Path("build/defended.pt"))
    p.add_argument("--export", type=Path, default=None, metavar="CKPT",
                   help="instead of training: export CKPT to ONNX and add the split to --manifest; then run "
                        f"python -m training.calibrate --splits {SPLIT_ID} and python -m training.quantize "
                        f"--splits {SPLIT_ID}")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.export is not None:
        e = export(args.export, args.manifest)
        print(f"wrote {e['head']['file']}, {e['tail']['file']}, {e['full']['file']}; {SPLIT_ID} latent "
              f"{'x'.join(map(str, e['shape'][1:]))} in {args.manifest}")
        return
    train(args)


if __name__ == "__main__":
    main()
