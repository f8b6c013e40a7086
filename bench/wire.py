"""Bytes on the wire: real messages over a real aiortc data channel, paced like a camera.

Two ``RTCPeerConnection`` in this process, connected over loopback (SDP handed over
directly, as in ``tests/integration/test_rtcstats.py``), one reliable ordered channel labelled
``latent``. For each stream of messages, ``measure`` sends frames at ``fps`` for
``seconds`` (cycling through the frames given), waits until the receiver has every message
and the send buffer is empty, and reads the counters of ``splitcore.rtc.stats`` before and
after: data-channel ``bytesSent`` (the application's messages) and transport
``bytesSent``/``packetsSent`` (DTLS records carrying SCTP: headers, acknowledgements,
retransmissions; not IP/UDP headers). Per frame, both directions.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from splitcore.rtc.stats import ChannelCounter, collect

TIMEOUT_S = 20.0


class _Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def on_message(self, _data) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


async def _pair() -> tuple[RTCPeerConnection, RTCDataChannel, RTCPeerConnection, _Receiver, list]:
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    recv, got = _Receiver(), []
    ready = asyncio.Event()

    @b.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        got.append(ChannelCounter.attach(channel))
        channel.on("message", recv.on_message)
        ready.set()

    ch = a.createDataChannel("latent")
    opened = asyncio.Event()
    ch.on("open", opened.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(asyncio.gather(opened.wait(), ready.wait()), TIMEOUT_S)
    return a, ch, b, recv, got


def _pick(report: list[dict], kind: str) -> dict:
    return next(e for e in report if e["type"] == kind)


async def _measure_one(a, ch, counter, b, bcounter, recv, frames: Sequence[Sequence[bytes]],
                       seconds: float, fps: float) -> dict:
    loop = asyncio.get_running_loop()
    n = max(1, int(round(seconds * fps)))
    a0, b0 = await collect(a, [counter]), await collect(b, [bcounter])
    recv.target = recv.count + sum(len(frames[i % len(frames)]) for i in range(n))
    recv.done.clear()
    t0 = loop.time()
    for i in range(n):
        delay = t0 + i / fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for m in frames[i % len(frames)]:
            ch.send(m)
    sent_s = loop.time() - t0
    await asyncio.wait_for(recv.done.wait(), TIMEOUT_S + seconds)
    while ch.bufferedAmount:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.25)  # the last SACK round trip
    a1, b1 = await collect(a, [counter]), await collect(b, [bcounter])

    def delta(r0: list[dict], r1: list[dict], kind: str, key: str) -> float:
        return _pick(r1, kind)[key] - _pick(r0, kind)[key]

    return {
        "frames": n, "fps": fps, "send_seconds": round(sent_s, 3),
        "messages_per_frame": delta(a0, a1, "data-channel", "messagesSent") / n,
        "payload_bytes_per_frame": delta(a0, a1, "data-channel", "bytesSent") / n,
        "wire_bytes_per_frame": delta(a0, a1, "transport", "bytesSent") / n,
        "wire_packets_per_frame": delta(a0, a1, "transport", "packetsSent") / n,
        "reverse_wire_bytes_per_frame": delta(b0, b1, "transport", "bytesSent") / n,
        "received_bytes_per_frame": delta(b0, b1, "data-channel", "bytesReceived") / n,
    }


async def _measure_all(streams: Sequence[Any], seconds: float, fps: float, progress: Any) -> dict:
    a, ch, b, recv, got = await _pair()
    counter = ChannelCounter.attach(ch)
    out = {}
    try:
        for key, frames in streams:
            r = await _measure_one(a, ch, counter, b, got[0], recv, frames, seconds, fps)
            r["wire_over_payload"] = r["wire_bytes_per_frame"] / max(1.0, r["payload_bytes_per_frame"])
            out[key] = r
            if progress:
                progress(key)
    finally:
        await a.close()
        await b.close()
    return out


def measure(streams: Sequence[tuple[Hashable, Sequence[Sequence[bytes]]]], seconds: float = 3.0,
            fps: float = 30.0, progress: Callable[[Hashable], None] | None = None) -> dict:
    """{key: per-frame counters} for each (key, frames); a frame is its list of messages."""
    return asyncio.run(_measure_all(streams, seconds, fps, progress))
