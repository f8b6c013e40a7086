"""The attack pipeline: the ONNX head in torch, the wire latents, the whole study on a tiny set.

Synthetic images (seeded, smoothed noise) stand in for CIFAR-10 so the test needs no data
set and takes seconds; the study itself is ``python -m training.privacy``.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a training extra (requirements-train.txt)")
pytest.importorskip("skimage", reason="scikit-image is a training extra (requirements-train.txt)")

from bench.study import head_file  # noqa: E402
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner  # noqa: E402
from splitcore.runtime.preprocess import to_input  # noqa: E402
from splitcore.wire import codecs, frame  # noqa: E402
from splitcore.wire.frame import Header, Reassembler  # noqa: E402
from tests.harness import noise_images  # noqa: E402
from training.privacy import inverse, latents, study  # noqa: E402
from training.privacy.onnx_torch import OnnxModule  # noqa: E402

pytestmark = pytest.mark.skipif(not DEFAULT_MANIFEST.is_file(), reason=f"no manifest at {DEFAULT_MANIFEST}")


images = noise_images


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.load()


@pytest.mark.parametrize("split", ["stem", "stage1", "stage2", "features"])
def test_torch_head_is_the_onnx_head(manifest: Manifest, split: str) -> None:
    """float32: the same numbers as ONNX Runtime; INT8: the same as ONNX Runtime running the QDQ
    graph as written (optimisations off: its fused int8 kernels compute differently, see the
    module doc); and gradients reach the input."""
    x = to_input(images(4))
    for head, opts in (("float32", None), ("int8", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        path = head_file(manifest, split, head).path
        so = ort.SessionOptions()
        if opts is not None:
            so.graph_optimization_level = opts
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ref = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
        t = torch.from_numpy(x).requires_grad_(True)
        y = OnnxModule(path)(t)
        assert y.shape == ref.shape
        got, tol = y.detach().numpy(), 1e-4 * float(np.abs(ref).max())
        if head == "float32":
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=tol)
        else:
            # a value at a rounding tie may land one quantisation step away (x / scale in
            # float32 is not ONNX Runtime's float arithmetic to the last bit), and the step
            # spreads through later layers: measured 1 in 16,384 at stage1, 1.4 % at features
            off = ~np.isclose(got, ref, rtol=1e-4, atol=tol)
            assert off.mean() <= 0.03, f"{off.sum()} of {off.size} values differ"
            assert float(np.abs(got - ref).max()) <= 0.05 * float(np.abs(ref).max())
        y.pow(2).sum().backward()
        assert t.grad is not None and float(t.grad.abs().sum()) > 0


def receiver_decode(latent: np.ndarray, spec: codecs.CodecSpec, split: str) -> np.ndarray:
    """The sender's encode and the receiver's reassembly and decode (receiver/session.py's
    calls), written out here rather than through bench.study's helpers."""
    dtype, codec, params, payload = codecs.encode(latent, spec)
    h = Header(7, 0.0, split, tuple(latent.shape), dtype, codec, spec.compression, params=params)
    r, done = Reassembler(), None
    for msg in frame.encode(h, payload, max_message=1024):
        done, _ = r.push(*frame.decode(msg))
    assert done is not None
    out = np.empty(latent.shape, np.float32)
    codecs.decode_tensor(done[0], done[1], out=out, channels=spec.channels)
    return out


@pytest.mark.parametrize("split", ["stem", "features"])
def test_attacker_latents_are_the_wire_decoders(manifest: Manifest, split: str) -> None:
    imgs = images(3, 1)
    point = manifest.split(split)
    for head in ("float32", "int8"):
        lat = latents.head_latents(manifest, split, head, imgs)
        runner = Runner(head_file(manifest, split, head), manifest.input_shape)
        for i in range(len(imgs)):  # the head as the sender runs it
            assert np.array_equal(lat[i], runner.run(to_input(imgs[i]))[0])
        for name in [*codecs.QUANTIZERS, "clip4+zlib", "int8-channel+zstd"]:
            spec = point.codec(name)
            got = latents.through_wire(lat, spec, split)
            want = np.stack([receiver_decode(lat[i][None], spec, split)[0] for i in range(len(lat))])
            assert got.dtype == np.float32 and np.array_equal(got, want), name
            if latents.quantizer_of(name) != "float32":
                assert not np.array_equal(got, lat), f"{name} should lose something"


