"""--split auto: the choice among measured operating points."""
from __future__ import annotations

import json

import pytest

from splitcore.runtime.operating import OperatingPoints


def points(tmp_path, pts):
    path = tmp_path / "op.json"
    path.write_text(json.dumps({"full_top1": 0.9, "points": pts}))
    return OperatingPoints.load(path)


P = [{"split": "stage1", "codec": "float32", "head": "float32", "payload_bytes": 32832, "top1": 0.9},
     {"split": "stage2", "codec": "clip4", "head": "float32", "payload_bytes": 2120, "top1": 0.895},
     {"split": "stage2", "codec": "clip4+zlib", "head": "int8", "payload_bytes": 1500, "top1": 0.889},
     {"split": "features", "codec": "clip4+zlib", "head": "float32", "payload_bytes": 700, "top1": 0.85}]


def test_fewest_bytes_within_the_drop(tmp_path) -> None:
    op = points(tmp_path, P)
    assert op.choose(1.0).codec == "clip4" and op.choose(1.0).split == "stage2"
    assert op.choose(1.2).head == "int8"
    assert op.choose(6.0).split == "features"
    assert op.choose(0.0).split == "stage1"
    assert op.choose(1.2, int8_head=False).codec == "clip4"
    assert op.choose(6.0, splits={"stage1", "stage2"}).payload_bytes == 1500


def test_zstd_only_when_asked(tmp_path) -> None:
    """Browsers cannot decode zstd: auto keeps to portable codecs unless told otherwise."""
    zstd = {"split": "features", "codec": "clip4+zstd", "head": "float32", "payload_bytes": 600, "top1": 0.899}
    op = points(tmp_path, P + [zstd])
    assert op.choose(1.0).codec == "clip4" and op.choose(1.0).split == "stage2"
    assert op.choose(1.0, portable=False).codec == "clip4+zstd"


def test_nothing_within_the_drop_is_an_error(tmp_path) -> None:
    op = points(tmp_path, P[1:])
    with pytest.raises(ValueError, match="no operating point within 0.1"):
        op.choose(0.1)


def test_missing_or_bad_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="run the study"):
        OperatingPoints.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid"):
        OperatingPoints.load(tmp_path / "bad.json")


def _leak(ssim: float) -> dict:
    return {"ssim": ssim, "psnr_db": 10.0 + 20 * ssim, "recon_top1": ssim, "attack": "inverse"}


def test_max_ssim_keeps_measured_private_points(tmp_path) -> None:
    """A leakage limit takes the fewest bytes among points attacked and found below it; a point
    never attacked is refused under a limit (unmeasured is not private)."""
    pts = [dict(P[0], leakage=_leak(0.95)), dict(P[1], leakage=_leak(0.5)), dict(P[2]),
           dict(P[3], leakage=_leak(0.2))]
    op = points(tmp_path, pts)
    assert op.choose(1.2).payload_bytes == 1500            # no limit: leakage plays no part
    assert op.choose(1.2, max_ssim=0.6).codec == "clip4"   # 1500 B was never attacked
    assert op.choose(6.0, max_ssim=0.3).split == "features"
    with pytest.raises(ValueError, match="attack SSIM <= 0.3"):
        op.choose(1.0, max_ssim=0.3)
    found = op.find("features", "clip4+zlib", "float32")
    assert found is not None and found.leakage is not None and found.leakage.ssim == 0.2
    assert "attack SSIM 0.20" in found.describe(0.9) and "not measured" in op.points[2].describe(0.9)


def test_leakage_from_the_privacy_study_is_the_worst_attack() -> None:
    """Each point takes the highest SSIM among the attacks on its split, head and quantizer;
    every codec of a quantizer shares it (compression is lossless)."""
    from splitcore.offline.operating import with_leakage
    study_points = {"points": [dict(p) for p in P]}
    privacy = {"inverse": [
        {"split": "stage2", "head": "float32", "quantizer": "clip4", "attack": "inverse", "ssim": 0.41,
         "psnr_db": 17.0, "recon_top1": 0.3},
        {"split": "stage2", "head": "int8", "quantizer": "clip4", "attack": "inverse", "ssim": 0.38,
         "psnr_db": 16.5, "recon_top1": 0.25}],
        "whitebox": [{"split": "stage2", "head": "float32", "quantizer": "clip4", "attack": "whitebox-rml",
                      "ssim": 0.52, "psnr_db": 18.0, "recon_top1": 0.4}]}
    out = with_leakage(study_points, privacy)["points"]
    assert "leakage" not in out[0]  # stage1 float32: not attacked
    assert out[1]["leakage"] == {"ssim": 0.52, "psnr_db": 18.0, "recon_top1": 0.4, "attack": "whitebox-rml"}
    assert out[2]["leakage"]["attack"] == "inverse" and out[2]["leakage"]["ssim"] == 0.38
