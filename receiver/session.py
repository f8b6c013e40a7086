"""One sender's session on the receiver: its data channel, reassembly, its latest frame, and
whether the sender is still there.

Real time means the newest frame wins: each session holds at most one frame waiting for
the tail. A frame that is still waiting when a newer one completes is answered with a
``drop`` (reason ``stale``) instead of being queued, so latency never builds up, and the
sender can still account for it. Two preallocated tensors per split (one being inferred,
one waiting) mean no per-frame allocation.

Nothing a sender declares decides what we allocate: a frame header passes the split table's
gate (``SplitTable.limit``) before any payload byte is stored. A sender whose malformed
messages outrun its ``MalformedBudget``, or that leaves our replies unread, is ended (the
receiver closes its connection); one that sends nothing at all for ``peer_timeout_s`` is
taken for gone (``tick``).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from aiortc import RTCDataChannel

from receiver.engine import TailEngine, TailResult
from receiver.limits import Limits, MalformedBudget
from receiver.lograte import RateLimitedLog
from splitcore.process.cli import logger
from splitcore.wire import messages
from splitcore.wire.codecs import decode_tensor
from splitcore.wire.frame import FrameError, Header, Reassembler, decode
from splitcore.wire.messages import Drop, Error, Ping, Pong, Reply, Timing

log = logger("receiver.session")


@dataclass
class Counters:
    """Every message and frame of a session ends up in exactly one of these outcomes
    (``pings``: ping and pong messages, which are about the peer, not about frames)."""

    messages: int = 0
    frames: int = 0          # complete frames (all fragments) that decoded
    inferred: int = 0
    replied: int = 0
    dropped_stale: int = 0
    dropped_incomplete: int = 0
    malformed: int = 0
    pings: int = 0


@dataclass
class _Pending:
    header: Header
    slot: int
    received: float
    decode_ms: float


EndSession = Callable[["SenderSession", str], None]


class SenderSession:
    def __init__(self, key: str, peer_id: str, engine: TailEngine, limits: Limits | None = None,
                 on_end: EndSession | None = None) -> None:
        """``key`` names the session in summaries (the sender id, unless the sender holds
        several); ``on_end(session, why)`` asks the owner to close it."""
        self.key, self.peer_id, self.engine = key, peer_id, engine
        self.limits = limits or Limits()
        self._on_end = on_end
        self.channel: RTCDataChannel | None = None
        self.counters = Counters()
        self.last_label = ""
        self.last_split = ""
        self.created = time.monotonic()
        self.last_heard: float | None = None   # monotonic time of the last message; None: no channel yet
        self.rtt_ms: float | None = None       # round trip of our last answered ping
        self.ended: str | None = None          # why the session asked to be closed
        # the split and shape are checked, and the payload bounded, before anything is allocated
        self._reasm = Reassembler(limit=engine.splits.limit)
        self._bufs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._budget = MalformedBudget(self.limits.malformed_rate, self.limits.malformed_burst)
        self._bad = RateLimitedLog(log, f"peer {peer_id}: malformed message", self.limits.log_interval_s)
        self._busy: int | None = None
        self._pending: _Pending | None = None
        self._wake = asyncio.Event()
        self.compact = False                   # the sender asked for compact replies (no probs, no logits)
        self._worker = asyncio.create_task(self._run(), name=f"session-{key}")

    def attach(self, channel: RTCDataChannel) -> bool:
        """Take ``channel`` as the session's latent channel; False (and the channel closed)
        when it already has one: a sender gets one channel per connection."""
        if self.channel is not None:
            channel.close()
            return False
        self.channel = channel
        # Asked once per connection, in the channel's protocol: nothing is decided per frame.
        self.compact = getattr(channel, "protocol", "") == messages.COMPACT
        self.last_heard = time.monotonic()
        channel.on("message", self.on_message)
        log.info("peer %s: channel %r open%s", self.peer_id, channel.label, " (compact replies)" if self.compact else "")
        return True

    # ------------------------------------------------------------------------- receiving

    def on_message(self, msg: bytes | str) -> None:
        self.last_heard = time.monotonic()
        if self.ended is not None:
            return  # being closed: nothing more is answered
        if isinstance(msg, str):
            self._on_text(msg)
            return
        self.counters.messages += 1
        try:
            done, abandoned = self._reasm.push(*decode(msg))
        except FrameError as err:
            self._abandon(err.abandoned)
            self._refuse(err)
            return
        self._abandon(abandoned)
        if done is not None:
            self._accept(*done)

    def _on_text(self, text: str) -> None:
        """Ping and pong are the only text a sender sends; anything else is refused."""
        m: messages.Message | None = None
        try:
            m = messages.parse(text)
            why = f"a {m.type} message where a binary latent frame was expected"
        except messages.MessageError as exc:
            why = exc.detail
        if isinstance(m, Ping):
            self.counters.pings += 1
            self._send(Pong(m.t_ms))
        elif isinstance(m, Pong):
            self.counters.pings += 1
            self.rtt_ms = time.monotonic() * 1000 - m.t_ms
        else:
            self.counters.messages += 1
            self._refuse(FrameError("bad_type", f"text message: {why}"))

    def _abandon(self, h: Header | None) -> None:
        if h is not None:
            self.counters.dropped_incomplete += 1
            self._send(Drop(h.seq, h.capture_ms, "incomplete"))

    def _accept(self, h: Header, payload: memoryview) -> None:
        try:
            tail = self.engine.splits[h.split]  # the reassembler's limit admitted the split
            bufs = self._bufs.get(h.split)
            if bufs is None:
                bufs = self._bufs[h.split] = tail.buffers()
            slot = self._pending.slot if self._pending else (1 if self._busy == 0 else 0)
            received = time.monotonic()
            decode_tensor(h, payload, out=bufs[slot], channels=tail.channels)
        except FrameError as err:
            self._refuse(err)
            return
        self.counters.frames += 1
        if self._pending is not None:
            old = self._pending.header
            self.counters.dropped_stale += 1
            self._send(Drop(old.seq, old.capture_ms, "stale"))
        self._pending = _Pending(h, slot, received, (time.monotonic() - received) * 1000)
        self._wake.set()

    # ------------------------------------------------------------------------- the tail

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            job, self._pending = self._pending, None
            if job is None:
                continue
            self._busy = job.slot
            try:
                result = await self.engine.submit(job.header.split, self._bufs[job.header.split][job.slot],
                                                  probs=not self.compact)
            except Exception:
                log.exception("peer %s: tail failed on seq %d", self.peer_id, job.header.seq)
                self._send(Error(job.header.seq, "tail_failed", "the tail raised; see the receiver's log"))
                continue
            finally:
                self._busy = None
            self.counters.inferred += 1
            self._reply(job, result)

    def _reply(self, job: _Pending, r: TailResult) -> None:
        h = job.header
        name = self.engine.manifest.classes[r.label]
        self.last_label, self.last_split = name, h.split
        now = time.monotonic()
        timing = Timing(round(job.decode_ms, 3), round((r.started - job.received) * 1000, 3),
                        round(r.tail_ms, 3), round((now - job.received) * 1000, 3))
        reply = (Reply(h.seq, h.capture_ms, h.split, r.label, name, (), timing) if self.compact
                 else Reply(h.seq, h.capture_ms, h.split, r.label, name, r.probs, timing, r.logits))
        if self._send(reply):
            self.counters.replied += 1

    # ------------------------------------------------------------------------- sending

    def _refuse(self, err: FrameError) -> None:
        self.counters.malformed += 1
        self._bad.event(err.code, f"seq {err.seq}: {err}")
        self._send(Error(err.seq, err.code, err.detail[:messages.MAX_DETAIL]))
        if not self._budget.spend():
            self.end(f"malformed messages faster than {self.limits.malformed_rate:g}/s after a burst of "
                     f"{self.limits.malformed_burst} ({self.counters.malformed} in "
                     f"{time.monotonic() - self.created:.1f} s)")

    def _send(self, msg: messages.Message) -> bool:
        """Send one text message if the channel is open; True when it went out."""
        ch = self.channel
        if ch is None or ch.readyState != "open":
            return False
        if ch.bufferedAmount > self.limits.max_buffered:
            self.end(f"{ch.bufferedAmount} bytes of replies left unread (limit {self.limits.max_buffered})")
            return False
        try:
            text = messages.dumps(msg)
        except ValueError:  # a non-finite logit: a model bug, reported instead of an unreadable reply
            log.error("peer %s: non-finite value in %s for seq %s", self.peer_id, msg.type, getattr(msg, "seq", None))
            text = messages.dumps(Error(getattr(msg, "seq", None), "tail_failed", "non-finite output"))
        ch.send(text)
        return True

    # ------------------------------------------------------------------------- liveness

    def tick(self, now: float) -> str | None:
        """Once a ping interval: ping the sender; the reason to end the session, if any."""
        self._bad.tick()
        if self.ended is not None:
            return self.ended
        if self.last_heard is None:
            if now - self.created > self.limits.offer_timeout_s:
                return f"no data channel within {self.limits.offer_timeout_s:g} s of the offer"
            return None
        if now - self.last_heard > self.limits.peer_timeout_s:
            return f"nothing received for {now - self.last_heard:.1f} s"
        self._send(Ping(round(now * 1000, 3)))
        return None

    def end(self, why: str) -> None:
        """Stop answering and ask the owner to close the connection (logged once, there)."""
        if self.ended is None:
            self.ended = why
            if self._on_end is not None:
                self._on_end(self, why)

    # ------------------------------------------------------------------------- the end

    def summary(self) -> dict[str, int]:
        return asdict(self.counters)

    async def close(self) -> None:
        self._bad.flush()
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
