"""Peers for the network-namespace tests, run inside a namespace by ``tests/netns.py``.

``allocate``: one TURN allocation with the given credentials through aioice (the TURN client
aiortc uses), printing whether coturn granted it.

``receiver`` / ``sender``: a split-inference session over a data channel set up with
``splitcore.rtc.peer.new_peer_connection`` and ``splitcore.rtc.ice`` (relay-only when asked),
signaled through ``server.py``: the sender runs the real head on CIFAR-10 test images, sends
each latent as ``splitcore.wire.frame`` messages, and checks every reply's label against the
full model run locally; the receiver reassembles, runs the real tail and replies. At the end
each side writes a JSON summary: transport stats (``splitcore.rtc.stats``), the selected
candidate pair and DTLS cipher (``splitcore.rtc.peer.security``), and for the sender the
byte strings that must never appear in clear on the wire (each frame's header, a slice of
each latent).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCDataChannel

from splitcore.offline.datasets import load_cifar10
from splitcore.rtc import ice as icecfg
from splitcore.rtc.peer import description, new_peer_connection, security
from splitcore.rtc.signaling import SignalingClient
from splitcore.rtc.stats import ChannelCounter, collect
from splitcore.runtime.models import Manifest, full_runner, head_runner, tail_runner
from splitcore.runtime.preprocess import to_input
from splitcore.wire import frame

WINDOW = 4          # frames in flight: the sender waits for replies rather than queue
TIMEOUT_S = 45.0


async def allocate(args: argparse.Namespace) -> dict[str, Any]:
    from aioice.turn import create_turn_endpoint

    class Sink(asyncio.DatagramProtocol):
        pass

    host, port = args.turn.rsplit(":", 1)
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(Sink, (host, int(port)), args.username, args.credential), 10)
    except Exception as exc:  # noqa: BLE001 - the refusal is the result being tested
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    relayed = transport.get_extra_info("sockname")
    transport.close()
    return {"ok": True, "relayed": list(relayed) if relayed else None}


def _ice(args: argparse.Namespace) -> icecfg.IceConfig:
    return icecfg.load(args.ice_servers, args.relay_only)


def _transport(report: list[dict]) -> dict:
    return next((e for e in report if e.get("type") == "transport"), {})


async def receiver(args: argparse.Namespace) -> dict[str, Any]:
    manifest = Manifest.load()
    tail = tail_runner(manifest, args.split)
    sig = SignalingClient(args.server, args.room, "receiver", "ns-receiver")
    done = asyncio.Event()
    state: dict[str, Any] = {"frames": 0, "errors": []}
    pcs = []

    async def on_signal(msg: dict) -> None:
        if msg.get("type") != "offer":
            return
        pc = new_peer_connection(_ice(args))
        pcs.append(pc)

        @pc.on("datachannel")
        def on_channel(ch: RTCDataChannel) -> None:
            counter = ChannelCounter.attach(ch)
            reasm = frame.Reassembler()

            @ch.on("message")
            def on_message(data: bytes | str) -> None:
                if isinstance(data, str):
                    if json.loads(data).get("type") == "done":
                        asyncio.ensure_future(finish(ch, counter))
                    return
                try:
                    h, part = frame.decode(data)
                    complete, _ = reasm.push(h, part)
                except frame.FrameError as exc:
                    state["errors"].append(str(exc))
                    return
                if complete is None:
                    return
                head, payload = complete
                latent = np.frombuffer(payload, np.float32).reshape(head.shape)
                label = int(np.argmax(tail.run(latent)))
                state["frames"] += 1
                ch.send(json.dumps({"type": "reply", "seq": head.seq, "label": label}))

        await pc.setRemoteDescription(description(msg))
        await pc.setLocalDescription(await pc.createAnswer())
        await sig.signal(msg["from"], "answer", sdp=pc.localDescription.sdp)

    async def finish(ch: RTCDataChannel, counter: ChannelCounter) -> None:
        report = await collect(pcs[-1], [counter])
        state.update(transport=_transport(report), security=security(pcs[-1]).entry(),
                     channel=counter.entry(0))
        ch.send(json.dumps({"type": "summary", **state}))
        done.set()

    sig.on_signal(on_signal)
    await sig.connect()
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
        await asyncio.sleep(0.5)  # let the summary leave before closing
    finally:
        for pc in pcs:
            await pc.close()
        await sig.close()
    return state


async def sender(args: argparse.Namespace) -> dict[str, Any]:
    manifest = Manifest.load()
    head, full = head_runner(manifest, args.split), full_runner(manifest)
    images = load_cifar10(split="test", limit=args.frames).images
    inputs = to_input(images)
    sig = SignalingClient(args.server, args.room, "sender", "ns-sender")
    await sig.connect()
    peer = await sig.wait_for_peer("receiver", timeout=args.timeout)
    pc = new_peer_connection(_ice(args))
    ch = pc.createDataChannel("latent")
    counter = ChannelCounter.attach(ch)
    opened, answered, summary = asyncio.Event(), asyncio.Event(), asyncio.get_running_loop().create_future()
    labels: dict[int, int] = {}
    window = asyncio.Semaphore(WINDOW)
    all_replied = asyncio.Event()
    ch.on("open", opened.set)

    @ch.on("message")
    def on_message(data: bytes | str) -> None:
        msg = json.loads(data)
        if msg.get("type") == "reply":
            labels[msg["seq"]] = msg["label"]
            window.release()
            if len(labels) == args.frames:
                all_replied.set()
        elif msg.get("type") == "summary" and not summary.done():
            summary.set_result(msg)

    async def on_signal(msg: dict) -> None:
        if msg.get("type") == "answer":
            await pc.setRemoteDescription(description(msg))
            answered.set()

    sig.on_signal(on_signal)
    result: dict[str, Any] = {"frames": args.frames}
    try:
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        result["offer_candidate_types"] = sorted({line.split(" typ ")[1].split()[0]
                                                  for line in sdp.splitlines() if " typ " in line})
        await sig.signal(peer["id"], "offer", sdp=sdp)
        await asyncio.wait_for(opened.wait(), args.timeout)
        result["security_at_open"] = security(pc).entry()
        expected, needles = [], []
        start = time.perf_counter()
        for i in range(args.frames):
            await asyncio.wait_for(window.acquire(), args.timeout)
            x = inputs[i:i + 1]
            expected.append(int(np.argmax(full.run(x))))
            latent = head.run(x)
            h = frame.Header(seq=i, capture_ms=time.time() * 1000.0, split=args.split, shape=tuple(latent.shape))
            msgs = frame.encode(h, latent)
            raw = latent.tobytes()
            needles.append({"header": msgs[0][:24].hex(), "latent": _busy_slice(raw, i).hex()})
            for m in msgs:
                ch.send(m)
        await asyncio.wait_for(all_replied.wait(), args.timeout)
        result["send_s"] = time.perf_counter() - start
        ch.send(json.dumps({"type": "done"}))
        peer_summary = await asyncio.wait_for(summary, args.timeout)
        report = await collect(pc, [counter])
        result.update(
            replies=len(labels), mismatches=[i for i, e in enumerate(expected) if labels.get(i) != e],
            latent_bytes=int(head.output.nbytes), transport=_transport(report), channel=counter.entry(0),
            security=security(pc).entry(), receiver=peer_summary, needles=needles)
    finally:
        await pc.close()
        await sig.close()
    return result


def _busy_slice(raw: bytes, i: int, size: int = 32) -> bytes:
    """A ``size``-byte slice of a latent with many distinct byte values (ReLU outputs have
    runs of zeros, which would prove nothing if searched for in a capture)."""
    step = max(1, (len(raw) - size) // 97)
    for k in range(97):
        off = ((i * 31 + k) * step) % max(1, len(raw) - size)
        piece = raw[off:off + size]
        if len(set(piece)) >= size // 2:
            return piece
    raise ValueError("latent has no varied 32-byte slice")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("allocate", "sender", "receiver"))
    p.add_argument("--out", type=Path, required=True, help="JSON summary file")
    p.add_argument("--turn", help="allocate: HOST:PORT of the TURN server")
    p.add_argument("--username")
    p.add_argument("--credential")
    p.add_argument("--server", help="signaling server URL")
    p.add_argument("--room", default="netns")
    p.add_argument("--split", default="stage1")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S)
    icecfg.add_ice_options(p)
    args = p.parse_args()
    run = {"allocate": allocate, "sender": sender, "receiver": receiver}[args.mode]
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
