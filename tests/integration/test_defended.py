"""The defended split (``stage1-private``, ``python -m training.defend``) streams like every
other: real server, receiver and sender processes, each frame checked against the split's
own full model (``--verify``), with a quantizing codec from its calibration."""
from __future__ import annotations

from pathlib import Path

import pytest

from splitcore.runtime.models import Manifest
from tests.harness import process, receiver_args, run_sender, server

SPLIT = "stage1-private"


@pytest.mark.parametrize("codec,int8", [("float32", False), ("int8-channel+zlib", False), ("clip4", True)])
def test_defended_split_streams_and_matches_its_full_model(tmp_path: Path, codec: str, int8: bool) -> None:
    point = Manifest.load().split(SPLIT)
    assert point.full is not None and point.calibration is not None and point.head_int8 is not None
    args = ["--split", SPLIT, "--codec", codec, "--frames", "30", "--verify", *(["--int8-head"] if int8 else [])]
    with server(tmp_path) as url, process(receiver_args(url, "priv"), tmp_path / "receiver.log"):
        summary, _ = run_sender(url, "priv", *args)
    assert summary["accounted"] and not summary["errors"] and summary["replies"] >= 15, summary
    assert (summary["split"], summary["codec"]) == (SPLIT, codec)
    fid = summary["fidelity"]
    assert fid["verified"] == summary["replies"]
    if codec == "float32":
        # the receiver's tail on the exact latent: the split's own full model, bit for bit
        assert fid["bit_exact"] == fid["verified"], fid
