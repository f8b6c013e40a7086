"""The receiver process: joins a room, answers every sender's offer, runs their tails.

Each offer gets its own RTCPeerConnection and ``SenderSession``; the tails and their
worker thread are shared (``TailEngine``). A sender that leaves or whose connection fails
is cleaned up without disturbing the others.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict

from aiortc import RTCDataChannel, RTCPeerConnection

from receiver.engine import TailEngine
from receiver.session import SenderSession
from splitcore.rtc.peer import add_browser_candidate, description, new_peer_connection
from splitcore.rtc.signaling import SignalingClient
from splitcore.rtc.stats import ChannelCounter, Report, StatsPublisher, collect
from splitcore.runtime.models import Manifest

log = logging.getLogger("splitrtc.receiver")
KEEP_CLOSED = 16


class Receiver:
    def __init__(self, server: str, room: str, name: str = "receiver",
                 manifest: Manifest | None = None, threads: int = 1,
                 ice_servers: list[str] | None = None) -> None:
        self.engine = TailEngine(manifest or Manifest.load(), threads)
        self.signaling = SignalingClient(server, room, "receiver", name)
        self.signaling.on_signal(self._on_signal)
        self.ice_servers = ice_servers
        self.peers: dict[str, tuple[RTCPeerConnection, SenderSession]] = {}
        self.counters: dict[str, ChannelCounter] = {}
        self.publisher = StatsPublisher(self.signaling.sio, self._report, self._app)
        self._fps_mark = (time.monotonic(), 0)  # (when, replies then): fps between reports
        self.closed_summaries: dict[str, dict] = {}
        # Final stats of ended sessions, reported (state "closed") like a browser keeps a
        # closed channel's stats, so the dashboard sees each sender's last bytes too.
        self.closed_reports: OrderedDict[str, Report] = OrderedDict()

    async def start(self) -> None:
        await self.signaling.connect()
        self.publisher.start()

    async def run_forever(self) -> None:
        await self.start()
        try:
            while True:
                kind, peer = await self.signaling.peer_events.get()
                if kind == "left" and peer.get("id") in self.peers:
                    await self._drop_peer(peer["id"], "left the room")
        finally:
            await self.close()

    async def _on_signal(self, msg: dict) -> None:
        sender, kind = msg.get("from", ""), msg.get("type")
        if kind == "offer":
            await self._answer(sender, msg)
        elif kind == "candidate" and sender in self.peers:
            await add_browser_candidate(self.peers[sender][0], msg.get("candidate"))
        else:
            log.warning("ignoring %s from %s (no session)", kind, sender)

    async def _answer(self, sender: str, offer: dict) -> None:
        if sender in self.peers:  # a new offer from the same peer replaces its session
            await self._drop_peer(sender, "sent a new offer")
        pc = new_peer_connection(self.ice_servers)
        session = SenderSession(sender, self.engine)
        self.peers[sender] = (pc, session)

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            self.counters[sender] = ChannelCounter.attach(channel)
            session.attach(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: connection %s", sender, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._drop_peer(sender, pc.connectionState)

        await pc.setRemoteDescription(description(offer))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.signaling.signal(sender, "answer", sdp=pc.localDescription.sdp)
        log.info("peer %s: answered offer", sender)

    async def _drop_peer(self, sender: str, why: str) -> None:
        entry = self.peers.pop(sender, None)
        if entry is None:
            return
        pc, session = entry
        counter = self.counters.pop(sender, None)
        self.closed_summaries[sender] = session.summary()
        self.closed_reports[sender] = [{**e, "state": "closed"} if e["type"] == "data-channel" else e
                                       for e in await collect(pc, [counter] if counter else [])]
        while len(self.closed_reports) > KEEP_CLOSED:
            self.closed_reports.popitem(last=False)
        log.info("peer %s: closing (%s): %s", sender, why, session.summary())
        await session.close()
        await pc.close()

    async def _report(self) -> Report:
        now = time.time() * 1000.0  # a closed channel's counters are final, its report is new
        report: Report = [{**e, "timestamp": now} for r in self.closed_reports.values() for e in r]
        for sender, (pc, _) in list(self.peers.items()):
            counter = self.counters.get(sender)
            report += await collect(pc, [counter] if counter else [])
        return report

    def _app(self) -> dict:
        sessions = [s for _, s in self.peers.values()]
        total = {k: sum(s.summary()[k] for s in sessions) for k in
                 ("frames", "inferred", "replied", "dropped_stale", "dropped_incomplete", "malformed")}
        last = next((s for s in reversed(sessions) if s.last_label), None)
        now, (then, before) = time.monotonic(), self._fps_mark
        self._fps_mark = (now, total["replied"])
        fps = round((total["replied"] - before) / (now - then), 2) if now > then and total["replied"] >= before else 0.0
        return {"senders": len(sessions), **total, "fps": fps, "dropped": total["dropped_stale"] +
                total["dropped_incomplete"], "label": last.last_label if last else "",
                "split": last.last_split if last else ""}

    def summary(self) -> dict[str, dict]:
        out = dict(self.closed_summaries)
        out.update({sid: s.summary() for sid, (_, s) in self.peers.items()})
        return out

    async def close(self) -> None:
        for sender in list(self.peers):
            await self._drop_peer(sender, "receiver shutting down")
        await self.publisher.stop()
        await self.signaling.close()
        self.engine.close()
