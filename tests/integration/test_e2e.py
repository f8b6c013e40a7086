"""End to end with real processes: server.py, a receiver and senders over real WebRTC.

The video is written from CIFAR-10 test images with a lossless codec, so "local full-model
inference on that frame" is computed here, independently, on exactly the pixels the sender
decodes (through the same capture code), and compared with every reply the sender logged.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sender.capture import VideoFileSource
from splitcore.offline.datasets import DatasetError, load_cifar10
from splitcore.runtime.models import Manifest, full_runner
from splitcore.runtime.preprocess import Preprocessor
from splitcore.wire.frame import Header
from tests.harness import Dashboard, process, receiver_args, run_sender, server, write_lossless_video

FRAMES = 60


@pytest.fixture(scope="module")
def cifar_video(tmp_path_factory) -> Path:
    try:
        test = load_cifar10(split="test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    picks = np.linspace(0, len(test.images) - 1, FRAMES).astype(int)  # every class
    return write_lossless_video(test.images[picks], tmp_path_factory.mktemp("video") / "cifar.mkv")


def local_labels(video: Path) -> dict[int, int]:
    """Full-model label of every frame, decoded and preprocessed as the sender does."""
    runner, pre = full_runner(Manifest.load()), Preprocessor("bgr")
    src = VideoFileSource(video, realtime=False)
    src.open()
    labels = {}
    while (frame := src.read()) is not None:
        labels[frame.index] = int(runner.run(pre(frame.image)).argmax())
    src.close()
    return labels


def test_video_through_server_receiver_and_sender(tmp_path: Path, cifar_video: Path) -> None:
    with server(tmp_path) as url, process(receiver_args(url, "e2e"), tmp_path / "receiver.log"):
        dash = Dashboard(url, "e2e")
        try:
            summary, _ = run_sender(url, "e2e", "--video", str(cifar_video), "--split", "stage1",
                                    "--log", str(tmp_path / "frames.jsonl"), "--verify")
            sent = summary["frames_sent"]
            size = Header(0, 0.0, "stage1", (1, 32, 16, 16)).header_len + 32 * 16 * 16 * 4
            # the receiver reports its closed session's final counters
            assert dash.wait_for(lambda: any(
                e["state"] == "closed" for e in dash.entries("receiver", "data-channel"))), dash.latest
            (channel,) = dash.entries("receiver", "data-channel")
        finally:
            dash.close()

    # every frame of the file was captured, and every frame sent is accounted for
    assert summary["accounted"] and summary["frames_captured"] == FRAMES
    assert summary["in_flight_at_exit"] == 0 and not summary["errors"]
    assert summary["replies"] + sum(summary["dropped_by_receiver"].values()) == sent
    assert sent + sum(summary["dropped_by_sender"].values()) == FRAMES
    assert summary["replies"] >= FRAMES // 2, summary

    # the latent frames are exactly the bytes sent; the channel also carries the sender's
    # ping/pong texts (a few dozen bytes each), of which the last may not arrive before close
    assert summary["frame_messages"] == sent and summary["frame_bytes"] == sent * size
    assert sent * size <= channel["bytesReceived"] <= summary["payload_bytes"]
    assert sent <= channel["messagesReceived"] <= summary["messages"]
    assert summary["payload_bytes"] - sent * size <= 64 * (summary["pings_sent"] + summary["pongs_sent"])
    assert summary["wire_bytes"] > summary["payload_bytes"]

    # every reply's label equals local full-model inference on that very frame
    expected = local_labels(cifar_video)
    replies = [r for r in map(json.loads, (tmp_path / "frames.jsonl").read_text().splitlines()) if "label" in r]
    assert len(replies) == summary["replies"]
    assert all(r["label"] == expected[r["frame"]] for r in replies), replies
    assert summary["fidelity"]["bit_exact"] == summary["replies"]

    # where the latency went: every stage measured, none negative, none beyond the worst frame
    stages = summary["latency_stages_p50_ms"]
    assert set(stages) == {"capture_to_head_ms", "encode_send_ms", "network_ms", "receiver_ms"}
    assert all(0 <= v <= summary["latency_p99_ms"] for v in stages.values()), stages


def test_receiver_serves_two_senders_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness import ROOT
    # the receiver and one sender on uvloop, the other sender on asyncio's own loop
    with server(tmp_path) as url, process(receiver_args(url, "pair", "--event-loop", "uvloop"),
                                          tmp_path / "receiver.log"):
        base = [sys.executable, "sender.py", "--server", url, "--room", "pair", "--json", "--quiet",
                "--frames", "45"]
        loops = {"stage1": "uvloop", "features": "asyncio"}
        procs = [subprocess.Popen(base + ["--split", split, "--name", split, "--event-loop", loops[split]], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for split in ("stage1", "features")]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        s = json.loads(out.strip().splitlines()[-1])
        assert s["accounted"] and s["frames_sent"] == 45 and s["in_flight_at_exit"] == 0
        assert s["replies"] > 0 and not s["errors"]


def test_split_auto_picks_the_fewest_bytes_within_the_drop(tmp_path: Path) -> None:
    from splitcore.runtime.operating import OperatingPoints
    points = OperatingPoints.load(Manifest.load().path.parent / "operating_points.json")
    want = points.choose(1.0)
    with server(tmp_path) as url, process(receiver_args(url, "auto"), tmp_path / "receiver.log"):
        summary, _ = run_sender(url, "auto", "--split", "auto", "--max-drop", "1.0", "--frames", "30",
                                "--quiet", "--verify")
    op = summary["operating_point"]
    assert (summary["split"], summary["codec"], summary["head"]) == (want.split, want.codec, want.head)
    assert op["payload_bytes"] == want.payload_bytes and op["top1"] >= points.full_top1 - 0.01
    assert summary["accounted"] and summary["replies"] > 0 and not summary["errors"]
