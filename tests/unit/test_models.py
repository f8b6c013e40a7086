"""The shipped models: manifest integrity, and every head -> tail equal to the full model."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from splitcore.offline import onnxcut
from splitcore.offline.datasets import DatasetError, load_cifar10
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner, full_runner, head_runner, tail_runner
from splitcore.runtime.preprocess import to_input

MANIFEST = Manifest.load()
RAW = json.loads(DEFAULT_MANIFEST.read_text())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    try:
        return to_input(load_cifar10(split="test").images[::50])  # 200 images, every class
    except DatasetError as exc:
        pytest.skip(str(exc))


def test_manifest_describes_every_file() -> None:
    assert MANIFEST.input_shape == (1, 3, 32, 32) and len(MANIFEST.classes) == 10
    assert set(MANIFEST.splits) >= {"stage1", "stage2", "features"}
    for s in RAW["splits"]:
        assert s["bytes"] == int(np.prod(s["shape"])) * 4 and s["dtype"] == "float32"
        for side in ("head", "tail", *(["full"] if "full" in s else [])):
            path = DEFAULT_MANIFEST.parent / s[side]["file"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == s[side]["sha256"]
            model = onnx.load(path)
            assert onnxcut.cost(model).params == s[side]["params"]
    shapes = {s["id"]: tuple(s["shape"]) for s in RAW["splits"]}
    assert shapes["stage1"] == (1, 32, 16, 16) and shapes["stage2"] == (1, 64, 8, 8)
    assert shapes["features"] == (1, 2048)


@pytest.mark.slow
def test_recorded_accuracy_is_what_the_onnx_model_scores() -> None:
    """The manifest's test top-1 (measured in PyTorch at the end of training) must be what
    the exported full model scores in ONNX Runtime on all 10,000 test images (slow: the
    default suite checks a 200-image sample below)."""
    try:
        test = load_cifar10(split="test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    runner = full_runner(MANIFEST)
    x = to_input(test.images)
    correct = sum(int(runner.run(x[i:i + 1]).argmax()) == y for i, y in enumerate(test.labels))
    assert abs(correct / len(test.labels) - RAW["training"]["test_top1"]) <= 0.002


@pytest.mark.parametrize("split", sorted(MANIFEST.splits))
def test_head_then_tail_equals_full_model_bit_for_bit(split: str, images: np.ndarray) -> None:
    full, head, tail = full_runner(MANIFEST, split_id=split), head_runner(MANIFEST, split), tail_runner(MANIFEST, split)
    for x in images:
        expected = full.run(x[None]).copy()
        got = tail.run(head.run(x[None]))
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_full_model_accuracy_on_a_sample(images: np.ndarray) -> None:
    labels = load_cifar10(split="test").labels[::50]
    runner = full_runner(MANIFEST)
    correct = sum(int(runner.run(x[None]).argmax()) == y for x, y in zip(images, labels, strict=True))
    assert correct / len(labels) >= 0.85  # 200 images: the full-set figure is in the manifest


def test_wrong_model_file_is_refused(tmp_path) -> None:
    from splitcore.runtime.models import ModelError, ModelFile
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="does not match the manifest"):
        Runner(ModelFile(bad, "0" * 64, 0, 0), (1, 3, 32, 32))
    with pytest.raises(ModelError, match="cannot load"):
        Runner(ModelFile(bad, hashlib.sha256(b"not onnx").hexdigest(), 0, 0), (1, 3, 32, 32))
