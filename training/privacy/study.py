"""The privacy study: every split x quantizer x head attacked, beside bytes and accuracy.

    python -m training.privacy [--train-images 5000] [--test-images 1000] [--epochs 3]
        [--splits stem,stage1,stage2,features] [--heads float32,int8]
        [--quantizers float32,int8-channel,clip4]
        [--whitebox-images 100] [--whitebox-steps 150] [--whitebox-quantizers float32,clip4]
        [--whitebox-heads float32] [--out results/]

Seeded (``--seed``): the training subset, the decoders' initialisation and batches, the
white-box start. The attacker learns from CIFAR-10 *training* images only; test images are
only measured. Writes ``privacy.json``, ``privacy.md``, ``privacy_grid.png`` and
``privacy_ssim_vs_bytes.png`` under ``--out``; bytes a frame and top-1 of each codec come
from ``--study`` (``results/study.json`` of ``bench.study``), matched by split, head and
codec, each codec sharing its quantizer's attack (``latents``: compression is lossless).

Budget (90 min on the 2-core CPU). Measured on 2026-12-01 on a machine shared with training
jobs and tests (load 4-7): the defaults of the time (float32, int8-channel and clip4 x both
heads, white-box 100 images x 150 steps on the float32 head for float32 and clip4) took
1,734 s for the four shipped splits; float16 and int8-tensor, inverse network only, 376 s
more for five splits. The defaults now attack all five quantizers (every codec shares its
quantizer's attack), about 35 minutes in all. White-box on INT8 heads
(``--whitebox-heads float32,int8``) differentiates the QDQ graph as written, which ONNX
Runtime's fused int8 kernels do not reproduce exactly (see ``onnx_torch``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.study import head_file, pick_images
from splitcore.offline.datasets import load_cifar10
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner
from splitcore.runtime.preprocess import to_input
from splitcore.wire import codecs
from training.privacy import baselines, inverse, latents, metrics, whitebox
from training.privacy.onnx_torch import OnnxModule

ROOT = Path(__file__).resolve().parents[2]
_now = time.perf_counter


def _csv(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


class Classifier:
    """The full float32 model on the receiver: top-1 of reconstructions."""

    def __init__(self, m: Manifest) -> None:
        self.runner = Runner(m.full, m.input_shape, threads=1)

    def top1(self, images_nchw01: np.ndarray, labels: np.ndarray) -> float:
        x = np.ascontiguousarray(np.clip(images_nchw01, 0.0, 1.0), np.float32)
        hits = sum(int(self.runner.run(x[i:i + 1]).argmax()) == int(labels[i]) for i in range(len(x)))
        return hits / max(1, len(x))


def measure(originals: np.ndarray, recons: np.ndarray, labels: np.ndarray, clf: Classifier) -> dict:
    """Leakage (PSNR, SSIM) and the full model's top-1 on the reconstructions."""
    nchw = recons if recons.dtype != np.uint8 else to_input(recons)
    return {**metrics.leakage(originals, recons).as_dict(), "recon_top1": clf.top1(nchw, labels)}


def load_data(args: argparse.Namespace) -> tuple:
    train = load_cifar10(args.data, split="train")
    rng = np.random.default_rng(args.seed)
    tidx = np.sort(rng.choice(len(train.images), min(args.train_images, len(train.images)), replace=False))
    test = load_cifar10(args.data, split="test")
    vidx = pick_images(args.test_images, len(test.images))
    return train.images[tidx], test.images[vidx], test.labels[vidx]


def study_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text())["rows"] if r.get("kind") == "latent"]


