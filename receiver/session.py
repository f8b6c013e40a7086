"""One sender's session on the receiver: its data channel, reassembly, and its latest frame.

Real time means the newest frame wins: each session holds at most one frame waiting for
the tail. A frame that is still waiting when a newer one completes is answered with a
``drop`` (reason ``stale``) instead of being queued, so latency never builds up, and the
sender can still account for it. Two preallocated tensors per split (one being inferred,
one waiting) mean no per-frame allocation.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
from aiortc import RTCDataChannel

from receiver.engine import TailEngine
from splitcore.wire.codecs import decode_tensor
from splitcore.wire.frame import FrameError, Header, Reassembler, decode

log = logging.getLogger("splitrtc.receiver")


@dataclass
class Counters:
    """Every message and frame of a session ends up in exactly one of these outcomes."""

    messages: int = 0
    frames: int = 0          # complete frames (all fragments) that decoded
    inferred: int = 0
    replied: int = 0
    dropped_stale: int = 0
    dropped_incomplete: int = 0
    malformed: int = 0


@dataclass
class _Pending:
    header: Header
    slot: int
    received: float
    decode_ms: float


class SenderSession:
    def __init__(self, peer_id: str, engine: TailEngine) -> None:
        self.peer_id, self.engine = peer_id, engine
        self.channel: RTCDataChannel | None = None
        self.counters = Counters()
        self.last_label = ""
        self.last_split = ""
        self._reasm = Reassembler()
        self._bufs = {sid: [np.zeros(s.shape, np.float32) for _ in range(2)]
                      for sid, s in engine.manifest.splits.items()}
        self._busy: int | None = None
        self._pending: _Pending | None = None
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name=f"session-{peer_id}")

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self.on_message)
        log.info("peer %s: channel %r open", self.peer_id, channel.label)

    def on_message(self, msg: bytes | str) -> None:
        self.counters.messages += 1
        if isinstance(msg, str):
            self._refuse(FrameError("bad_type", "text message where a binary latent frame was expected"))
            return
        try:
            done, abandoned = self._reasm.push(*decode(msg))
        except FrameError as err:
            self._abandon(err.abandoned)
            self._refuse(err)
            return
        self._abandon(abandoned)
        if done is not None:
            self._accept(*done)

    def _abandon(self, h: Header | None) -> None:
        if h is not None:
            self.counters.dropped_incomplete += 1
            self._send({"type": "drop", "seq": h.seq, "capture_ms": h.capture_ms, "reason": "incomplete"})

    def _accept(self, h: Header, payload: memoryview) -> None:
        expected = self.engine.expected_shape(h.split)
        try:
            if expected is None:
                raise FrameError("unknown_split", f"split {h.split!r} is not in this receiver's "
                                 f"manifest ({', '.join(self._bufs)})", h.seq)
            if h.shape != expected:
                raise FrameError("shape_mismatch", f"split {h.split} takes {list(expected)}, "
                                 f"frame has {list(h.shape)}", h.seq)
            slot = self._pending.slot if self._pending else (1 if self._busy == 0 else 0)
            received = time.monotonic()
            decode_tensor(h, payload, out=self._bufs[h.split][slot], channels=self.engine.channels(h.split))
        except FrameError as err:
            self._refuse(err)
            return
        self.counters.frames += 1
        if self._pending is not None:
            old = self._pending.header
            self.counters.dropped_stale += 1
            self._send({"type": "drop", "seq": old.seq, "capture_ms": old.capture_ms, "reason": "stale"})
        self._pending = _Pending(h, slot, received, (time.monotonic() - received) * 1000)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            job, self._pending = self._pending, None
            if job is None:
                continue
            self._busy = job.slot
            try:
                result = await self.engine.infer(job.header.split, self._bufs[job.header.split][job.slot])
            except Exception:
                log.exception("peer %s: tail failed on seq %d", self.peer_id, job.header.seq)
                self._send({"type": "error", "seq": job.header.seq, "reason": "tail_failed"})
                continue
            finally:
                self._busy = None
            self.counters.inferred += 1
            self._reply(job, result)

    def _reply(self, job: _Pending, r) -> None:
        h = job.header
        name = self.engine.manifest.classes[r.label]
        self.last_label, self.last_split = name, h.split
        now = time.monotonic()
        self._send({"type": "reply", "seq": h.seq, "capture_ms": h.capture_ms, "split": h.split,
                    "label": r.label, "name": name, "logits": r.logits, "probs": r.probs,
                    "timing": {"decode_ms": round(job.decode_ms, 3),
                               "queue_ms": round((r.started - job.received) * 1000, 3),
                               "tail_ms": round(r.tail_ms, 3),
                               "total_ms": round((now - job.received) * 1000, 3)}})
        self.counters.replied += 1

    def _refuse(self, err: FrameError) -> None:
        self.counters.malformed += 1
        log.warning("peer %s: malformed message (seq %s): %s", self.peer_id, err.seq, err)
        self._send({"type": "error", "seq": err.seq, "reason": err.code, "detail": err.detail})

    def _send(self, msg: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            # allow_nan=False: browsers' JSON.parse rejects NaN; a non-finite logit is a bug
            # in the model, and is reported as an error instead of an unreadable reply.
            try:
                text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
            except ValueError:
                log.error("peer %s: non-finite value in reply to seq %s", self.peer_id, msg.get("seq"))
                text = json.dumps({"type": "error", "seq": msg.get("seq"), "reason": "tail_failed",
                                   "detail": "non-finite output"})
            self.channel.send(text)

    def summary(self) -> dict:
        return asdict(self.counters)

    async def close(self) -> None:
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
