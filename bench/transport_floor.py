"""The data channel's own latency floor: aiortc to aiortc across two processes, no model.

    python -m bench.transport_floor [--sizes 1000,8248,16448,32832] [--seconds 10] [--event-loop uvloop] [--no-pin]

One process offers a reliable, ordered data channel and sends messages of each size at
``--fps``; a second process (spawned: its own interpreter, GIL and core, like SplitRTC's
sender and receiver) answers each with its 4-byte sequence number. The time from
``send()`` to the answer's arrival is the least a frame of that size can take end to end in
SplitRTC on this machine: no capture, model, codec, framing or JSON, only aiortc's SCTP,
DTLS and UDP on loopback. The SDP goes over a multiprocessing pipe, so no signaling server
runs during the measurement. Compare it with ``bench.loopback``'s per-stage latency. As
there, the two processes are pinned to a core each unless ``--no-pin``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import struct
import time
from pathlib import Path

import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from tqdm import tqdm

from splitcore.process.cpus import available, pin
from splitcore.process.loops import LOOPS, default_loop, run_with_loop

_SEQ = struct.Struct("<I")


async def _answer(conn) -> None:
    """Child side: answer the offer, echo each message's sequence number, stop when told."""
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()

    @pc.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        channel.on("message", lambda m: channel.send(m[:4]))

    offer = await loop.run_in_executor(None, conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send(pc.localDescription.sdp)
    await loop.run_in_executor(None, conn.recv)  # "stop"
    await pc.close()


def _child(conn, loop_name: str, cpu: int | None) -> None:
    if cpu is not None:
        pin({cpu})
    run_with_loop(_answer(conn), loop_name)


class _Echoes:
    """Send times by sequence number; round trips as the echoes come back."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.rtts: list[float] = []
        self.idle = asyncio.Event()

    def on_message(self, m: bytes) -> None:
        t = self.sent.pop(_SEQ.unpack_from(m)[0], None)
        if t is not None:
            self.rtts.append((time.perf_counter() - t) * 1000)
        if not self.sent:
            self.idle.set()


async def _stream(ch: RTCDataChannel, echoes: _Echoes, size: int, n: int, fps: float, seq0: int) -> None:
    payload = bytearray(size)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(n):
        delay = t0 + i / fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        _SEQ.pack_into(payload, 0, seq0 + i)
        echoes.sent[seq0 + i] = time.perf_counter()
        echoes.idle.clear()
        ch.send(bytes(payload))
    await asyncio.wait_for(echoes.idle.wait(), 30)


async def _offer(conn, sizes: list[int], seconds: float, fps: float, warmup: float) -> dict:
    pc = RTCPeerConnection()
    ch = pc.createDataChannel("latent", ordered=True)
    echoes, opened = _Echoes(), asyncio.Event()
    ch.on("open", opened.set)
    ch.on("message", echoes.on_message)
    await pc.setLocalDescription(await pc.createOffer())
    conn.send(pc.localDescription.sdp)
    answer = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(opened.wait(), 30)
    out, seq = {}, 0
    try:
        for size in tqdm(sizes, desc="sizes", unit="size"):
            await _stream(ch, echoes, size, int(warmup * fps), fps, seq)  # cwnd and caches warm
            seq += int(warmup * fps)
            echoes.rtts.clear()
            n = int(seconds * fps)
            await _stream(ch, echoes, size, n, fps, seq)
            seq += n
            p50, p99 = np.percentile(echoes.rtts, [50, 99])
            out[size] = {"messages": len(echoes.rtts), "p50_ms": round(float(p50), 3),
                         "p99_ms": round(float(p99), 3)}
    finally:
        conn.send("stop")
        await pc.close()
    return out


def measure(sizes: list[int], seconds: float = 10.0, fps: float = 30.0, loop_name: str = "asyncio",
            warmup: float = 1.0, pinned: bool = True) -> dict:
    """{size: {messages, p50_ms, p99_ms}} of send-to-echo round trips across two processes,
    pinned to the first two available CPUs (when ``pinned`` and there are two)."""
    cpus = sorted(available())
    mine, theirs = (cpus[0], cpus[1]) if pinned and len(cpus) >= 2 else (None, None)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, loop_name, theirs), daemon=True)
    proc.start()
    if mine is not None:
        pin({mine})
    try:
        return run_with_loop(_offer(parent, sizes, seconds, fps, warmup), loop_name)
    finally:
        if mine is not None:
            pin(set(cpus))
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.transport_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,8248,16448,32832",
                   help="message sizes in bytes (default: 1 KB and SplitRTC's float32 frames "
                        "at features, stage2 and stage1)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per size (default 10)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--event-loop", choices=LOOPS, default=default_loop(),
                   help="event loop for both processes (default: uvloop where installed)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let the kernel place the two processes (default: a core each)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    res = measure([int(s) for s in args.sizes.split(",")], args.seconds, args.fps, args.event_loop,
                  pinned=args.pin)
    print(f"\naiortc data channel, two processes{' pinned to a core each' if args.pin else ''}, "
          f"{args.fps:g} messages/s, event loop {args.event_loop}:\n")
    print("| message B | echoes | p50 ms | p99 ms |\n|---|---|---|---|")
    for size, r in res.items():
        print(f"| {size:,} | {r['messages']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"loop": args.event_loop, "pinned": args.pin, "fps": args.fps,
                                        "seconds": args.seconds,
                                        "results": res}, indent=2) + "\n")


if __name__ == "__main__":
    main()
