"""A real receiver process fed garbage over a real data channel: it answers every message
with an error naming what was wrong, counts it, and keeps serving good frames."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from splitcore.rtc.peer import description, new_peer_connection
from splitcore.rtc.signaling import SignalingClient
from splitcore.runtime.models import Manifest, Runner
from splitcore.wire.codecs import encode_tensor
from splitcore.wire.frame import Header, encode
from tests.harness import process, receiver_args, server

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


async def exchange(url: str, room: str, messages: list[bytes | str], expect: int) -> list[dict]:
    sig = SignalingClient(url, room, "sender", "garbage-sender")
    pc = new_peer_connection()
    replies: list[dict] = []
    got_all = asyncio.Event()

    async def on_signal(msg: dict) -> None:
        if msg["type"] == "answer":
            await pc.setRemoteDescription(description(msg))
    sig.on_signal(on_signal)
    await sig.connect()
    receiver = await sig.wait_for_peer("receiver", timeout=20)
    channel = pc.createDataChannel("latent")
    opened = asyncio.Event()
    channel.on("open", opened.set)

    @channel.on("message")
    def on_message(text: str) -> None:
        replies.append(json.loads(text))
        # the receiver's liveness pings (every 0.5 s) are not answers: on a slow machine they
        # would otherwise fill the count before the last frame's reply came
        if sum(r.get("type") != "ping" for r in replies) >= expect:
            got_all.set()
    await pc.setLocalDescription(await pc.createOffer())
    await sig.signal(receiver["id"], "offer", sdp=pc.localDescription.sdp)
    await asyncio.wait_for(opened.wait(), 20)
    for m in messages:
        channel.send(m)
        await asyncio.sleep(0.05)  # one at a time: a later good frame must not make one stale
    try:
        await asyncio.wait_for(got_all.wait(), 20)
    finally:
        await pc.close()
        await sig.close()
    return replies


def receiver_error(case: dict, msg: bytes) -> str:
    """The vector's error, unless the frame itself decodes: then the receiver first checks its
    split and shape against the manifest, which these small vectors do not match."""
    from splitcore.wire.frame import FrameError, decode
    try:
        h, _ = decode(msg)
    except FrameError:
        return case["error"]
    point = Manifest.load().splits.get(h.split)
    if point is None:
        return "unknown_split"
    return "shape_mismatch" if point.shape != h.shape else case["error"]


def good_frame(seq: int, split: str = "stage1") -> tuple[bytes, int]:
    m = Manifest.load()
    x = np.random.default_rng(seq).random((1, 3, 32, 32), np.float32)
    latent = Runner(m.split(split).head, m.input_shape).run(x)
    full = int(Runner(m.full, m.input_shape).run(x).argmax())
    (msg,) = encode(Header(seq, 1.0, split, latent.shape), encode_tensor(latent))
    return msg, full


def test_garbage_gets_errors_and_good_frames_still_get_replies(tmp_path: Path) -> None:
    index = json.loads((VECTORS / "index.json").read_text())
    invalid = [(VECTORS / c["message"]).read_bytes() for c in index["invalid"]]
    first, label1 = good_frame(100)
    unknown_split = encode(Header(101, 1.0, "nosuch", (1, 32, 16, 16)), bytes(32768))[0]
    wrong_shape = encode(Header(102, 1.0, "stage1", (1, 8, 8, 8)), bytes(2048))[0]
    last, label2 = good_frame(103)
    messages = [first, b"", b"\x00" * 7, "a text message", *invalid, unknown_split, wrong_shape, last]
    with server(tmp_path) as url, process(receiver_args(url, "bad", "--summary"), tmp_path / "r.log") as rp:
        replies = asyncio.run(exchange(url, "bad", messages, expect=len(messages)))
        assert rp.poll() is None, "receiver died"
    by_type = {}
    for r in replies:
        by_type.setdefault(r["type"], []).append(r)
    assert [r["seq"] for r in by_type["reply"]] == [100, 103], {k: [r.get("seq") for r in v] for k, v in by_type.items()}
    assert [r["label"] for r in by_type["reply"]] == [label1, label2]
    reasons = [r["reason"] for r in by_type["error"]]
    assert len(reasons) == len(messages) - 2
    assert reasons[:3] == ["truncated", "bad_magic", "bad_type"]
    assert reasons[3:3 + len(invalid)] == [receiver_error(c, m) for c, m in zip(index["invalid"], invalid, strict=True)]
    assert reasons[-2:] == ["unknown_split", "shape_mismatch"]
    log = (tmp_path / "r.log").read_text()
    assert "malformed message" in log and "Traceback" not in log
