"""Socket.IO event handlers: the protocol of docs/signaling.md on top of `Registry`.

Every client event goes through `_guarded`, which turns `Refused` into an `error` event plus a
negative ack for that client only, and any other exception into a logged traceback with the
same answer: one bad client or one bug must never take down the server or disturb others.
Refusals are logged through a `SummaryLog` (a few lines, then counts), since a client can
repeat them at will. Packets refused before decoding (`packets.BoundedPacket`) arrive as the
`REFUSED_EVENT` event and get the same answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from .access import Access, TokenRefused
from .counters import Counters
from .directory import Directory, LocalDirectory
from .errors import Refused
from .iceplan import IcePlan
from .logsummary import SummaryLog
from .packets import REFUSED_EVENT
from .pool import Load, is_pool, pool_key, pool_name
from .remote import remote_address
from .rooms import Departure, Peer, Registry, RoomFull
from .validate import MAX_EVENT_CHARS, parse_assign, parse_join, parse_signal, parse_stats, payload_object

log = logging.getLogger("splitrtc.signaling.events")

Ack = dict[str, Any]
Handler = Callable[..., Awaitable[Ack]]


class SignalingEvents:
    """Binds the protocol's client events to one AsyncServer and one Registry."""

    def __init__(self, sio: socketio.AsyncServer, registry: Registry | Directory,
                 counters: Counters | None = None, access: Access | None = None,
                 ice: IcePlan | None = None) -> None:
        self._sio = sio
        self._dir: Directory = LocalDirectory(registry) if isinstance(registry, Registry) else registry
        self._dir.on_gone(self._after_departure)
        self.counters = counters if counters is not None else Counters()
        self.access = access or Access(None)
        self.ice = ice
        self._refusals = SummaryLog(log, "refusals")
        self._tasks: set[asyncio.Task[None]] = set()  # keeps late-stats tasks alive

    def register(self) -> None:
        self._sio.on("connect", self.on_connect)
        self._sio.on("disconnect", self.on_disconnect)
        for event, handler in (("join", self.join), ("leave", self.leave),
                               ("signal", self.signal), ("stats", self.stats), ("assign", self.assign)):
            self._sio.on(event, self._guarded(event, handler))
        self._sio.on(REFUSED_EVENT, self.on_refused_packet)
        self._sio.on("*", self.on_unknown)

    # -- client events -------------------------------------------------------------------

    async def join(self, sid: str, *args: Any) -> Ack:
        req = parse_join(payload_object(args))
        room = pool_key(req.room) if req.pool else req.room
        try:
            # Checked before anything changes: a refused join learns nothing of the room
            # and keeps whatever membership it had.
            grant = self.access.join(req.room, req.role, req.name, req.token)
        except TokenRefused:
            self.counters.joins_refused_token += 1
            raise
        try:
            peer, old = await self._dir.join(sid, room, req.role, grant.name, grant.expires)
        except RoomFull:
            self.counters.joins_refused_full += 1
            raise
        self.counters.joins += 1
        if old is not None:
            await self._after_departure(old)
        log.info("peer %s joined room %s as %s (name %r)", sid, peer.room, peer.role, peer.name)
        await self._emit_many("peer-joined", peer.public(), await self._dir.audience(peer))
        if is_pool(peer.room):
            await self._assign_on_join(peer)
        if peer.role == "dashboard":
            self._spawn(self._send_last_stats(peer))
        ack: Ack = {"ok": True, "id": sid, "room": pool_name(peer.room), "role": peer.role, "name": peer.name,
                    "peers": [p.public() for p in await self._dir.visible(peer)]}
        if req.pool:
            ack["pool"] = True
        if self.ice is not None and peer.role != "dashboard":
            ack.update(self.ice.for_peer(peer.name, sid))
        return ack

    async def leave(self, sid: str, *args: Any) -> Ack:
        payload_object(args, optional=True)
        old = await self._dir.depart(sid)
        if old is not None:
            log.info("peer %s left room %s", sid, old.peer.room)
            await self._after_departure(old)
        return {"ok": True}

    async def assign(self, sid: str, *args: Any) -> Ack:
        """A pool sender asks for a receiver (again): the least loaded one, not in
        ``exclude`` (those it could not connect to)."""
        source = self._joined(sid)
        if source.role != "sender" or not is_pool(source.room):
            raise Refused("assign is for senders that joined a pool")
        exclude = parse_assign(payload_object(args, optional=True))
        receiver, before = await self._dir.assign(source, exclude)
        await self._moved(source, before, receiver)
        return {"ok": True, "receiver": receiver.public() if receiver else None}

    async def signal(self, sid: str, *args: Any) -> Ack:
        payload = payload_object(args)
        source = self._joined(sid)
        self._check_grant(source)
        req = parse_signal(payload)
        target = await self._dir.relay_target(source, req.to)
        message: dict[str, Any] = {"from": sid, "type": req.type}
        if req.type == "candidate":
            message["candidate"] = req.candidate
        else:
            message["sdp"] = req.sdp
        await self._emit("signal", message, target.id)
        log.debug("relayed %s %s -> %s in room %s", req.type, sid, target.id, source.room)
        return {"ok": True}

    async def stats(self, sid: str, *args: Any) -> Ack:
        payload = payload_object(args)
        source = self._joined(sid)
        if source.role == "dashboard":
            raise Refused("dashboards only watch: they send no stats")
        req = parse_stats(payload)
        message = {"from": sid, "role": source.role, "name": source.name,
                   "time": time.time() * 1000.0, "report": req.report, "app": req.app}
        load = None
        if is_pool(source.room) and source.role == "receiver":
            load = Load.from_app(req.app) or Load()
            senders = await self._dir.visible(source)
            message["pool"] = {"load": load.as_dict(), "senders": [p.public() for p in senders]}
        await self._dir.set_stats(source, message, load)
        await self._emit_many("stats", message, await self._dir.dashboards(source.room))
        return {"ok": True}

    async def on_unknown(self, event: str, sid: str, *args: Any) -> Ack:
        return await self._refuse(sid, event, f"unknown event {event[:MAX_EVENT_CHARS]!r}; "
                                  "known: join, leave, signal, stats, assign")

    async def on_refused_packet(self, sid: str, *args: Any) -> Ack:
        """A packet `BoundedPacket` refused undecoded (too big, too deep, malformed)."""
        info = args[0] if len(args) == 1 and isinstance(args[0], dict) else {}
        return await self._refuse(sid, str(info.get("event", "?")),
                                  str(info.get("error", "malformed packet")))

    # -- connection life cycle -----------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        log.info("client %s connected from %s", sid, remote_address(environ))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        """Disconnect is leave: the room must learn the peer is gone."""
        try:
            old = await self._dir.depart(sid)
            log.info("client %s disconnected (%s)%s", sid, reason,
                     f", left room {old.peer.room}" if old else "")
            if old is not None:
                await self._after_departure(old)
        except Exception:  # noqa: BLE001 - a bug here must not kill the server
            log.exception("error while handling disconnect of %s", sid)

    # -- helpers -------------------------------------------------------------------------

    def _guarded(self, event: str, handler: Handler) -> Handler:
        async def guarded(sid: str, *args: Any) -> Ack:
            try:
                return await handler(sid, *args)
            except Refused as err:
                return await self._refuse(sid, event, str(err))
            except Exception:  # noqa: BLE001 - see module docstring
                log.exception("bug while handling %r from peer %s in room %s",
                              event, sid, self._room_of(sid))
                return await self._refuse(sid, event, "internal server error")
        return guarded

    async def _refuse(self, sid: str, event: str, error: str) -> Ack:
        self.counters.refused += 1
        self._refusals.warning(event, "refused %r from peer %s in room %s: %s",
                               event, sid, self._room_of(sid), error)
        await self._emit("error", {"event": event, "error": error}, sid)
        return {"ok": False, "error": error}

    def _joined(self, sid: str) -> Peer:
        peer = self._dir.local(sid)
        if peer is None:
            raise Refused("join a room first")
        return peer

    def _check_grant(self, peer: Peer) -> None:
        """A peer whose token has expired sets up nothing new (its open channels go on):
        it joins again with a fresh token."""
        if not self.access.still_valid(peer.expires):
            raise TokenRefused("expired", "the token this peer joined with has expired; "
                                          "join again with a fresh one")

    def _room_of(self, sid: str) -> str:
        peer = self._dir.local(sid)
        return peer.room if peer else "-"

    async def _after_departure(self, old: Departure) -> None:
        """Tell who cares (``old`` is already out of the directory), and give the senders a
        pool receiver was serving another receiver."""
        await self._emit_many("peer-left", old.peer.public(), old.audience)
        for sender in old.orphans:
            receiver, _ = await self._dir.assign(sender, {old.peer.id})
            log.info("pool %s: receiver %s left; sender %s reassigned to %s", pool_name(old.peer.room),
                     old.peer.id, sender.id, receiver.id if receiver else "none (waiting for one)")
            await self._moved(sender, None, receiver)

    async def _assign_on_join(self, peer: Peer) -> None:
        """A pool sender gets a receiver at once; a pool receiver takes the waiting senders
        (each to the least loaded receiver, which is mostly, but not always, the new one)."""
        if peer.role == "sender":
            receiver, _ = await self._dir.assign(peer, set())
            await self._moved(peer, None, receiver, tell_sender=False)  # its join ack lists it
        elif peer.role == "receiver":
            for sender in await self._dir.waiting(peer.room):
                receiver, _ = await self._dir.assign(sender, set())
                await self._moved(sender, None, receiver)

    async def _moved(self, sender: Peer, before: Peer | None, after: Peer | None,
                     tell_sender: bool = True) -> None:
        """Announce a pool assignment change to the two receivers and the sender."""
        if before is not None and (after is None or before.id != after.id):
            await self._emit("peer-left", sender.public(), before.id)
            if tell_sender:
                await self._emit("peer-left", before.public(), sender.id)
        if after is not None and (before is None or before.id != after.id):
            await self._emit("peer-joined", sender.public(), after.id)
            if tell_sender:
                await self._emit("peer-joined", after.public(), sender.id)

    async def _send_last_stats(self, dashboard: Peer) -> None:
        """Catch a late dashboard up with every peer's last stats.

        Runs as a task so that, in practice, the join ack is queued first; the dashboard may
        still not rely on that order.
        """
        if self._dir.local(dashboard.id) is not dashboard:
            return  # it left or re-joined before we got here
        for message in await self._dir.last_stats(await self._dir.visible(dashboard)):
            await self._emit("stats", message, dashboard.id)

    async def _emit(self, event: str, data: dict[str, Any], to: str) -> None:
        """Send to one client; a client that vanished meanwhile is not an error for others."""
        try:
            await self._sio.emit(event, data, to=to)
            self.counters.events_sent += 1
        except Exception:  # noqa: BLE001
            log.exception("could not send %r to %s", event, to)

    async def _emit_many(self, event: str, data: dict[str, Any], peers: list[Peer]) -> None:
        """One event to several clients, encoded once, sent to all together."""
        if not peers:
            return
        try:
            await self._sio.emit(event, data, to=[p.id for p in peers])
            self.counters.events_sent += len(peers)
        except Exception:  # noqa: BLE001
            log.exception("could not send %r to %d clients", event, len(peers))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
