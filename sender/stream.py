"""The sender's connection and its real-time loop: capture -> head -> encode -> send.

There is no frame queue anywhere on this side. The loop reads a frame only when it is ready
for one; if compute falls behind, the pacer skips capture deadlines (counted as stale), and
if the data channel is backed up the frame is dropped before sending (counted as
back-pressure), so latency cannot build up behind old frames.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass, field

from aiortc import RTCDataChannel

from sender.capture import FrameSource, Pacer, frames, pacer_for
from sender.head import HeadCompute
from sender.ledger import Ledger
from splitcore.rtc.peer import add_browser_candidate, description, new_peer_connection
from splitcore.rtc.signaling import SignalingClient, SignalingError
from splitcore.rtc.stats import ChannelCounter, StatsPublisher, collect
from splitcore.wire import codecs
from splitcore.wire.codecs import CodecSpec
from splitcore.wire.frame import Header, encode

log = logging.getLogger("splitrtc.sender")


@dataclass
class StreamOptions:
    split: str
    codec: CodecSpec = field(default_factory=lambda: CodecSpec("float32"))
    frames: int = 0                 # 0: until the source ends or Ctrl-C
    fps: float = 30.0
    max_buffered: int = 256 * 1024  # bytes queued in the channel before frames are dropped
    drain_timeout: float = 5.0      # seconds to wait for outstanding replies at the end
    receiver_name: str | None = None
    connect_timeout: float = 30.0


class SenderStream:
    def __init__(self, signaling: SignalingClient, compute: HeadCompute, source: FrameSource,
                 ledger: Ledger, opts: StreamOptions, ice_servers: list[str] | None = None) -> None:
        self.signaling, self.compute, self.source = signaling, compute, source
        self.ledger, self.opts = ledger, opts
        self.pc = new_peer_connection(ice_servers)
        self.channel: RTCDataChannel | None = None
        self.counter: ChannelCounter | None = None
        self.receiver_id = ""
        self._settled = asyncio.Event()
        self.stopping = False
        self.publisher = StatsPublisher(signaling.sio, self._report, self.app_stats)

    async def connect(self) -> None:
        """Join, find a receiver, offer, and wait until the data channel is open."""
        self.signaling.on_signal(self._on_signal)
        await self.signaling.connect()
        peer = await self.signaling.wait_for_peer("receiver", self.opts.receiver_name,
                                                  self.opts.connect_timeout)
        self.receiver_id = peer["id"]
        self.channel = self.pc.createDataChannel("latent", ordered=True)
        self.counter = ChannelCounter.attach(self.channel)
        self.channel.on("message", self._on_reply)
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.signaling.signal(self.receiver_id, "offer", sdp=self.pc.localDescription.sdp)
        log.info("offered to receiver %s (%s), split %s", self.receiver_id, peer.get("name"), self.opts.split)
        try:
            await asyncio.wait_for(opened.wait(), self.opts.connect_timeout)
        except TimeoutError:
            raise SignalingError(f"data channel to receiver {self.receiver_id} did not open within "
                                 f"{self.opts.connect_timeout:.0f}s (connection {self.pc.connectionState})") from None
        self.publisher.start()

    async def _on_signal(self, msg: dict) -> None:
        if msg.get("from") != self.receiver_id:
            log.warning("ignoring %s from %s: not our receiver", msg.get("type"), msg.get("from"))
        elif msg.get("type") == "answer":
            await self.pc.setRemoteDescription(description(msg))
        elif msg.get("type") == "candidate":
            await add_browser_candidate(self.pc, msg.get("candidate"))

    def _on_reply(self, raw: bytes | str) -> None:
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
        except (ValueError, TypeError) as exc:
            log.warning("unreadable message from receiver: %s", exc)
            self.ledger.unmatched += 1
            return
        self.ledger.on_message(msg, time.monotonic() * 1000)
        if msg.get("type") == "error":
            log.warning("receiver refused seq %s: %s %s", msg.get("seq"), msg.get("reason"), msg.get("detail", ""))
        if not self.ledger.in_flight:
            self._settled.set()

    def stop(self) -> None:
        """Finish after the current frame (Ctrl-C): replies are still collected."""
        self.stopping = True

    async def run(self) -> None:
        """Stream until ``opts.frames`` are sent or the source ends, then wait for replies."""
        pacer = pacer_for(self.source, self.opts.fps)
        seqs = itertools.count()
        async with contextlib.aclosing(frames(self.source, pacer, self.compute.process)) as stream:
            async for frame in stream:
                self._count_stale(pacer)
                self.ledger.on_captured()
                if self.channel.readyState != "open":
                    log.error("data channel closed (%s); stopping", self.pc.connectionState)
                    self.ledger.drop_before_send("channel_closed")
                    break
                if self.channel.bufferedAmount > self.opts.max_buffered:
                    self.ledger.drop_before_send("backpressure")
                    continue
                latent, reference = frame.result
                self._send(next(seqs), frame, latent, reference, frame.computed * 1000)
                if self.stopping or (self.opts.frames and self.ledger.sent >= self.opts.frames):
                    break
        self._count_stale(pacer)  # deadlines missed just before the source ended
        await self._drain()

    def _count_stale(self, pacer: Pacer | None) -> None:
        """Bring the ledger's stale count up to the pacer's skipped deadlines."""
        if pacer is not None and pacer.dropped > self.ledger.dropped_sender["stale"]:
            self.ledger.on_skipped(pacer.dropped - self.ledger.dropped_sender["stale"])

    def _send(self, seq: int, frame, latent, reference, head_done_ms: float) -> None:
        capture_ms = frame.timestamp * 1000
        dtype, codec, params, payload = codecs.encode(latent, self.opts.codec)
        header = Header(seq & 0xFFFFFFFF, capture_ms, self.opts.split, tuple(latent.shape),
                        dtype, codec, self.opts.codec.compression, params=params)
        messages = encode(header, payload)
        self._settled.clear()
        for m in messages:
            self.channel.send(m)
        self.ledger.on_sent(seq, capture_ms, reference, frame.index, head_done_ms)
        if seq % 300 == 0:
            log.debug("seq %d sent, %d message(s)", seq, len(messages))

    async def _drain(self) -> None:
        if self.ledger.in_flight:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._settled.wait(), self.opts.drain_timeout)
        if self.ledger.in_flight:
            log.warning("%d frame(s) still unanswered after %.1fs", len(self.ledger.in_flight),
                        self.opts.drain_timeout)

    async def final_report(self) -> list[dict]:
        """The stats at the end of the run, before the connection closes."""
        return await self._report()

    async def _report(self) -> list[dict]:
        return await collect(self.pc, [self.counter] if self.counter else [])

    def app_stats(self) -> dict:
        p50, p99 = self.ledger.percentiles(recent=True)
        led = self.ledger
        out = {"split": self.opts.split, "codec": self.opts.codec.name, "frames": led.sent, "replies": led.replied,
               "dropped": led.dropped_sender.total() + led.dropped_receiver.total(),
               "malformed": led.errors.total(), "label": led.last_label,
               "latency_p50_ms": p50, "latency_p99_ms": p99,
               "fps": led.fps(),
               "source": self.source.name}
        if led.verified:
            out["fidelity"] = round(led.bit_exact / led.verified, 6)
        return out

    async def close(self) -> None:
        await self.publisher.stop()
        await self.pc.close()
        await self.signaling.close()
