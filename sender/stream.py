"""The sender's session: find a receiver, keep a live connection to it, recover when it dies.

The per-frame path (``sender.pipeline``) never waits for the network: it asks this session
for a channel for each frame and drops the frame (``no_receiver``) while there is none. The
session meanwhile:

- connects through the signaling server to the first receiver in the room (or the one named);
- watches the link (``sender.link``: pings, 2 s of silence means gone); when it dies, settles
  every frame in flight as ``lost``, records an outage, closes that RTCPeerConnection (aiortc
  cannot restart ICE) and offers to a receiver in the room on a fresh one, for up to
  ``reconnect_timeout`` seconds, then gives up (``gave_up`` says why);
- lets signaling come and go: an open data channel keeps streaming while the
  ``SignalingClient`` reconnects to a restarted server, and a receiver is looked up again by
  role and name (its Socket.IO id changes when it rejoins).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from splitcore.process.cli import logger
from splitcore.rtc.ice import IceConfig, with_server_list
from splitcore.rtc.peer import security_entry
from splitcore.rtc.signaling import SignalingClient, SignalingError
from splitcore.rtc.stats import Report, StatsPublisher
from splitcore.runtime.operating import OperatingPoints
from splitcore.wire.codecs import CodecSpec
from splitcore.wire.messages import COMPACT, Ping, Pong

from .head import HeadCompute
from .ledger import Ledger
from .link import Link
from .pipeline import Channel, Pipeline, PipelineOptions
from .source import FrameSource
from .switching import Adaptive

log = logger("sender.stream")
REFUSED_LOG_EVERY_S = 5.0


@dataclass
class StreamOptions:
    split: str
    codec: CodecSpec = field(default_factory=lambda: CodecSpec("float32"))
    frames: int = 0                 # 0: until the source ends or Ctrl-C
    fps: float = 30.0
    max_buffered: int = 256 * 1024  # bytes queued in the channel before frames are dropped
    drain_timeout: float = 5.0      # seconds to wait for outstanding replies at the end
    stop_drain_timeout: float = 1.0  # the same after Ctrl-C: the user is waiting
    receiver_name: str | None = None
    connect_timeout: float = 15.0   # one offer: answer and data channel open within this
    reconnect_timeout: float = 60.0  # waiting for a receiver (at start and after losing one)
    compact_replies: bool = False   # ask for replies without probs and logits (messages.COMPACT)
    points: OperatingPoints | None = None  # the study's figures: the current point's leakage in the stats


class NoReceiver(SignalingError):
    """No receiver could be connected within the time allowed."""


class SenderStream:
    def __init__(self, signaling: SignalingClient, compute: HeadCompute, source: FrameSource,
                 ledger: Ledger, opts: StreamOptions, ice_servers: IceConfig | Sequence[str] | None = None) -> None:
        self.signaling, self.compute, self.source = signaling, compute, source
        self.ledger, self.opts, self.ice_servers = ledger, opts, ice_servers
        self.last_security: dict[str, str] | None = None  # the link's last security entry, for the summary
        self.pipeline = Pipeline(source, compute, ledger, PipelineOptions(opts.split, opts.codec, opts.frames, opts.fps))
        self.link: Link | None = None
        self.links: list[Link] = []      # every link of the run, for the byte counts
        self.receivers: list[str] = []   # every receiver id streamed to
        self.stopping = False
        self.interrupted = False
        self.gave_up: str | None = None
        self._pending: Link | None = None  # being offered, not yet open
        self._lost = asyncio.Event()
        self._settled = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self._refused_mark = (time.monotonic(), 0)
        self.adaptive: Adaptive | None = None  # --split adaptive: set before run()
        self.publisher = StatsPublisher(signaling.sio, self._report, self.app_stats,
                                        ready=lambda: signaling.joined)

    @property
    def receiver_id(self) -> str:
        return self.receivers[-1] if self.receivers else ""

    # --- connecting ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Join, find a receiver, offer, and wait until the data channel is open."""
        self.signaling.on_signal(self._on_signal)
        await self.signaling.connect()
        await self._connect(time.monotonic() + self.opts.reconnect_timeout, exclude=set())
        self.publisher.start()

    async def _connect(self, deadline: float, exclude: set[str]) -> None:
        """Offer to receivers in the room until one's data channel opens; NoReceiver at
        ``deadline``. ``exclude``: ids that just failed (a dead receiver stays listed in
        the room until the server notices)."""
        while True:
            peer = await self._wait_for_receiver(deadline, exclude)
            ice = with_server_list(self.ice_servers, self.signaling.ice_servers, self.signaling.ice_policy)
            link = Link(peer, ice, self._on_text, self._on_link_lost,
                        COMPACT if self.opts.compact_replies else "")
            self._pending = link
            try:
                await link.offer(self.signaling)
                log.info("offered to receiver %s (%s), split %s", link.receiver_id, link.receiver_name, self.opts.split)
                wait = max(0.1, min(self.opts.connect_timeout, deadline - time.monotonic()))
                await asyncio.wait_for(link.opened.wait(), wait)
            except TimeoutError:  # that receiver did not connect: try another one
                log.warning("receiver %s: no open data channel within %.0fs (connection %s)", link.receiver_id,
                            self.opts.connect_timeout, link.pc.connectionState)
                exclude.add(link.receiver_id)
                await link.close()
                continue
            except Exception as exc:  # signaling refused or reconnecting: the receiver may be fine
                log.warning("offer to receiver %s failed: %s", link.receiver_id, exc)
                await link.close()
                await asyncio.sleep(0.5)
                continue
            finally:
                self._pending = None
            self.link = link
            self.links.append(link)
            self.receivers.append(link.receiver_id)
            log.info("streaming to receiver %s (%s)", link.receiver_id, link.receiver_name)
            return

    async def _wait_for_receiver(self, deadline: float, exclude: set[str]) -> dict:
        """The receiver to offer to: the one named, else the first, not in ``exclude``.
        Reads the room as the SignalingClient knows it, so a rejoin after a server restart
        (new ids, new peer list) is seen the same way as a receiver joining."""
        name = self.opts.receiver_name
        while True:
            if self.stopping:
                raise NoReceiver("stopped while waiting for a receiver")
            state = getattr(self.signaling, "state", "joined")
            if state in ("lost", "closed"):  # the server is gone for good: nobody can join us
                raise NoReceiver(str(getattr(self.signaling, "error", None) or f"signaling {state}"))
            if state == "joined":  # while reconnecting, the peer list is stale
                for p in list(self.signaling.peers.values()):
                    if p.get("role") == "receiver" and p.get("id") not in exclude and (not name or p.get("name") == name):
                        return p
                if getattr(self.signaling, "pool", False):  # a pool: ask the server for another receiver
                    with contextlib.suppress(SignalingError):
                        if await self.signaling.request_assignment(exclude):
                            continue
            left = deadline - time.monotonic()
            if left <= 0:
                named = f" named {name}" if name else ""
                raise NoReceiver(f"no receiver{named} joined room {self.signaling.room} within "
                                 f"{self.opts.reconnect_timeout:.0f}s")
            with contextlib.suppress(TimeoutError):  # a join wakes us; polling covers the rest
                await asyncio.wait_for(self.signaling.peer_events.get(), min(left, 0.2))

    async def _on_signal(self, msg: dict) -> None:
        sender = msg.get("from")
        for link in (self._pending, self.link):
            if link is not None and sender == link.receiver_id:
                await link.on_signal(msg)
                return
        log.warning("ignoring %s from %s: not our receiver", msg.get("type"), sender)

    # --- the link's events -----------------------------------------------------------------

    def _on_text(self, link: Link, text: str) -> None:
        if link is not self.link:
            return
        now_ms = time.monotonic() * 1000
        msg = self.ledger.on_text(text, now_ms)
        if isinstance(msg, Ping):
            link.answer_ping(msg)
        elif isinstance(msg, Pong):
            if 0 <= now_ms - msg.t_ms < 60_000:
                self.ledger.on_rtt(now_ms - msg.t_ms)
        if not self.ledger.in_flight:
            self._settled.set()
        self._log_refused(link)

    def _log_refused(self, link: Link) -> None:
        """One line per interval about malformed texts, never one per message."""
        then, before = self._refused_mark
        now = time.monotonic()
        if now - then >= REFUSED_LOG_EVERY_S and self.ledger.refused > before:
            log.warning("receiver %s sent %d malformed message(s) in the last %.0fs (%d frames settled as bad_reply "
                        "so far)", link.receiver_id, self.ledger.refused - before, now - then,
                        self.ledger.errors["bad_reply"])
            self._refused_mark = (now, self.ledger.refused)

    def _on_link_lost(self, link: Link, cause: str) -> None:
        if link is not self.link:
            return
        self.link = None
        lost = self.ledger.connection_lost()
        self.ledger.outage_started(cause, link.receiver_id, lost)
        self._settled.set()
        self._close_later(link)
        self._lost.set()

    def _close_later(self, link: Link) -> None:
        task = asyncio.create_task(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _keep_connected(self) -> None:
        """After each loss, connect to a receiver again, or give up and stop the run."""
        while True:
            await self._lost.wait()
            self._lost.clear()
            outage = self.ledger.open_outage()
            exclude = {outage.receiver} if outage else set()
            try:
                await self._connect(time.monotonic() + self.opts.reconnect_timeout, exclude)
            except NoReceiver as exc:
                if not self.stopping:
                    self.gave_up = f"receiver lost ({outage.cause if outage else 'unknown'}) and {exc}"
                    self.stopping = True
                return
            self.ledger.outage_ended(self.receiver_id)

    # --- streaming ---------------------------------------------------------------------------

    def channel_for_frame(self) -> Channel | str:
        """Where this frame goes, or why it is dropped before sending."""
        link = self.link
        if link is None:
            return "no_receiver"
        if not link.ready:
            return "channel_closed"
        if link.channel.bufferedAmount > self.opts.max_buffered:
            return "backpressure"
        self._settled.clear()
        return link.channel

    def stop(self) -> None:
        """Finish after the current frame (Ctrl-C): replies are still collected."""
        self.stopping = True
        self.interrupted = True

    async def run(self) -> None:
        """Stream until ``opts.frames`` are sent, the source ends, Ctrl-C or giving up; then
        wait for the replies still outstanding."""
        self._keeper = asyncio.create_task(self._keep_connected(), name="keep-connected")
        adapting = asyncio.create_task(self.adaptive.run(self), name="adaptive") if self.adaptive else None
        try:
            await self.pipeline.run(self)
            await self._drain()
        finally:
            if adapting is not None:
                adapting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await adapting
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper

    async def _drain(self) -> None:
        timeout = self.opts.stop_drain_timeout if self.interrupted else self.opts.drain_timeout
        if self.ledger.in_flight and self.link is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), timeout)
        if self.ledger.in_flight:
            log.warning("%d frame(s) still unanswered after %.1fs", len(self.ledger.in_flight), timeout)

    # --- reporting ---------------------------------------------------------------------------

    async def final_report(self) -> list[dict]:
        """The stats at the end of the run, before the connection closes."""
        return await self._report()

    async def _report(self) -> Report:
        if self.link is None:
            return []
        report = await self.link.report()
        entry = security_entry(self.link.pc)  # candidate pair type and DTLS cipher, for the dashboard
        if entry is None:
            return report
        self.last_security = {k: v for k, v in entry.items() if k not in ("type", "id", "timestamp")}
        return [*report, entry]

    async def totals(self) -> dict[str, int]:
        """Bytes and messages over every link of the run: all of them (``payload_bytes``,
        ``messages``: what the receivers' data-channel stats count), those of frames alone
        (``frame_bytes``, ``frame_messages``), and the control texts (pings, pongs)."""
        out = {"payload_bytes": 0, "messages": 0, "wire_bytes": 0, "wire_packets": 0, "pings_sent": 0, "pongs_sent": 0,
               "frame_messages": self.pipeline.frame_messages, "frame_bytes": self.pipeline.frame_bytes}
        for link in self.links:
            out["pings_sent"] += link.pings_sent
            out["pongs_sent"] += link.pongs_sent
            for entry in await link.report():
                if entry["type"] == "data-channel":
                    out["payload_bytes"] += entry["bytesSent"]
                    out["messages"] += entry["messagesSent"]
                elif entry["type"] == "transport":
                    out["wire_bytes"] += entry["bytesSent"]
                    out["wire_packets"] += entry["packetsSent"]
        return out

    def app_stats(self) -> dict:
        p50, p99 = self.ledger.percentiles(recent=True)
        led = self.ledger
        out = {"split": self.opts.split, "codec": self.opts.codec.name, "frames": led.sent, "replies": led.replied,
               "dropped": led.dropped_sender.total() + led.dropped_receiver.total(),
               "malformed": led.errors.total(), "lost": led.lost, "label": led.last_label,
               "latency_p50_ms": p50, "latency_p99_ms": p99, "fps": led.fps(),
               "source": self.source.name, "receiver": self.link.receiver_id if self.link else None}
        if led.verified:
            out["fidelity"] = round(led.bit_exact / led.verified, 6)
        out["head"] = "int8" if self.compute.int8 else "float32"
        if self.adaptive is not None:
            out.update(self.adaptive.app_stats())
        split, codec, head = str(out["split"]), str(out["codec"]), str(out["head"])
        out["operating_point"] = f"{split}/{codec}/{head}"
        point = self.opts.points.find(split, codec, head) if self.opts.points else None
        out["leakage"] = point.leakage.as_dict() if point is not None and point.leakage is not None else None
        return out

    async def close(self) -> None:
        """Stop publishing, close every connection, leave the room."""
        await self.publisher.stop()
        for link in [*self.links, *([self._pending] if self._pending else [])]:
            with contextlib.suppress(Exception):
                await link.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.signaling.close()
