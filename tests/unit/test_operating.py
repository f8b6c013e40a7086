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
