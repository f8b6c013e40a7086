"""Rooms, pools and last stats in Redis, shared by every node of ``server.py --redis URL``.

Several signaling nodes act as one server: python-socketio's ``AsyncRedisManager`` carries
each ``emit`` to the node that holds the addressee's connection (clients use the websocket
transport only, so no sticky sessions are needed), and this directory keeps who is in which
room, the pool assignments and every peer's last stats in Redis, so a sender on node A and
a receiver on node B of one room see each other and can signal each other.

Keys (prefix ``splitrtc:``): ``peers`` (hash sid -> JSON {room, role, name, expires, node}),
``room:R`` (hash sid -> role), ``rooms`` (set), ``assign:R`` (hash pool sender -> receiver),
``load:R`` (hash pool receiver -> JSON load), ``stats:SID`` (last stats, expiring),
``node:N`` (heartbeat, expiring), ``nodes`` (set), ``nodepeers:N`` (set of its sids).

A node that dies without saying so stops its heartbeat: within ``NODE_TTL_S`` another node
removes its peers and announces them gone (``on_gone``), as a disconnect would have.

Redis down: at start, ``start()`` raises ``RedisUnavailable`` (server.py prints it and exits
1). At run time the first failure is logged once, and the node goes on with its own peers
only: ``local``, the ``Registry`` of its own connections that it keeps anyway, answers
every question (rooms and pools of this node; other nodes' peers are out of sight). When
Redis answers again (the heartbeat tries every ``HEARTBEAT_S``), the node puts its peers
and assignments back, announces those that left meanwhile, and logs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import socketio
from redis import asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from .directory import GoneHandler, LocalDirectory
from .errors import RedisUnavailable
from .pool import Candidate, Load, is_pool, least_loaded
from .rooms import AUDIENCE, ROLES, VISIBLE, Departure, Peer, Registry, RoomFull, check_assigned, check_relay

log = logging.getLogger("splitrtc.signaling.redis")

PREFIX = "splitrtc:"
HEARTBEAT_S = 2.0
NODE_TTL_S = 10
STATS_TTL_S = 30
ASSIGN_RETRIES = 20  # optimistic transactions lost to another node's assignment
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def safe_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_client(url: str) -> Any:
    """A client with bounded waits: a Redis that hangs must not hang the event handlers.
    Typed Any: with ``decode_responses=True`` every answer is ``str``, which redis-py's
    annotations (``bytes | str``) cannot say."""
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"--redis must be a redis://, rediss:// or unix:// URL, got {safe_url(url)!r}")
    client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                                     decode_responses=True)
    return client


class _QuietWhileDown(logging.Filter):
    """python-socketio logs every failed publish and every reconnect attempt of its Redis
    listener; while we know Redis is down (and said so once) those lines are noise."""

    def __init__(self, directory: RedisDirectory) -> None:
        super().__init__()
        self.directory = directory

    def filter(self, record: logging.LogRecord) -> bool:
        return self.directory.up


class RedisManager(socketio.AsyncRedisManager):
    """``AsyncRedisManager`` that does not publish while Redis is known to be down (the
    local delivery of each emit happens before publishing, so local peers are still served)."""

    def __init__(self, url: str, directory: RedisDirectory) -> None:
        logger = logging.getLogger("splitrtc.signaling.pubsub")
        logger.addFilter(_QuietWhileDown(directory))
        super().__init__(url, channel=PREFIX + "socketio", logger=logger,
                         redis_options={"socket_connect_timeout": 2.0})
        self.directory = directory

    def set_server(self, server: Any) -> None:
        """The message queue carries our own nodes' JSON (bytes), not clients' packets: it is
        decoded with plain ``json``, not the server's bounded packet decoder (which takes
        ``str`` and would silently drop every message)."""
        super().set_server(server)
        self.json = json

    async def _publish(self, data: Any) -> Any:
        if not self.directory.up:
            return None
        return await super()._publish(data)


class RedisDirectory:
    """The ``directory.Directory`` of a multi-node server; see the module docstring."""

    def __init__(self, url: str, max_room_peers: int = 0) -> None:
        self.url = url
        self.redis: Any = redis_client(url)
        self.max_room_peers = max_room_peers
        self.local_dir = LocalDirectory(Registry(max_room_peers))
        self.registry = self.local_dir.registry  # this node's own peers
        self.node = uuid.uuid4().hex[:16]
        self.up = True
        self._gone: GoneHandler | None = None
        self._task: asyncio.Task[None] | None = None

    # -- keys and values -------------------------------------------------------------------

    @staticmethod
    def _room_key(room: str) -> str:
        return f"{PREFIX}room:{room}"

    def _peer_json(self, peer: Peer) -> str:
        return json.dumps({"room": peer.room, "role": peer.role, "name": peer.name,
                           "expires": peer.expires, "node": self.node})

    @staticmethod
    def _parse_peer(sid: str, raw: str | None) -> tuple[Peer, str] | None:
        if raw is None:
            return None
        try:
            v = json.loads(raw)
            return Peer(id=sid, room=v["room"], role=v["role"], name=v["name"], expires=int(v["expires"])), v["node"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed peer record %s in Redis", sid)
            return None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Check Redis answers (RedisUnavailable if not), register this node, start the
        heartbeat that also sweeps dead nodes."""
        try:
            await asyncio.wait_for(self.redis.ping(), 5.0)
            await self._heartbeat()
        except REDIS_ERRORS as exc:
            await self.redis.aclose()
            raise RedisUnavailable(f"cannot use Redis at {safe_url(self.url)}: {exc or type(exc).__name__}") from None
        log.info("node %s sharing rooms through Redis at %s", self.node, safe_url(self.url))
        self._task = asyncio.create_task(self._beat_forever(), name="redis-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat and take this node's peers out of Redis (they are disconnected)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.up:
            with contextlib.suppress(*REDIS_ERRORS):
                for peer in list(self.registry.members_all()):
                    await self._r_depart(peer, self.node)
                await self.redis.srem(PREFIX + "nodes", self.node)
                await self.redis.delete(f"{PREFIX}node:{self.node}", f"{PREFIX}nodepeers:{self.node}")
        await self.redis.aclose()

    def on_gone(self, handler: GoneHandler) -> None:
        self._gone = handler

    def _down(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            log.error("Redis at %s unreachable (%s): serving this node's own peers only until it is back",
                      safe_url(self.url), exc or type(exc).__name__)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._heartbeat()
            except REDIS_ERRORS as exc:
                self._down(exc)
            except Exception:  # the heartbeat is what keeps other nodes' view right
                log.exception("Redis heartbeat failed")

    async def _heartbeat(self) -> None:
        r = self.redis
        await r.set(f"{PREFIX}node:{self.node}", "1", ex=NODE_TTL_S)
        await r.sadd(PREFIX + "nodes", self.node)
        if not self.up:
            await self._resync()
            self.up = True
            log.warning("Redis at %s answers again: this node's %d peer(s) are shared again",
                        safe_url(self.url), len(list(self.registry.members_all())))
        for node in await r.smembers(PREFIX + "nodes"):
            if node != self.node and not await r.exists(f"{PREFIX}node:{node}"):
                await self._sweep(node)

    async def _sweep(self, node: str) -> None:
        """Remove a dead node's peers (each claimed by whoever removes it from the node's set
        first, so it is announced once) and announce them gone."""
        key = f"{PREFIX}nodepeers:{node}"
        swept = 0
        for sid in await self.redis.smembers(key):
            if not await self.redis.srem(key, sid):
                continue  # another node took it
            found = self._parse_peer(sid, await self.redis.hget(PREFIX + "peers", sid))
            if found is None:
                continue
            dep = await self._r_depart(found[0], node)
            swept += 1
            if self._gone is not None:
                await self._gone(dep)
        if not await self.redis.scard(key):
            await self.redis.srem(PREFIX + "nodes", node)
        if swept:
            log.warning("node %s stopped its heartbeat: %d of its peer(s) removed and announced gone", node, swept)

    async def _resync(self) -> None:
        """After an outage: this node's Redis records are made those of its connections again."""
        r = self.redis
        mine = {p.id: p for p in self.registry.members_all()}
        for sid in await r.smembers(f"{PREFIX}nodepeers:{self.node}"):
            if sid not in mine:  # left during the outage: others were never told
                found = self._parse_peer(sid, await r.hget(PREFIX + "peers", sid))
                if found is not None:
                    dep = await self._r_depart(found[0], self.node)
                    if self._gone is not None:
                        await self._gone(dep)
        for peer in mine.values():
            await self._r_add(peer)
            receiver = self.registry.receiver_of(peer) if peer.role == "sender" else None
            if receiver is not None:
                await r.hsetnx(f"{PREFIX}assign:{peer.room}", peer.id, receiver.id)

    # -- the Directory -------------------------------------------------------------------

    def local(self, peer_id: str) -> Peer | None:
        return self.registry.get(peer_id)

    async def get(self, peer_id: str) -> Peer | None:
        peer = self.registry.get(peer_id)
        if peer is not None or not self.up:
            return peer
        try:
            return await self._peer(peer_id)
        except REDIS_ERRORS as exc:
            self._down(exc)
            return None

    async def join(self, peer_id: str, room: str, role: str, name: str,
                   expires: int = 0) -> tuple[Peer, Departure | None]:
        self.registry.check_room(peer_id, room)  # this node's share of the room
        if self.up and self.max_room_peers:
            try:
                current = self.registry.get(peer_id)
                if (current is None or current.room != room) and \
                        await self.redis.hlen(self._room_key(room)) >= self.max_room_peers:
                    raise RoomFull(f"room {room!r} is full ({self.max_room_peers} peers): try another room, "
                                   "or ask the operator to raise --max-room-peers")
            except REDIS_ERRORS as exc:
                self._down(exc)
        old = await self.depart(peer_id)
        peer, _ = self.registry.join(peer_id, room, role, name, expires)
        if self.up:
            try:
                await self._r_add(peer)
            except REDIS_ERRORS as exc:
                self._down(exc)
        return peer, old

    async def depart(self, peer_id: str) -> Departure | None:
        peer = self.registry.get(peer_id)
        if peer is None:
            return None
        if self.up:
            try:
                dep = await self._r_depart(peer, self.node)
                self.registry.leave(peer_id)
                return dep
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.depart(peer_id)

    async def visible(self, peer: Peer) -> list[Peer]:
        if self.up:
            try:
                if is_pool(peer.room) and peer.role != "dashboard":
                    return await self._partners(peer)
                return await self._members(peer.room, VISIBLE[peer.role], skip=peer.id)
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.visible(peer)

    async def audience(self, peer: Peer) -> list[Peer]:
        if self.up:
            try:
                return await self._r_audience(peer)
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.audience(peer)

    async def dashboards(self, room: str) -> list[Peer]:
        if self.up:
            try:
                return await self._members(room, ("dashboard",))
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.dashboards(room)

    async def relay_target(self, source: Peer, to_id: str) -> Peer:
        if self.up:
            try:
                target = self.registry.get(to_id) or await self._peer(to_id)
                target = check_relay(source, target, to_id)
                if is_pool(source.room):
                    sender, receiver = (source, target) if source.role == "sender" else (target, source)
                    check_assigned(sender, receiver, await self.redis.hget(f"{PREFIX}assign:{source.room}", sender.id))
                return target
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.relay_target(source, to_id)

    async def assign(self, sender: Peer, exclude: set[str]) -> tuple[Peer | None, Peer | None]:
        if self.up:
            try:
                before_id, chosen_id = await self._r_assign(sender, exclude)
                before = await self._peer(before_id) if before_id else None
                chosen = await self._peer(chosen_id) if chosen_id else None
                self.registry.record_assignment(sender.id, chosen_id)
                return chosen, before
            except REDIS_ERRORS as exc:
                self._down(exc)
        return await self.local_dir.assign(sender, exclude)

    async def waiting(self, room: str) -> list[Peer]:
        if self.up:
            try:
                assigned = await self.redis.hgetall(f"{PREFIX}assign:{room}")
                return [p for p in await self._members(room, ("sender",)) if p.id not in assigned]
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.waiting(room)

    async def set_stats(self, peer: Peer, message: dict[str, Any], load: Load | None) -> None:
        await self.local_dir.set_stats(peer, message, load)
        if not self.up:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(f"{PREFIX}stats:{peer.id}", json.dumps(message), ex=STATS_TTL_S)
                if load is not None:
                    pipe.hset(f"{PREFIX}load:{peer.room}", peer.id, json.dumps(load.as_dict()))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._down(exc)

    async def last_stats(self, peers: list[Peer]) -> list[dict[str, Any]]:
        if self.up and peers:
            try:
                raw = await self.redis.mget([f"{PREFIX}stats:{p.id}" for p in peers])
                return [json.loads(v) for v in raw if v is not None]
            except REDIS_ERRORS as exc:
                self._down(exc)
        return await self.local_dir.last_stats(peers)

    async def pool_view(self, room: str) -> list[dict[str, Any]]:
        if self.up:
            try:
                receivers = await self._members(room, ("receiver",))
                assigned = await self.redis.hgetall(f"{PREFIX}assign:{room}")
                loads = await self.redis.hgetall(f"{PREFIX}load:{room}")
                senders = {p.id: p for p in await self._members(room, ("sender",))}
                return [{**r.public(), "load": _load(loads.get(r.id)).as_dict(),
                         "senders": [senders[s].public() for s, rid in assigned.items() if rid == r.id and s in senders]}
                        for r in receivers]
            except REDIS_ERRORS as exc:
                self._down(exc)
        return await self.local_dir.pool_view(room)

    async def totals(self) -> dict[str, int]:
        if self.up:
            try:
                return {"rooms": int(await self.redis.scard(PREFIX + "rooms")),
                        "peers": int(await self.redis.hlen(PREFIX + "peers"))}
            except REDIS_ERRORS as exc:
                self._down(exc)
        return self.registry.totals()

    async def counts(self) -> dict[str, Any]:
        if self.up:
            try:
                by_room: dict[str, dict[str, int]] = {}
                for room in sorted(await self.redis.smembers(PREFIX + "rooms")):
                    roles = list((await self.redis.hgetall(self._room_key(room))).values())
                    if roles:
                        by_room[room] = {role: roles.count(role) for role in ROLES}
                return {"rooms": len(by_room), "peers": int(await self.redis.hlen(PREFIX + "peers")),
                        "by_room": by_room, "node": self.node, "shared": True}
            except REDIS_ERRORS as exc:
                self._down(exc)
        return {**self.registry.counts(), "node": self.node, "shared": False}

    # -- Redis operations ----------------------------------------------------------------

    async def _peer(self, sid: str) -> Peer | None:
        found = self._parse_peer(sid, await self.redis.hget(PREFIX + "peers", sid))
        return found[0] if found else None

    async def _peers(self, sids: Iterable[str]) -> list[Peer]:
        ids = list(sids)
        if not ids:
            return []
        raw = await self.redis.hmget(PREFIX + "peers", ids)
        return [found[0] for sid, v in zip(ids, raw, strict=True) if (found := self._parse_peer(sid, v))]

    async def _members(self, room: str, roles: tuple[str, ...], skip: str = "") -> list[Peer]:
        members = await self.redis.hgetall(self._room_key(room))
        return await self._peers(sid for sid, role in members.items() if role in roles and sid != skip)

    async def _partners(self, peer: Peer) -> list[Peer]:
        key = f"{PREFIX}assign:{peer.room}"
        if peer.role == "sender":
            rid = await self.redis.hget(key, peer.id)
            receiver = await self._peer(rid) if rid else None
            return [receiver] if receiver else []
        assigned = await self.redis.hgetall(key)
        return await self._peers(s for s, r in assigned.items() if r == peer.id)

    async def _r_audience(self, peer: Peer) -> list[Peer]:
        if is_pool(peer.room):
            partners = await self._partners(peer) if peer.role != "dashboard" else []
            return await self._members(peer.room, ("dashboard",)) + partners
        return await self._members(peer.room, AUDIENCE[peer.role], skip=peer.id)

    async def _r_add(self, peer: Peer) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(PREFIX + "peers", peer.id, self._peer_json(peer))
            pipe.hset(self._room_key(peer.room), peer.id, peer.role)
            pipe.sadd(PREFIX + "rooms", peer.room)
            pipe.sadd(f"{PREFIX}nodepeers:{self.node}", peer.id)
            await pipe.execute()

    async def _r_depart(self, peer: Peer, node: str) -> Departure:
        audience = await self._r_audience(peer)
        orphans: list[Peer] = []
        assign_key = f"{PREFIX}assign:{peer.room}"
        if is_pool(peer.room) and peer.role == "receiver":
            assigned = await self.redis.hgetall(assign_key)
            orphan_ids = [s for s, r in assigned.items() if r == peer.id]
            orphans = await self._peers(orphan_ids)
            if orphan_ids:
                await self.redis.hdel(assign_key, *orphan_ids)
        room_key = self._room_key(peer.room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(assign_key, peer.id)
            pipe.hdel(f"{PREFIX}load:{peer.room}", peer.id)
            pipe.hdel(PREFIX + "peers", peer.id)
            pipe.hdel(room_key, peer.id)
            pipe.srem(f"{PREFIX}nodepeers:{node}", peer.id)
            pipe.delete(f"{PREFIX}stats:{peer.id}")
            pipe.hlen(room_key)
            left = (await pipe.execute())[-1]
        if not left:
            await self.redis.srem(PREFIX + "rooms", peer.room)
        return Departure(peer, audience, orphans)

    async def _r_assign(self, sender: Peer, exclude: set[str]) -> tuple[str | None, str | None]:
        """(receiver before, receiver now) in one optimistic transaction: two nodes assigning
        at once cannot both count the same receiver as the least loaded."""
        assign_key, room_key = f"{PREFIX}assign:{sender.room}", self._room_key(sender.room)
        for _ in range(ASSIGN_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(assign_key, room_key)
                    assigned = await pipe.hgetall(assign_key)
                    members = await pipe.hgetall(room_key)
                    loads = await pipe.hgetall(f"{PREFIX}load:{sender.room}")
                    before = assigned.pop(sender.id, None)
                    counts: dict[str, int] = {}
                    for rid in assigned.values():
                        counts[rid] = counts.get(rid, 0) + 1
                    chosen = least_loaded((Candidate(sid, counts.get(sid, 0), _load(loads.get(sid)))
                                           for sid, role in members.items() if role == "receiver"), exclude)
                    pipe.multi()
                    if chosen is not None:
                        pipe.hset(assign_key, sender.id, chosen)
                    else:
                        pipe.hdel(assign_key, sender.id)
                    await pipe.execute()
                    return before, chosen
                except WatchError:
                    continue
        raise RedisError(f"could not assign sender {sender.id}: {ASSIGN_RETRIES} transactions lost to other nodes")


def _load(raw: str | None) -> Load:
    if raw is None:
        return Load()
    try:
        return Load.from_app({"load": json.loads(raw)}) or Load()
    except ValueError:
        return Load()