def test_study_end_to_end_on_a_tiny_set(manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One split, two quantizers, both heads, a few dozen images, a few steps: every output
    written, and the decoder trained on exactly the wire latents of the training images."""
    train_x, test_x = images(48, 2), images(12, 3)
    test_y = np.arange(12) % 10
    seen: list[np.ndarray] = []
    real_train = inverse.train

    def spy(z: np.ndarray, x: np.ndarray, cfg: inverse.TrainConfig, progress=None):  # noqa: ANN001
        seen.append(z.copy())
        return real_train(z, x, cfg, progress)

    monkeypatch.setattr(inverse, "train", spy)
    args = study.parser().parse_args([
        "--splits", "stage1", "--heads", "float32,int8", "--quantizers", "float32,clip4",
        "--epochs", "1", "--batch", "16", "--whitebox-images", "4", "--whitebox-steps", "3",
        "--whitebox-quantizers", "clip4", "--grid-images", "4", "--out", str(tmp_path)])
    args.argv = ["(test)"]
    result = study.run(args, data=(train_x, test_x, test_y))
    from training.privacy.report import write
    write(result, tmp_path)

    point = manifest.split("stage1")
    want = latents.through_wire(latents.head_latents(manifest, "stage1", "float32", train_x), point.codec("clip4"),
                                "stage1")
    assert len(seen) == 4 and np.array_equal(seen[1], want)
    body = json.loads((tmp_path / "privacy.json").read_text())
    assert [(r["head"], r["quantizer"]) for r in body["inverse"]] == [
        ("float32", "float32"), ("float32", "clip4"), ("int8", "float32"), ("int8", "clip4")]
    for r in body["inverse"] + body["whitebox"] + body["baselines"]:
        assert 0 <= r["recon_top1"] <= 1 and -1 <= r["ssim"] <= 1
    assert [r["quantizer"] for r in body["whitebox"]] == ["clip4"] and body["whitebox"][0]["images"] == 4
    assert {b["codec"] for b in body["baselines"]} >= {"raw-uint8", "jpeg-q90", "webp-q50"}
    raw = next(b for b in body["baselines"] if b["codec"] == "raw-uint8")
    assert raw["exact"] == 1.0 and raw["ssim"] == pytest.approx(1.0)
    assert body["codecs"] and all(c["split"] == "stage1" for c in body["codecs"])  # joined with study.json
    md = (tmp_path / "privacy.md").read_text()
    assert "| stage1 | int8 | `clip4` |" in md
    for png in ("privacy_grid.png", "privacy_ssim_vs_bytes.png"):
        img = cv2.imread(str(tmp_path / png))
        assert img is not None and img.shape[0] > 100


def test_merge_replaces_what_a_later_run_redid_and_keeps_the_rest() -> None:
    """``--merge``: rows of the same split, head, quantizer and attack are replaced, new ones
    added, every other row kept, and the later run recorded in the metadata."""
    def row(split: str, q: str, ssim: float, attack: str = "inverse") -> dict:
        return {"split": split, "head": "float32", "quantizer": q, "attack": attack, "ssim": ssim,
                "psnr_db": 10.0, "recon_top1": 0.1}
    old = {"meta": {"command": "first"}, "inverse": [row("stem", "float32", 0.9), row("features", "float32", 0.1)],
           "whitebox": [row("stem", "float32", 0.95, "whitebox-rml")], "baselines": [], "codecs": []}
    new = {"meta": {"command": "later", "train_images": 10}, "grid": {},
           "inverse": [row("stem", "float32", 0.8), row("stem", "float16", 0.85)], "whitebox": []}
    out = study.merge(old, new, [])
    assert sorted((r["split"], r["quantizer"], r["ssim"]) for r in out["inverse"]) == [
        ("features", "float32", 0.1), ("stem", "float16", 0.85), ("stem", "float32", 0.8)]
    assert out["whitebox"] == old["whitebox"]
    assert out["meta"]["command"] == "first" and out["meta"]["merged"][0]["command"] == "later"
    assert out["meta"]["merged"][0]["quantizers"] == ["float16", "float32"]
