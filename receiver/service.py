"""The receiver process: joins a room, answers senders' offers, runs their tails.

Each accepted offer gets its own RTCPeerConnection and ``SenderSession``; the tails and their
worker thread are shared (``TailEngine``). A sender that leaves, fails, falls silent or
misbehaves is cleaned up without disturbing the others.

What a sender can make us hold is bounded (``Limits``): sessions in total and per sender id,
offers that never become a data channel (torn down after ``offer_timeout_s``), senders that
stop talking (``peer_timeout_s``, checked on the same ticker that pings them), and the
summaries of ended sessions (the newest ``keep_closed`` one by one, the rest added up).

Signaling is only for meeting: open sessions live on their data channels and keep serving
while the signaling server is gone. ``SignalingClient`` reconnects and rejoins the room under
the same role and name (with a new id, which is how senders find the receiver again); the
signal handler and the stats publisher are bound to the client, not to one connection, so
nothing needs registering again.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from receiver.engine import TailEngine
from receiver.limits import EARLIER, MAX_BATCH, Limits
from receiver.lograte import RateLimitedLog
from receiver.session import SenderSession
from splitcore.process.cli import logger
from splitcore.rtc.ice import IceConfig, with_server_list
from splitcore.rtc.peer import add_browser_candidate, description, new_peer_connection, security_entry
from splitcore.rtc.signaling import Credentials, SignalingClient, SignalingError
from splitcore.rtc.stats import ChannelCounter, Report, StatsPublisher, collect
from splitcore.runtime.models import Manifest

log = logger("receiver.service")
KEEP_CLOSED_REPORTS = 16   # ended sessions whose final byte counters the dashboard still sees
CLOSE_TIMEOUT_S = 2.0      # closing one peer connection (a dead peer never acknowledges)


@dataclass
class _Peer:
    """One sender's session and its connection."""

    key: str
    sender: str
    pc: RTCPeerConnection
    session: SenderSession
    counter: ChannelCounter | None = None


