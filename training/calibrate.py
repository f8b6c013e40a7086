"""Calibrate the latent codecs of every split on training images and add them to the manifest.

    python -m training.calibrate [--manifest models/manifest.json] [--images 2000] [--held-out 1000]

For each split the float32 head runs on ``--images`` training images (a seeded choice) and
``splits[i].calibration`` is written into the manifest (read-modify-write: every other field
is kept):

    {"clip": [lo, hi], "percentile": p,
     "int8_channel": {"scale": [...], "zero_point": [...], "percentile": q},
     "images": N, "seed": s, "check": {...}}

- ``clip`` (clip4): ``hi`` is the p-th percentile of all latent values (zeros included). A
  ReLU latent (stem, features) gets ``lo`` = 0; a signed one (the linear stage1 and stage2
  boundaries) gets the (100 - p)-th percentile, clipping both tails alike.
- ``int8_channel``: channel ``c`` is the c-th of C contiguous blocks of the flattened latent
  (C = the conv channels: ``shape[1]`` of a 4-D latent; for a flattened latent, the channels
  of the tensor that the head's final Flatten flattens, e.g. 128 blocks of 16 for 2,048
  features). Its range is [0, q-th percentile of that channel] (for a signed channel, the
  (100 - q)-th percentile to the q-th), and scale/zero point follow
  ``splitcore.wire.codecs``' int8 convention: ``scale = (hi - lo) / 255``,
  ``zero_point = rint(-128 - lo / scale)``, so a ReLU latent gets zero point -128.
- p and q are not guessed: each candidate percentile is tried on ``--held-out`` *other*
  training images (never the test set) through encode -> decode -> tail, and the one with the
  smallest mean squared logit error against the float32 model wins (ties: more top-1
  agreement). The logit error decides because top-1 agreement on 1,000 images moves in steps
  of 0.1 % and differed between neighbouring candidates by a few images, i.e. by noise; the
  scores of every candidate (both metrics) are kept under ``check`` for review.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner  # noqa: E402
from splitcore.runtime.preprocess import to_input  # noqa: E402
from splitcore.wire import codecs  # noqa: E402
from splitcore.wire.frame import Header  # noqa: E402

CLIP_CANDIDATES = (99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)
CHANNEL_CANDIDATES = (99.9, 99.99, 99.999, 100.0)
DEFAULT_PERCENTILE = 99.99  # used when --held-out 0 skips the check


# ------------------------------------------------------------------------- manifest and data


def load_raw(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_raw(path: Path, raw: dict) -> None:
    """Write atomically: a reader never sees half a manifest."""
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(path)


def train_indices(total: int, count: int, seed: int, skip: int = 0) -> np.ndarray:
    """``count`` indices of a seeded permutation of ``total`` training images after the first
    ``skip``: the same seed gives calibration (skip 0) and held-out sets (skip N) that never
    overlap."""
    perm = np.random.default_rng(seed).permutation(total)
    if skip + count > total:
        raise ValueError(f"asked for {skip + count} of {total} training images")
    return np.sort(perm[skip:skip + count])


def load_train_images(n: int, held_out: int, seed: int, data: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    from splitcore.offline.datasets import load_cifar10
    train = load_cifar10(data, split="train")
    total = len(train.images)
    return (train.images[train_indices(total, n, seed)],
            train.images[train_indices(total, held_out, seed, skip=n)])


# ----------------------------------------------------------------------------- calibration


def channel_count(head_path: Path, shape: tuple[int, ...]) -> int:
    """C for per-channel int8: the conv channels, also when the head ends in Flatten."""
    if len(shape) == 4:
        return int(shape[1])
    model = onnx.load(str(head_path))
    out = model.graph.output[0].name
    node = next((n for n in model.graph.node if out in n.output), None)
    if node is not None and node.op_type in ("Flatten", "Reshape"):
        inferred = onnx.shape_inference.infer_shapes(model)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            if vi.name == node.input[0]:
                dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
                if len(dims) >= 3 and dims[1] > 0:
                    return int(dims[1])
    return 1  # no channel structure known: one block, i.e. per tensor


def head_latents(runner: Runner, images: np.ndarray) -> np.ndarray:
    """[N, elements] float32 latents of N uint8 RGB images."""
    x = to_input(images)
    out = np.empty((len(x), runner.output.size), np.float32)
    for i in range(len(x)):
        out[i] = runner.run(x[i:i + 1]).ravel()
    return out


def clip_range(latents: np.ndarray, percentile: float) -> list[float]:
    lo = float(latents.min())
    if lo >= 0.0:
        lo = 0.0
    else:  # not a ReLU latent: clip the low tail symmetrically
        lo = float(np.percentile(latents, 100.0 - percentile))
    hi = float(np.percentile(latents, percentile))
    return [lo, max(hi, lo + 1e-6)]


def affine_int8(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scale/zero point per channel, as codecs' int8-tensor computes them for one tensor."""
    lo = np.minimum(lo.astype(np.float64), 0.0)
    hi = np.maximum(hi.astype(np.float64), 0.0)
    scale = np.where(hi > lo, ((hi - lo) / 255.0).astype(np.float32), np.float32(1.0)).astype(np.float32)
    zp = np.clip(np.rint(-128.0 - lo / scale.astype(np.float64)), -128, 127).astype(np.int32)
    return scale, zp


