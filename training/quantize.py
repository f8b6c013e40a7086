"""Static INT8 quantization of every head, for senders that run the head on a small CPU.

    python -m training.quantize [--manifest models/manifest.json] [--images 512]

Each float32 head ``splitnet.<split>.head.onnx`` goes through ONNX Runtime's
``quant_pre_process`` (shape inference, BatchNorm folding) and ``quantize_static``: QDQ
format, int8 weights per output channel (symmetric), uint8 activations (asymmetric, min/max
calibrated on ``--images`` training images, a seeded choice, through a
``CalibrationDataReader``). uint8 activations with int8 weights (U8S8) is what ONNX Runtime's
x86 kernels fuse into fast integer convolutions: on this machine's Xeon (AVX-512 VNNI) the
U8S8 stage2 head runs about 2.7x faster than float32, while int8 activations (S8S8) in QDQ
ran no faster than float32. The result, ``splitnet.<split>.head.int8.onnx``, still takes the
float32 image and still outputs the float32 latent (the last DequantizeLinear keeps the
split's tensor name), so the same tails, codecs and calibration apply. The manifest gets
``splits[i].head_int8 = {file, sha256, bytes, params, macs}`` (read-modify-write). Every
written model is loaded by ONNX Runtime and compared with its float32 head before the
manifest is written.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.offline import onnxcut  # noqa: E402
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, ModelFile, Runner  # noqa: E402
from splitcore.runtime.preprocess import to_input  # noqa: E402
from training.calibrate import load_raw, train_indices, write_raw  # noqa: E402


class ImageReader(CalibrationDataReader):
    """Feeds uint8 RGB images one at a time (the heads have batch 1) as the model input."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name, self.images, self.i = input_name, images, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.images):
            return None
        x = to_input(self.images[self.i])
        self.i += 1
        return {self.input_name: x}

    def rewind(self) -> None:
        self.i = 0


def int8_path(head: Path) -> Path:
    return head.with_name(head.name.replace(".head.onnx", ".head.int8.onnx"))


def calib_chunk(n: int, most: int = 64) -> int:
    """Images per min/max reduction. ORT 1.32's MinMax calibrator keeps every intermediate
    output until the reduction; with a chunk that divides the image count exactly it ends
    with nothing left and raises "No data is collected", so pick one that does not."""
    return next((c for c in range(most, 1, -1) if n % c), n + 1)


def quantize_head(head: Path, out: Path, input_name: str, images: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "prep.onnx"
        quant_pre_process(str(head), str(prep))
        quantize_static(str(prep), str(out), ImageReader(input_name, images),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibMaxIntermediateOutputs": calib_chunk(len(images))})


def check(head: ModelFile, out: Path, in_shape: tuple[int, ...], images: np.ndarray) -> dict:
    """ORT loads the INT8 head; it has the float head's interface; how close its latent is."""
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ref = Runner(head, in_shape)
    q = Runner(ModelFile(out, "", 0, 0), in_shape, verify_sha=False)
    if q.output.shape != ref.output.shape or q.output_name != ref.output_name:
        raise RuntimeError(f"{out} outputs {q.output_name}{list(q.output.shape)}, the float head "
                           f"{ref.output_name}{list(ref.output.shape)}")
    if q.session.get_outputs()[0].type != "tensor(float)":
        raise RuntimeError(f"{out} does not output float32")
    errs, scales, mean_errs, mean_scales = [], [], [], []
    for img in images:
        x = to_input(img)
        a = ref.run(x).copy()
        d = np.abs(q.run(x) - a)
        errs.append(float(d.max()))
        scales.append(float(np.abs(a).max()))
        mean_errs.append(float(d.mean()))
        mean_scales.append(float(np.abs(a).mean()))
    # The max is one element (a clipped outlier shows there); the means say how the latent fares.
    return {"max_abs_latent_diff": max(errs), "max_abs_latent": max(scales),
            "mean_abs_latent_diff": float(np.mean(mean_errs)), "mean_abs_latent": float(np.mean(mean_scales))}


def file_entry(path: Path) -> dict:
    c = onnxcut.cost(onnx.load(str(path)))
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size, "params": c.params, "macs": c.macs}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--images", type=int, default=512, help="calibration images (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="", help="comma-separated split ids (default: all)")
    p.add_argument("--data", default=None, help="CIFAR-10 path (default: $SPLITRTC_DATA, which the Makefile sets)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    from splitcore.offline.datasets import load_cifar10
    train = load_cifar10(args.data, split="train")
    images = train.images[train_indices(len(train.images), args.images, args.seed)]
    quantize_all(args.manifest, images, args.seed, [s for s in args.splits.split(",") if s])
    print(f"wrote INT8 heads and {args.manifest} ({time.perf_counter() - t0:.1f} s)")


def quantize_all(manifest_path: Path, images: np.ndarray, seed: int = 0, splits: list[str] | None = None,
                 log=print) -> dict:
    ort.set_default_logger_severity(3)
    m = Manifest.load(manifest_path)
    raw = load_raw(manifest_path)
    for s in raw["splits"]:
        if splits and s["id"] not in splits:
            continue
        point = m.split(s["id"])
        out = int8_path(point.head.path)
        t0 = time.perf_counter()
        quantize_head(point.head.path, out, m.input_name, images)
        report = check(point.head, out, m.input_shape, images[:32])
        s["head_int8"] = {**file_entry(out), "calibration_images": len(images), "seed": seed,
                          "format": "QDQ, int8 weights per channel, uint8 activations (MinMax)"}
        log(f"{s['id']:<9} {out.name}: {point.head.path.stat().st_size:,} -> {out.stat().st_size:,} bytes, "
            f"max |latent diff| {report['max_abs_latent_diff']:.4g} of max |latent| "
            f"{report['max_abs_latent']:.4g} ({time.perf_counter() - t0:.1f} s)")
    write_raw(manifest_path, raw)
    Manifest.load(manifest_path)  # still a valid manifest
    return raw


if __name__ == "__main__":
    main()