class Receiver:
    def __init__(self, server: str, room: str, name: str = "receiver",
                 manifest: Manifest | None = None, threads: int = 1,
                 ice_servers: IceConfig | Sequence[str] | None = None, limits: Limits | None = None,
                 credentials: Credentials | None = None, max_batch: int = MAX_BATCH, pool: bool = False) -> None:
        self.engine = TailEngine(manifest or Manifest.load(), threads, max_batch)
        self.limits = limits or Limits()
        # pool: ``room`` is a receiver pool; the server assigns senders by the ``load`` in _app
        self.signaling = SignalingClient(server, room, "receiver", name, credentials=credentials, pool=pool)
        self.signaling.on_signal(self._on_signal)
        self.ice_servers = ice_servers
        self.peers: dict[str, _Peer] = {}
        self.publisher = StatsPublisher(self.signaling.sio, self._report, self._app,
                                        ready=lambda: self.signaling.joined)
        self._fps_mark = (time.monotonic(), 0)  # (when, replies then): fps between reports
        self._cpu_mark = (time.monotonic(), time.process_time())  # CPU share between reports
        self.closed_summaries: OrderedDict[str, dict[str, int]] = OrderedDict()
        # Final stats of ended sessions, reported (state "closed") like a browser keeps a
        # closed channel's stats, so the dashboard sees each sender's last bytes too.
        self.closed_reports: OrderedDict[str, Report] = OrderedDict()
        self._banned: OrderedDict[str, float] = OrderedDict()   # sender id -> refused until
        self._refused = RateLimitedLog(log, "offer refused", self.limits.log_interval_s)
        self._keys = itertools.count(2)
        self._closing: set[asyncio.Task[None]] = set()
        self.exit_code = 0  # what ``python -m receiver`` exits with
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        try:
            await self.signaling.connect()
        except BaseException:
            await self._close_signaling()
            raise
        self.publisher.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="receiver-ticker")

    async def serve(self) -> None:
        """Follow the room until cancelled (``start`` first), or until signaling is lost for
        good and the last open session has ended (then SignalingError).

        A sender's signaling leaving the room says nothing about its data channel, which may
        well still be streaming: sessions end on their own connection's state or silence.
        """
        while True:
            kind, peer = await self.signaling.peer_events.get()
            if kind == "left":
                n = sum(p.sender == peer.get("id") for p in self.peers.values())
                if n:
                    log.info("peer %s left the room; its %d session(s) continue while it answers pings",
                             peer.get("id"), n)
            elif kind == "rejoined":
                log.info("back in room %s as %s (was %s): %d open session(s) continued meanwhile; new "
                         "senders can find this receiver again", self.signaling.room, peer.get("id"),
                         peer.get("previous"), len(self.peers))
            elif kind == "lost":
                log.error("signaling lost for good (%s): serving the %d open session(s) until they end, "
                          "then exiting", peer.get("error"), len(self.peers))
                while self.peers:
                    await asyncio.sleep(self.limits.ping_interval_s)
                raise SignalingError(str(peer.get("error") or "signaling server lost"))

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self.serve()
        finally:
            await self.close()

    async def close(self) -> None:
        """Close every session (concurrently), then stop publishing and leave the room."""
        await self._close_sessions()
        await self.publisher.stop()
        await self._close_signaling()
        self.engine.close()

    async def _close_sessions(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for key in list(self.peers):
            self._end(key, "receiver shutting down")
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        self._refused.flush()

    async def _close_signaling(self) -> None:
        try:
            await asyncio.wait_for(self.signaling.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:  # the server may be gone already: nothing left to tell it
            log.debug("closing signaling: %s", exc)

    # ------------------------------------------------------------------------- offers

    async def _on_signal(self, msg: dict) -> None:
        sender, kind = msg.get("from", ""), msg.get("type")
        if kind == "offer":
            await self._answer(sender, msg)
        elif kind == "candidate":
            mine = [p for p in self.peers.values() if p.sender == sender]
            if mine:
                await add_browser_candidate(mine[-1].pc, msg.get("candidate"))
        else:
            self._refused.event("unexpected", f"ignoring {kind!r} from {sender} (no session)")

    def _admit(self, sender: str) -> str | None:
        """Make room for an offer from ``sender``, synchronously (no await between the checks
        and the registration, so concurrent offers cannot all pass); the session key, or None
        if refused."""
        now = time.monotonic()
        until = self._banned.get(sender)
        if until is not None:
            if now < until:
                self._refused.event("banned", f"{sender} was disconnected for abuse; its offers are "
                                    f"refused for {until - now:.0f} s more")
                return None
            del self._banned[sender]
        own = [p.key for p in self.peers.values() if p.sender == sender]
        while len(own) >= self.limits.max_per_sender:
            self._end(own.pop(0), "sent a new offer")  # a sender re-offers when its connection died
        if len(self.peers) >= self.limits.max_sessions:
            self._refused.event("full", f"{sender}: already serving {len(self.peers)} sessions "
                                f"(--max-sessions {self.limits.max_sessions})")
            return None
        return sender if sender not in self.peers else f"{sender}.{next(self._keys)}"

    async def _answer(self, sender: str, offer: dict) -> None:
        key = self._admit(sender)
        if key is None:
            return
        ice = with_server_list(self.ice_servers, self.signaling.ice_servers, self.signaling.ice_policy)
        if ice is not self.ice_servers and isinstance(ice, IceConfig):
            log.info("peer %s: %s", sender, ice.describe())
        pc = new_peer_connection(ice)
        session = SenderSession(key, sender, self.engine, self.limits, self._session_ended)
        peer = self.peers[key] = _Peer(key, sender, pc, session)
        self._load_changed()

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if session.attach(channel):
                peer.counter = ChannelCounter.attach(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: connection %s", key, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self._end(key, pc.connectionState)

        try:
            await pc.setRemoteDescription(description(offer))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._signal_out(sender, "answer", sdp=pc.localDescription.sdp)
        except Exception as exc:  # a garbage offer, or signaling gone: nothing to keep
            self._refused.event("bad_offer", f"{sender}: cannot answer its offer: {type(exc).__name__}: "
                                f"{str(exc)[:200]}")
            self._end(key, "offer not answered", quiet=True)
            return
        log.info("peer %s: answered offer", key)

    async def _signal_out(self, to: str, kind: str, **fields: Any) -> None:
        """Signal ``to`` through the room (a pool's worker sends it through its parent)."""
        await self.signaling.signal(to, kind, **fields)

    def _load_changed(self) -> None:
        """A session was added or forgotten (a pool's worker tells its parent)."""

    # ------------------------------------------------------------------------- ending

    def _session_ended(self, session: SenderSession, why: str) -> None:
        """A session asked to be closed (abuse): ban its sender for a while, then close."""
        if self.limits.ban_s > 0:
            self._banned[session.peer_id] = time.monotonic() + self.limits.ban_s
            self._banned.move_to_end(session.peer_id)
            while len(self._banned) > 4 * self.limits.max_sessions:
                self._banned.popitem(last=False)
        self._end(session.key, why)

    def _end(self, key: str, why: str, quiet: bool = False) -> None:
        """Forget session ``key`` now and close it in the background (``close`` waits)."""
        peer = self.peers.pop(key, None)
        if peer is None:
            return
        self._load_changed()
        task = asyncio.create_task(self._close_peer(peer, why, quiet), name=f"close-{key}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_peer(self, peer: _Peer, why: str, quiet: bool) -> None:
        session = peer.session
        session.ended = session.ended or why
        summary = session.summary()
        self._remember(peer.key, summary)
        if not quiet:
            log.info("peer %s: closing (%s): %s", peer.key, why, summary)
        try:
            if peer.counter is not None:
                entries = await asyncio.wait_for(collect(peer.pc, [peer.counter]), CLOSE_TIMEOUT_S)
                self.closed_reports[peer.key] = [{**e, "state": "closed"} if e["type"] == "data-channel" else e
                                                 for e in entries]
                while len(self.closed_reports) > KEEP_CLOSED_REPORTS:
                    self.closed_reports.popitem(last=False)
            await session.close()
            await asyncio.wait_for(peer.pc.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:
            log.warning("peer %s: closing took too long or failed: %s: %s", peer.key, type(exc).__name__, exc)

    def _remember(self, key: str, summary: dict[str, int]) -> None:
        """Keep the newest ``keep_closed`` summaries; older ones are added into one entry."""
        self.closed_summaries.pop(key, None)
        self.closed_summaries[key] = summary
        kept = len(self.closed_summaries) - (EARLIER in self.closed_summaries)
        for _ in range(kept - self.limits.keep_closed):
            old_key = next(k for k in self.closed_summaries if k != EARLIER)
            old = self.closed_summaries.pop(old_key)
            earlier = self.closed_summaries.setdefault(EARLIER, dict.fromkeys(old, 0))
            for k, v in old.items():
                earlier[k] = earlier.get(k, 0) + v
            self.closed_summaries.move_to_end(EARLIER, last=False)

    # ------------------------------------------------------------------------- the ticker

    async def _tick_forever(self) -> None:
        """Every ping interval: ping each sender, end the silent and the never-connected."""
        while True:
            await asyncio.sleep(self.limits.ping_interval_s)
            try:
                self.tick(time.monotonic())
            except Exception:  # the ticker is what frees resources: it must keep running
                log.exception("receiver tick failed")

    def tick(self, now: float) -> None:
        for key, peer in list(self.peers.items()):
            why = peer.session.tick(now)
            if why is not None:
                self._end(key, why)
        self._refused.tick()

    # ------------------------------------------------------------------------- reporting

    async def _report(self) -> Report:
        now = time.time() * 1000.0  # a closed channel's counters are final, its report is new
        report: Report = [{**e, "timestamp": now} for r in self.closed_reports.values() for e in r]
        for peer in list(self.peers.values()):
            report += await collect(peer.pc, [peer.counter] if peer.counter else [])
            entry = security_entry(peer.pc, f"security-{peer.key}")  # pair type, DTLS cipher
            if entry is not None:
                report.append(entry)
        return report

    def _app(self) -> dict[str, Any]:
        sessions = [p.session for p in self.peers.values()]
        fields = ("frames", "inferred", "replied", "dropped_stale", "dropped_incomplete", "malformed")
        total = {k: sum(getattr(s.counters, k) for s in sessions) for k in fields}
        last = next((s for s in reversed(sessions) if s.last_label), None)
        now, (then, before) = time.monotonic(), self._fps_mark
        self._fps_mark = (now, total["replied"])
        fps = round((total["replied"] - before) / (now - then), 2) if now > then and total["replied"] >= before else 0.0
        (cpu_then, cpu_before), cpu_now = self._cpu_mark, time.process_time()
        self._cpu_mark = (now, cpu_now)
        cpu = round((cpu_now - cpu_before) / (now - cpu_then), 3) if now > cpu_then else 0.0
        load = {"streams": len(sessions), "cpu": cpu, "queue": self.engine.queued,  # pool assignment
                "workers": 1}  # (signaling.pool)
        return {"senders": len(sessions), **total, "fps": fps, "load": load, "dropped": total["dropped_stale"] +
                total["dropped_incomplete"], "label": last.last_label if last else "",
                "split": last.last_split if last else ""}

    def summary(self) -> dict[str, dict[str, int]]:
        """Counters of every session: the ended ones kept (see ``_remember``), then the open."""
        out = dict(self.closed_summaries)
        out.update({key: p.session.summary() for key, p in self.peers.items()})
        return out