def run(args: argparse.Namespace, data: tuple | None = None) -> dict:
    """The whole study; ``data`` = (train images, test images, test labels) replaces CIFAR-10."""
    t_start = _now()
    torch.set_num_threads(args.threads)
    m = Manifest.load(args.manifest)
    train_x, test_x, test_y = data if data is not None else load_data(args)
    splits = _csv(args.splits) or list(m.splits)
    heads, quants = _csv(args.heads), _csv(args.quantizers)
    for q in quants + _csv(args.whitebox_quantizers):
        latents.quantizer_of(q)
    wb_n = min(args.whitebox_images, len(test_x))
    wb_idx = pick_images(wb_n, len(test_x)) if wb_n else np.array([], int)
    # the grid's images are among the white-box ones, so both attacks show the same pictures
    grid_idx = (wb_idx[pick_images(args.grid_images, len(wb_idx))] if wb_n
                else pick_images(args.grid_images, len(test_x)))
    clf = Classifier(m)
    cfg = inverse.TrainConfig(args.epochs, args.batch, args.lr, args.width, args.seed)
    wcfg = whitebox.WhiteBoxConfig(args.whitebox_steps, args.whitebox_lr, args.whitebox_tv, seed=args.seed)
    n_tr, n_te = len(train_x), len(test_x)
    wb_pairs = [(h, q) for h in _csv(args.whitebox_heads) if h in heads for q in _csv(args.whitebox_quantizers)
                if q in quants]
    total = len(splits) * (len(heads) * (n_tr + n_te) * (1 + len(quants)) + len(heads) * len(quants)
                           * cfg.epochs * n_tr + len(wb_pairs) * wb_n * wcfg.steps)
    rows, wb_rows, base_rows, grid, timings = [], [], [], {"original": test_x[grid_idx]}, {}

    t0 = _now()
    base_rows.append({"codec": "raw-uint8", "bytes": 3072.0, **measure(test_x, test_x, test_y, clf)})
    for fmt in baselines.FORMATS:
        for q in _csv(args.qualities):
            size, back = baselines.compressed(test_x, fmt, int(q))
            base_rows.append({"codec": f"{fmt}-q{q}", "bytes": size, **measure(test_x, back, test_y, clf)})
            if int(q) == int(_csv(args.qualities)[-1]):
                grid[f"{fmt} q{q}"] = back[grid_idx]
    timings["baselines_s"] = _now() - t0

    with tqdm(total=total, desc="privacy", unit="img", smoothing=0.05) as bar:
        for split in splits:
            point = m.split(split)
            for head in heads:
                t0 = _now()
                bar.set_description(f"{split}/{head} head")
                lat_tr = latents.head_latents(m, split, head, train_x, bar.update)
                lat_te = latents.head_latents(m, split, head, test_x, bar.update)
                torch_head = OnnxModule(head_file(m, split, head).path) if any(
                    h == head for h, _ in wb_pairs) else None
                for q in quants:
                    spec = point.codec(q)
                    bar.set_description(f"{split}/{head}/{q} wire")
                    z_tr = latents.through_wire(lat_tr, spec, split, bar.update)
                    z_te = latents.through_wire(lat_te, spec, split, bar.update)
                    bar.set_description(f"{split}/{head}/{q} inverse net")
                    t1 = _now()
                    net, record = inverse.train(z_tr, train_x, cfg, bar.update)
                    train_s = _now() - t1
                    del z_tr
                    rec = inverse.reconstruct(net, z_te)
                    row = {"split": split, "head": head, "quantizer": q, "attack": "inverse",
                           "latent_bytes_raw": int(codecs.raw_size(_header(spec, z_te[0], split))),
                           **measure(test_x, rec, test_y, clf), "train": record, "train_s": round(train_s, 1)}
                    rows.append(row)
                    if head == heads[0]:
                        grid[f"{split} {q} inverse"] = rec[grid_idx]
                    if (head, q) in wb_pairs and torch_head is not None:
                        bar.set_description(f"{split}/{head}/{q} white-box")
                        t1 = _now()
                        wrec = whitebox.invert(torch_head, z_te[wb_idx], wcfg,
                                               lambda k: bar.update(k))
                        wb_rows.append({"split": split, "head": head, "quantizer": q, "attack": "whitebox-rml",
                                        **measure(test_x[wb_idx], wrec, test_y[wb_idx], clf),
                                        "steps": wcfg.steps, "tv": wcfg.tv, "lr": wcfg.lr,
                                        "seconds": round(_now() - t1, 1)})
                        if head == heads[0]:
                            pos = np.searchsorted(wb_idx, grid_idx)
                            ok = (pos < len(wb_idx)) & (wb_idx[np.minimum(pos, len(wb_idx) - 1)] == grid_idx)
                            if ok.all():
                                grid[f"{split} {q} white-box"] = wrec[pos]
                timings[f"{split}/{head}_s"] = _now() - t0
    timings["total_s"] = _now() - t_start
    codec_rows = attach_study(rows, study_rows(args.study))
    return {"meta": meta(args, n_tr, n_te, wb_n, timings), "inverse": rows, "whitebox": wb_rows,
            "baselines": base_rows, "codecs": codec_rows, "grid": {k: v.tolist() for k, v in grid.items()}}


def _header(spec: codecs.CodecSpec, z: np.ndarray, split: str):
    from bench.study import frame_messages
    from splitcore.wire import frame
    return frame.decode(frame_messages(z[None], spec, split)[0])[0]


