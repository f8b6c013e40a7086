"""The study's measurement functions, calibration and INT8 quantization, on a few images.

Synthetic images (seeded, smoothed noise) keep these tests at a few seconds and independent
of the data set; the full study is ``python -m bench.study`` (results/).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bench import study
from bench.wire import measure
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner
from splitcore.runtime.preprocess import to_input
from splitcore.wire import codecs, frame
from tests.harness import noise_images
from training import calibrate, quantize

# Another manifest (e.g. an untrained export) can stand in while models/ is being rebuilt.
MANIFEST_PATH = Path(os.environ.get("SPLITRTC_TEST_MANIFEST", DEFAULT_MANIFEST))
pytestmark = pytest.mark.skipif(not MANIFEST_PATH.is_file(), reason=f"no manifest at {MANIFEST_PATH}")


images = noise_images


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    """The manifest, with calibration computed here for splits that have none yet."""
    m = Manifest.load(MANIFEST_PATH)
    splits = {}
    for sid, point in m.splits.items():
        if point.calibration is None:
            cal = calibrate.calibrate_split(m, sid, images(6, 1), images(0), seed=0)
            point = dataclasses.replace(point, calibration=cal)
        splits[sid] = point
    return dataclasses.replace(m, splits=splits)


@pytest.fixture(scope="module")
def context(manifest: Manifest) -> study.Context:
    imgs = images(3, 2)
    logits, ms = study.full_reference(manifest, imgs)
    return study.Context(manifest, imgs, np.array([0, 1, 2]), logits, ms, wire_frames=2)


@pytest.mark.parametrize("name", ["float32", "int8-tensor", "clip4+zlib", "int8-channel+zstd"])
def test_bytes_are_header_plus_payload(manifest: Manifest, name: str) -> None:
    point = manifest.split("stage1")
    spec = point.codec(name)
    x = Runner(point.head, manifest.input_shape).run(to_input(images(1))).copy()
    msgs = study.frame_messages(x, spec, "stage1")
    _, _, params, payload = codecs.encode(x, spec)
    h = frame.decode(msgs[0])[0]
    assert len(msgs) == 1 and sum(map(len, msgs)) == h.header_len + len(payload)
    assert study.header_bytes(msgs) == h.header_len == (40 + 16 + len("stage1") + len(params) + 7) // 8 * 8
    if spec.compression == frame.Compression.NONE:
        assert len(payload) == codecs.raw_size(h)
    y = study.decode_messages(msgs, spec.channels)
    assert y.shape == x.shape and y.dtype == np.float32
    if name == "float32":
        assert np.array_equal(y, x)


def test_fragmented_frame_counts_every_header(manifest: Manifest) -> None:
    point = manifest.split("stem")  # 98,304 B of float32: two messages
    x = np.abs(np.random.default_rng(0).standard_normal(point.shape)).astype(np.float32)
    msgs = study.frame_messages(x, point.codec("float32"), "stem")
    assert len(msgs) == 2 and max(map(len, msgs)) <= frame.MAX_MESSAGE
    assert sum(map(len, msgs)) == study.header_bytes(msgs) + x.nbytes
    assert np.array_equal(study.decode_messages(msgs), x)


def test_run_split_rows(context: study.Context) -> None:
    ctx = dataclasses.replace(context, codecs=("float32", "float16+zstd", "int8-channel", "int8-channel+zlib",
                                               "clip4+zstd"))
    rows, keep = study.run_split(ctx, "stage2", "float32")
    by = {r["codec"]: r for r in rows}
    assert set(by) == set(ctx.codecs)
    f = by["float32"]  # head -> tail is the full model bit for bit
    assert f["agreement"] == 1.0 and f["max_abs_logit_diff"] == 0.0 and f["images"] == 3
    assert f["payload_bytes"] == f["header_bytes"] + 64 * 8 * 8 * 4 == f["raw_payload_bytes"] + f["header_bytes"]
    assert by["int8-channel"]["payload_bytes"] == by["int8-channel"]["header_bytes"] + 4096
    assert by["int8-channel+zlib"]["top1"] == by["int8-channel"]["top1"]
    assert all(r["lossless_mismatches"] == 0 for r in rows)
    assert all(r["head_ms"] > 0 and r["tail_ms"] > 0 and r["encode_ms"] > 0 for r in rows)
    assert all(len(v) == 2 for v in keep.values())  # wire_frames=2


def test_jpeg_baseline(context: study.Context) -> None:
    data, back, enc_ms, dec_ms = study.jpeg_roundtrip(context.images[0], 90)
    assert data[:2] == b"\xff\xd8" and back.shape == (32, 32, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - context.images[0]).mean() < 8
    rows, wire = study.baselines(context, (90,))
    by = {r["codec"]: r for r in rows}
    assert by["raw-uint8"]["payload_bytes"] == 3072 and by["input-float32"]["payload_bytes"] == 12288
    assert by["raw-uint8"]["agreement"] == 1.0
    assert by["jpeg-q90"]["payload_bytes"] == np.mean([len(study.jpeg_roundtrip(i, 90)[0]) for i in context.images])
    assert len(wire["raw-uint8"][0][0]) == 3072


def test_calibration_is_accepted_by_codecs(manifest: Manifest) -> None:
    m = Manifest.load(MANIFEST_PATH)
    cal = calibrate.calibrate_split(m, "features", images(4, 3), images(2, 4), seed=0)
    assert cal["clip"][0] == 0.0 and cal["clip"][1] > 0 and cal["images"] == 4
    assert cal["percentile"] in calibrate.CLIP_CANDIDATES and "check" in cal
    ch = cal["int8_channel"]
    assert ch["channels"] == len(ch["scale"]) == len(ch["zero_point"]) == 128  # 2,048 = 128 blocks of 16
    assert set(ch["zero_point"]) == {-128}  # ReLU latents: lo = 0
    for name in ("clip4", "int8-channel+zstd"):
        spec = codecs.parse(name, cal)
        x = Runner(m.split("features").head, m.input_shape).run(to_input(images(1, 5)))
        assert calibrate.roundtrip(x, spec, "features").shape == (1, 2048)
    assert calibrate.channel_count(m.split("stage1").head.path, (1, 32, 16, 16)) == 32


def test_affine_int8_matches_codecs_convention() -> None:
    lo, hi = np.array([0.0, -1.0, 0.0, -0.3]), np.array([2.55, 1.0, 0.0, 7.1])
    scale, zp = calibrate.affine_int8(lo, hi)
    assert zp[0] == zp[2] == -128 and scale[2] == 1.0 and np.isclose(scale[0], 0.01)
    for c in (0, 1, 3):  # what int8-tensor computes for a tensor with the same range
        _, _, params, _ = codecs.encode(np.array([lo[c], hi[c]], np.float32), codecs.parse("int8-tensor"))
        assert codecs._AFFINE.unpack(params) == (scale[c], zp[c])
    assert calibrate.train_indices(100, 10, 0).tolist() != calibrate.train_indices(100, 10, 0, skip=10).tolist()
    assert not set(calibrate.train_indices(100, 10, 0)) & set(calibrate.train_indices(100, 10, 0, skip=10))


def test_int8_head_outputs_the_float_latent(manifest: Manifest, tmp_path: Path) -> None:
    point = manifest.split("stem")  # the smallest head: quantizes in about a second
    out = tmp_path / "stem.head.int8.onnx"
    quantize.quantize_head(point.head.path, out, manifest.input_name, images(4, 6))
    report = quantize.check(point.head, out, manifest.input_shape, images(2, 7))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].type == "tensor(float)" and sess.get_outputs()[0].name == "stem"
    # One element may clip (the max diff on these noise images is a third of the max value);
    # the latent as a whole must stay close: a broken quantization is off by ~100%.
    assert report["mean_abs_latent_diff"] < 0.15 * report["mean_abs_latent"]
    entry = quantize.file_entry(out)
    assert entry["bytes"] == out.stat().st_size and entry["macs"] == point.head.macs


def test_wire_measure_counts_payload_and_transport() -> None:
    frames = [[b"\x01" * 1000], [b"\x02" * 1000]]
    r = measure([("k", frames)], seconds=0.2, fps=30)["k"]
    assert r["frames"] == 6 and r["messages_per_frame"] == 1.0
    assert r["payload_bytes_per_frame"] == r["received_bytes_per_frame"] == 1000
    assert r["wire_bytes_per_frame"] > 1000 and r["wire_packets_per_frame"] >= 1


def test_pareto_and_headline() -> None:
    def row(kind, codec, b, top1, split="s", head="float32"):
        return {"kind": kind, "codec": codec, "payload_bytes": b, "top1": top1, "split": split, "head": head,
                "agreement": top1, "max_abs_logit_diff": 0.0}
    rows = [row("baseline", "raw-uint8", 3072, 0.9, "input", None), row("baseline", "jpeg-q90", 1000, 0.88, "input", None),
            row("latent", "a", 500, 0.85), row("latent", "b", 800, 0.895), row("latent", "c", 900, 0.89),
            row("latent", "d", 4000, 0.9)]
    assert [r["codec"] for r in study.pareto([r for r in rows if r["kind"] == "latent"])] == ["a", "b", "d"]
    h = study.headline(rows)
    assert h["smallest_within_1pt"]["codec"] == "b" and h["within_1pt_at_most_2048"]
    assert h["best_below_jpeg-q90"]["codec"] == "b" and h["best_below_raw-uint8"]["codec"] == "b"


@pytest.mark.slow
def test_small_full_study(tmp_path: Path) -> None:
    """The whole command on 100 test images (needs the data set; about a minute)."""
    study.main(["--manifest", str(MANIFEST_PATH), "--images", "100", "--wire-seconds", "0.3", "--jpeg", "90",
                "--out", str(tmp_path)])
    for name in ("study.json", "study.md", "bytes_vs_accuracy.png", "bytes_per_split.png"):
        assert (tmp_path / name).stat().st_size > 0
    result = __import__("json").loads((tmp_path / "study.json").read_text())
    rows = [r for r in result["rows"] if r["kind"] == "latent"]
    assert len(rows) == len(Manifest.load(MANIFEST_PATH).splits) * 2 * len(study.ALL_CODECS)
    assert all("wire_bytes" in r for r in rows) and all(r["lossless_mismatches"] == 0 for r in rows)
