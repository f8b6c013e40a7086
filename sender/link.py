"""One connection to one receiver: an RTCPeerConnection, its data channel, and liveness.

aiortc has no ICE restart, no ``disconnected`` state and no consent checks: it notices a dead
peer only when SCTP gives up, after 30 s or more. So the link pings the receiver every
``PING_S`` on the data channel (docs/wire-format.md, ``ping``/``pong``) and takes it for gone
when NOTHING at all (reply, drop, error, ping, pong) has arrived for ``SILENCE_S``. A lost
link is never revived: recovery is a new ``Link`` (a fresh RTCPeerConnection and offer),
which ``sender.stream`` makes.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from aiortc import RTCDataChannel, RTCPeerConnection

from splitcore.process.cli import logger
from splitcore.rtc.ice import IceConfig
from splitcore.rtc.peer import add_browser_candidate, description, new_peer_connection
from splitcore.rtc.signaling import SignalingClient
from splitcore.rtc.stats import ChannelCounter, Report, collect
from splitcore.wire.messages import Ping, Pong, dumps

log = logger("sender.link")
PING_S = 0.5
SILENCE_S = 2.0


class Link:
    """The sender's connection to receiver ``receiver_id``.

    ``on_text(link, text)`` gets every text the receiver sends; ``on_lost(link, cause)`` is
    called once, when the link dies (``receiver_silent``, ``channel_closed``,
    ``connection_failed``); the owner then ``close()``s it.
    """

    def __init__(self, receiver: dict, ice_servers: IceConfig | Sequence[str] | None,
                 on_text: Callable[[Link, str], None], on_lost: Callable[[Link, str], None],
                 protocol: str = "") -> None:
        """``protocol``: the data channel's; ``messages.COMPACT`` asks for compact replies."""
        self.receiver_id: str = receiver["id"]
        self.receiver_name: str = str(receiver.get("name", ""))
        self.pc: RTCPeerConnection = new_peer_connection(ice_servers)
        self.channel: RTCDataChannel = self.pc.createDataChannel("latent", ordered=True, protocol=protocol)
        self.counter = ChannelCounter.attach(self.channel)
        self.opened = asyncio.Event()
        self.lost: str | None = None
        self.last_rx = time.monotonic()
        self.pings_sent = self.pongs_sent = 0
        self._on_text, self._on_lost = on_text, on_lost
        self._pinger: asyncio.Task[None] | None = None
        self._final: Report | None = None
        self.channel.on("open", self._opened)
        self.channel.on("message", self._message)
        self.channel.on("close", lambda: self._die("channel_closed"))
        self.pc.on("connectionstatechange", self._state)

    async def offer(self, signaling: SignalingClient) -> None:
        """Send our offer; aiortc puts every candidate in the SDP, so this is all we send."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await signaling.signal(self.receiver_id, "offer", sdp=self.pc.localDescription.sdp)

    async def on_signal(self, msg: dict) -> None:
        """The receiver's answer, or a candidate it trickles (a browser does)."""
        if msg.get("type") == "answer":
            if self.pc.signalingState == "have-local-offer":
                await self.pc.setRemoteDescription(description(msg))
        elif msg.get("type") == "candidate":
            await add_browser_candidate(self.pc, msg.get("candidate"))

    def _opened(self) -> None:
        self.last_rx = time.monotonic()  # silence is counted from the moment we can hear
        self.opened.set()
        self._pinger = asyncio.create_task(self._keep_alive(), name=f"ping-{self.receiver_id}")

    def _message(self, raw: bytes | str) -> None:
        self.last_rx = time.monotonic()
        if self.lost is None:
            self._on_text(self, raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))

    def _state(self) -> None:
        if self.pc.connectionState == "failed":
            self._die("connection_failed")

    def _die(self, cause: str) -> None:
        if self.lost is None and self.opened.is_set():
            self.lost = cause
            log.warning("receiver %s (%s) lost: %s", self.receiver_id, self.receiver_name, cause)
            self._on_lost(self, cause)

    async def _keep_alive(self) -> None:
        """Ping every PING_S; declare the receiver gone after SILENCE_S without a word."""
        while self.lost is None:
            silent = time.monotonic() - self.last_rx
            if silent > SILENCE_S:
                self._die("receiver_silent")
                return
            if self.channel.readyState != "open":
                self._die("channel_closed")
                return
            self.send_text(dumps(Ping(round(time.monotonic() * 1000, 3))))
            self.pings_sent += 1
            await asyncio.sleep(min(PING_S, max(0.05, SILENCE_S - silent + 0.01)))

    def send_text(self, text: str) -> None:
        with contextlib.suppress(Exception):  # closing under us: the watchdog will say so
            self.channel.send(text)

    def answer_ping(self, ping: Ping) -> None:
        self.send_text(dumps(Pong(ping.t_ms)))
        self.pongs_sent += 1

    @property
    def ready(self) -> bool:
        return self.lost is None and self.channel.readyState == "open"

    async def report(self) -> Report:
        """getStats-style entries; after ``close()``, the final ones."""
        if self._final is not None:
            return self._final
        return await collect(self.pc, [self.counter])

    async def close(self) -> Report:
        """Stop pinging, keep the final stats, close the connection (idempotent)."""
        if self.lost is None:
            self.lost = "closed"
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self._final is None:
            self._final = await collect(self.pc, [self.counter])
            await self.pc.close()
        return self._final