def attach_study(rows: list[dict], study: list[dict]) -> list[dict]:
    """One row per codec of the study whose split, head and quantizer were attacked."""
    by = {(r["split"], r["head"], r["quantizer"]): r for r in rows}
    out = []
    for s in study:
        a = by.get((s["split"], s["head"], s["quantizer"]))
        if a is None:
            continue
        out.append({"split": s["split"], "head": s["head"], "codec": s["codec"], "quantizer": s["quantizer"],
                    "payload_bytes": s["payload_bytes"], "top1": s["top1"], "psnr_db": a["psnr_db"],
                    "ssim": a["ssim"], "recon_top1": a["recon_top1"]})
    return sorted(out, key=lambda r: (r["payload_bytes"]))


def meta(args: argparse.Namespace, n_tr: int, n_te: int, wb_n: int, timings: dict) -> dict:
    from importlib.metadata import version
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "command": " ".join(["python -m training.privacy", *args.argv]),
            "train_images": n_tr, "test_images": n_te, "whitebox_images": wb_n, "seed": args.seed,
            "threads": args.threads, "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "metrics": "scikit-image structural_similarity (7x7 uniform window, channel_axis=-1, data_range=1) "
                       "and peak_signal_noise_ratio (data_range=1), per image then averaged",
            "versions": {"torch": torch.__version__, "scikit-image": version("scikit-image"), "numpy": np.__version__}}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.privacy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--data", default=None, help="CIFAR-10 path (default $SPLITRTC_DATA)")
    p.add_argument("--study", type=Path, default=ROOT / "results" / "study.json")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--splits", default="", help="comma-separated (default: all in the manifest)")
    p.add_argument("--heads", default="float32,int8")
    p.add_argument("--quantizers", default=",".join(codecs.QUANTIZERS),
                   help=f"any of {', '.join(codecs.QUANTIZERS)} (default: all)")
    p.add_argument("--train-images", type=int, default=5000, help="attacker's CIFAR-10 training images")
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32, help="decoder base width")
    p.add_argument("--whitebox-images", type=int, default=100)
    p.add_argument("--whitebox-steps", type=int, default=150)
    p.add_argument("--whitebox-lr", type=float, default=0.05)
    p.add_argument("--whitebox-tv", type=float, default=0.05)
    p.add_argument("--whitebox-heads", default="float32")
    p.add_argument("--whitebox-quantizers", default="float32,clip4")
    p.add_argument("--qualities", default="90,75,50", help="JPEG and WebP baselines")
    p.add_argument("--grid-images", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true",
                   help="replace or add only the rows this run makes (split x head x quantizer x attack) in the "
                        "existing --out/privacy.json; its pictures go to privacy_grid_<splits>.png")
    return p


def merge(old: dict, new: dict, study: list[dict]) -> dict:
    """``old`` with the attack rows ``new`` redid (same split, head, quantizer and attack)
    replaced by ``new``'s and its other rows added; the codec table is rebuilt from ``study``."""
    def key(r: dict) -> tuple[str, str, str, str]:
        return r["split"], r["head"], r["quantizer"], r["attack"]
    redone = {key(r) for r in new["inverse"] + new["whitebox"]}
    splits = {r["split"] for r in new["inverse"]}
    inverse = [r for r in old["inverse"] if key(r) not in redone] + new["inverse"]
    whitebox = [r for r in old["whitebox"] if key(r) not in redone] + new["whitebox"]
    quants = sorted({r["quantizer"] for r in new["inverse"]})
    meta = {**old["meta"], "merged": [*old["meta"].get("merged", []),
                                      {"splits": sorted(splits), "quantizers": quants, **new["meta"]}]}
    return {**old, "meta": meta, "inverse": inverse, "whitebox": whitebox,
            "codecs": attach_study(inverse, study), "grid": {}}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    from training.privacy.report import write
    result = run(args)
    old = args.out / "privacy.json"
    if args.merge and old.is_file():
        from training.privacy.report import grid_png
        before = json.loads(old.read_text())
        new_splits = sorted({r["split"] for r in result["inverse"]} - {r["split"] for r in before["inverse"]})
        if new_splits:  # a split the grid has not shown: its own picture
            grid = {k: np.asarray(v) for k, v in result["grid"].items()
                    if k == "original" or k.split(" ")[0] in new_splits}
            grid_png(grid, args.out / f"privacy_grid_{'_'.join(new_splits)}.png")
        result = merge(before, result, study_rows(args.study))
    write(result, args.out)
    print(f"wrote {args.out}/privacy.json, privacy.md, privacy_grid.png, privacy_ssim_vs_bytes.png "
          f"({result['meta']['timings_s']['total_s']:.0f} s)")
