"""The Python peers' side of signaling (docs/signaling.md): one Socket.IO connection, one
room, one role. The browser's twin is ``static/js/rtc/signaling.js``.

Both the sender and the receiver join a room through ``SignalingClient`` and exchange SDP
with it; ``splitcore.rtc.peer`` turns what arrives into aiortc objects.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

log = logging.getLogger("splitrtc.signaling")
SignalHandler = Callable[[dict], Awaitable[None]]


class SignalingError(RuntimeError):
    """The signaling server refused us or could not be reached."""


class SignalingClient:
    """One Socket.IO connection, one room, one role."""

    def __init__(self, url: str, room: str, role: str, name: str = "") -> None:
        self.url, self.room, self.role, self.name = url, room, role, name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.id = ""
        self.peers: dict[str, dict] = {}
        self.peer_events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(maxsize=256)
        self._on_signal: SignalHandler | None = None
        self.sio.on("signal", self._signal)
        self.sio.on("peer-joined", self._joined)
        self.sio.on("peer-left", self._left)
        self.sio.on("error", self._error)

    def on_signal(self, handler: SignalHandler) -> None:
        self._on_signal = handler

    async def connect(self, timeout: float = 10.0) -> None:
        try:
            await self.sio.connect(self.url, transports=["websocket"], wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as exc:
            raise SignalingError(f"cannot reach the signaling server at {self.url}: {exc}") from None
        ack = await self.sio.call("join", {"room": self.room, "role": self.role, "name": self.name},
                                  timeout=timeout)
        if not ack or not ack.get("ok"):
            raise SignalingError(f"join refused by {self.url}: {ack}")
        self.id = ack["id"]
        self.peers = {p["id"]: p for p in ack.get("peers", [])}
        log.info("joined room %s as %s %s (%d peers)", self.room, self.role, self.id, len(self.peers))

    async def signal(self, to: str, kind: str, **fields: Any) -> None:
        ack = await self.sio.call("signal", {"to": to, "type": kind, **fields}, timeout=10)
        if not ack or not ack.get("ok"):
            raise SignalingError(f"{kind} to {to} refused: {ack}")

    async def wait_for_peer(self, role: str, name: str | None = None, timeout: float = 30.0) -> dict:
        """The first peer of ``role`` in the room (already there, or joining within ``timeout``)."""
        def match(p: dict) -> bool:
            return p["role"] == role and (not name or p.get("name") == name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [p for p in self.peers.values() if match(p)]
            if found:
                return found[0]
            left = deadline - loop.time()
            if left <= 0:
                raise SignalingError(f"no {role}{f' named {name}' if name else ''} joined room "
                                     f"{self.room} within {timeout:.0f}s")
            try:
                await asyncio.wait_for(self.peer_events.get(), left)
            except TimeoutError:
                continue

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    async def _signal(self, msg: dict) -> None:
        if self._on_signal is None:
            log.warning("signal %s from %s with no handler", msg.get("type"), msg.get("from"))
            return
        try:
            await self._on_signal(msg)
        except Exception:  # one bad offer must not end the peer's other sessions
            log.exception("handling %s from %s failed", msg.get("type"), msg.get("from"))

    async def _joined(self, peer: dict) -> None:
        self.peers[peer["id"]] = peer
        self._event("joined", peer)

    async def _left(self, peer: dict) -> None:
        self.peers.pop(peer.get("id"), None)
        self._event("left", peer)

    def _event(self, kind: str, peer: dict) -> None:
        log.info("peer %s %s (%s %s)", peer.get("id"), kind, peer.get("role"), peer.get("name", ""))
        if self.peer_events.full():  # nobody is waiting: keep the newest
            self.peer_events.get_nowait()
        self.peer_events.put_nowait((kind, peer))

    async def _error(self, msg: dict) -> None:
        log.error("signaling server refused %s: %s", msg.get("event"), msg.get("error"))