def channel_params(latents: np.ndarray, channels: int, percentile: float) -> dict:
    per = latents.reshape(len(latents), channels, -1).transpose(1, 0, 2).reshape(channels, -1)
    lo = per.min(axis=1)
    lo = np.where(lo >= 0, 0.0, np.percentile(per, 100.0 - percentile, axis=1))
    hi = per.max(axis=1) if percentile >= 100 else np.percentile(per, percentile, axis=1)
    scale, zp = affine_int8(lo, hi)
    return {"scale": [float(s) for s in scale], "zero_point": [int(z) for z in zp],
            "percentile": percentile}


def roundtrip(latent: np.ndarray, spec: codecs.CodecSpec, split: str) -> np.ndarray:
    """encode -> decode of one latent, as the receiver sees it."""
    dtype, codec, params, payload = codecs.encode(latent, spec)
    h = Header(0, 0.0, split, tuple(latent.shape), dtype, codec, spec.compression, len(payload), params=params)
    return codecs.decode_tensor(h, payload, channels=spec.channels)


def score(latents: np.ndarray, shape: tuple[int, ...], spec: codecs.CodecSpec, split: str,
          tail: Runner, reference: np.ndarray) -> dict:
    """Agreement of top-1 with the float32 model and mean squared logit error."""
    agree, sq = 0, 0.0
    for lat, ref in zip(latents, reference, strict=True):
        logits = tail.run(roundtrip(lat.reshape(shape), spec, split)).ravel()
        agree += int(logits.argmax() == ref.argmax())
        sq += float(np.mean((logits - ref) ** 2))
    return {"agreement": agree / len(latents), "logit_mse": sq / len(latents)}


def choose(scores: dict[float, dict]) -> float:
    return min(scores, key=lambda p: (scores[p]["logit_mse"], -scores[p]["agreement"]))


def calibrate_split(m: Manifest, split_id: str, calib: np.ndarray, held: np.ndarray,
                    seed: int, threads: int = 1) -> dict:
    point = m.split(split_id)
    head = Runner(point.head, m.input_shape, threads)
    lat = head_latents(head, calib)
    channels = channel_count(point.head.path, point.shape)
    out: dict = {"images": len(calib), "seed": seed}
    if len(held):
        tail = Runner(point.tail, point.shape, threads)
        held_lat = head_latents(head, held)
        reference = np.stack([tail.run(x.reshape(point.shape)).ravel().copy() for x in held_lat])
        clip_scores = {p: score(held_lat, point.shape, codecs.parse("clip4", {"clip": clip_range(lat, p)}),
                                split_id, tail, reference) for p in CLIP_CANDIDATES}
        chan_scores = {q: score(held_lat, point.shape,
                                codecs.parse("int8-channel", {"int8_channel": channel_params(lat, channels, q)}),
                                split_id, tail, reference) for q in CHANNEL_CANDIDATES}
        p, q = choose(clip_scores), choose(chan_scores)
        out["check"] = {"held_out_images": len(held), "metric": "mean squared logit error against the float32 "
                        "model on held-out training images (ties: top-1 agreement)",
                        "clip4": {str(k): v for k, v in clip_scores.items()},
                        "int8_channel": {str(k): v for k, v in chan_scores.items()}}
    else:
        p = q = DEFAULT_PERCENTILE
    out["clip"] = clip_range(lat, p)
    out["percentile"] = p
    out["int8_channel"] = channel_params(lat, channels, q)
    out["int8_channel"]["channels"] = channels
    codecs.parse("clip4", out), codecs.parse("int8-channel", out)  # what the receiver will do
    return out


def calibrate(manifest_path: Path, calib: np.ndarray, held: np.ndarray, seed: int,
              splits: list[str] | None = None, threads: int = 1, log=print) -> dict:
    """The manifest dict with ``calibration`` added to each split (not written)."""
    m = Manifest.load(manifest_path)
    raw = load_raw(manifest_path)
    for s in raw["splits"]:
        if splits and s["id"] not in splits:
            continue
        t0 = time.perf_counter()
        s["calibration"] = calibrate_split(m, s["id"], calib, held, seed, threads)
        c = s["calibration"]
        log(f"{s['id']:<9} clip [{c['clip'][0]:.4g}, {c['clip'][1]:.4g}] at p{c['percentile']}, int8-channel "
            f"C={c['int8_channel']['channels']} at p{c['int8_channel']['percentile']} "
            f"({time.perf_counter() - t0:.1f} s)")
    return raw


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--images", type=int, default=2000, help="calibration images (default 2000)")
    p.add_argument("--held-out", type=int, default=1000,
                   help="other training images for choosing the percentiles (0: use p99.99)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="", help="comma-separated split ids (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="CIFAR-10 path (default: $SPLITRTC_DATA, which the Makefile sets)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    calib, held = load_train_images(args.images, args.held_out, args.seed, args.data)
    raw = calibrate(args.manifest, calib, held, args.seed, [s for s in args.splits.split(",") if s],
                    args.threads)
    write_raw(args.manifest, raw)
    print(f"wrote calibration into {args.manifest} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
