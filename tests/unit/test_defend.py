"""The defended split's training pieces: NoPeek's distance correlation against known values,
and the export (full model, head and tail cut from it, manifest entry) on a fresh copy of
``models/``. Training itself is ``python -m training.defend``; the shipped split's fidelity is
``tests/unit/test_models.py``, like every split's."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a training extra (requirements-train.txt)")

from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, Runner, full_runner, head_runner  # noqa: E402
from training import defend  # noqa: E402


def test_distance_correlation_known_values() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 12, generator=gen)
    assert float(defend.distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-5)
    # any linear map of x (here a rotation and a scale) is as dependent as x itself
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen))
    assert float(defend.distance_correlation(x, 3.0 * x @ q)) == pytest.approx(1.0, abs=1e-4)
    # independent samples: small, and shrinking with the batch (the sample statistic's bias)
    small = float(defend.distance_correlation(x, torch.rand(256, 12, generator=gen)))
    big = torch.rand(2048, 12, generator=gen)
    smaller = float(defend.distance_correlation(big, torch.rand(2048, 12, generator=gen)))
    assert 0.0 <= smaller < small < 0.45
    # a function of part of x sits in between
    part = float(defend.distance_correlation(x, x[:, :3] ** 2))
    assert small < part < 0.9


def test_export_cuts_a_bit_exact_split_with_its_own_full_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(DEFAULT_MANIFEST.parent, models)
    m = Manifest.load(models / "manifest.json")
    torch.manual_seed(0)
    bottleneck, expand = defend.Bottleneck(32, 8), defend.Expand(8, 16, 64)
    for bn in (mod for mod in [*bottleneck.modules(), *expand.modules()] if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)   # not the identity: the export must carry them
        bn.running_var.uniform_(0.5, 2.0)
    report = {"channels": 8, "width": 16}
    ckpt = tmp_path / "d.pt"
    torch.save({"bottleneck": bottleneck.state_dict(), "expand": expand.state_dict(), "rest": None,
                "report": report}, ckpt)
    entry = defend.export(ckpt, models / "manifest.json")
    assert entry["id"] == defend.SPLIT_ID and entry["shape"] == [1, 8, 8, 8] and entry["bytes"] == 2048
    m = Manifest.load(models / "manifest.json")
    point = m.split(defend.SPLIT_ID)
    assert point.full is not None and point.full.path.name == f"splitnet.{defend.SPLIT_ID}.onnx"
    assert list(m.splits)[:4] == ["stem", "stage1", "stage2", "features"]  # the others untouched
    x = np.random.default_rng(0).random((4, 1, 3, 32, 32), np.float32)
    head, full = head_runner(m, defend.SPLIT_ID), full_runner(m, split_id=defend.SPLIT_ID)
    tail = Runner(point.tail, point.shape)
    reference = defend.Defended(m, torch.load(ckpt, weights_only=False))
    for xi in x:
        want = full.run(xi).copy()
        got = tail.run(head.run(xi).copy())
        assert np.array_equal(got, want)  # head -> tail is the full model, bit for bit
        with torch.no_grad():
            np.testing.assert_allclose(reference(torch.from_numpy(xi)).numpy(), want, atol=1e-4)
    # exporting again replaces the entry instead of adding a second one
    defend.export(ckpt, models / "manifest.json")
    raw = json.loads((models / "manifest.json").read_text())
    assert [s["id"] for s in raw["splits"]].count(defend.SPLIT_ID) == 1
