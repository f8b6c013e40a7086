"""Who is where, as the event handlers ask it: one interface, one node or many.

``SignalingEvents`` (handlers.py) asks a ``Directory``; ``LocalDirectory`` answers from this
process's ``Registry`` (the single-node server, exactly as before pools and Redis), and
``redisdir.RedisDirectory`` from Redis, shared by every node started with ``--redis``. The
methods are coroutines because the shared one does I/O; the local one never waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .pool import Load
from .rooms import Departure, Peer, Registry

GoneHandler = Callable[[Departure], Awaitable[None]]


class Directory(Protocol):
    """Rooms, pools and last stats; see ``rooms.Registry`` for the rules."""

    async def get(self, peer_id: str) -> Peer | None: ...

    def local(self, peer_id: str) -> Peer | None:
        """A peer connected to this node (every event's source is one), without I/O."""
        ...

    async def join(self, peer_id: str, room: str, role: str, name: str,
                   expires: int = 0) -> tuple[Peer, Departure | None]:
        """Add a peer (RoomFull first, if the room is full); returns it and its old membership."""
        ...

    async def depart(self, peer_id: str) -> Departure | None: ...

    async def visible(self, peer: Peer) -> list[Peer]: ...

    async def audience(self, peer: Peer) -> list[Peer]: ...

    async def dashboards(self, room: str) -> list[Peer]: ...

    async def relay_target(self, source: Peer, to_id: str) -> Peer: ...

    async def assign(self, sender: Peer, exclude: set[str]) -> tuple[Peer | None, Peer | None]:
        """(new receiver or None, the one it had before or None)."""
        ...

    async def waiting(self, room: str) -> list[Peer]: ...

    async def set_stats(self, peer: Peer, message: dict[str, Any], load: Load | None) -> None: ...

    async def last_stats(self, peers: list[Peer]) -> list[dict[str, Any]]: ...

    async def pool_view(self, room: str) -> list[dict[str, Any]]: ...

    async def totals(self) -> dict[str, int]: ...

    async def counts(self) -> dict[str, Any]: ...

    def on_gone(self, handler: GoneHandler) -> None:
        """Peers that vanished without a disconnect here (a dead node's): announce them."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalDirectory:
    """The single-node directory: this process's ``Registry``, nothing shared."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def get(self, peer_id: str) -> Peer | None:
        return self.registry.get(peer_id)

    def local(self, peer_id: str) -> Peer | None:
        return self.registry.get(peer_id)

    async def join(self, peer_id: str, room: str, role: str, name: str,
                   expires: int = 0) -> tuple[Peer, Departure | None]:
        self.registry.check_room(peer_id, room)
        old = self.registry.depart(peer_id)
        peer, _ = self.registry.join(peer_id, room, role, name, expires)
        return peer, old

    async def depart(self, peer_id: str) -> Departure | None:
        return self.registry.depart(peer_id)

    async def visible(self, peer: Peer) -> list[Peer]:
        return self.registry.visible(peer)

    async def audience(self, peer: Peer) -> list[Peer]:
        return self.registry.audience(peer)

    async def dashboards(self, room: str) -> list[Peer]:
        return self.registry.dashboards(room)

    async def relay_target(self, source: Peer, to_id: str) -> Peer:
        return self.registry.relay_target(source, to_id)

    async def assign(self, sender: Peer, exclude: set[str]) -> tuple[Peer | None, Peer | None]:
        before = self.registry.receiver_of(sender)
        return self.registry.assign(sender, exclude), before

    async def waiting(self, room: str) -> list[Peer]:
        return self.registry.waiting(room)

    async def set_stats(self, peer: Peer, message: dict[str, Any], load: Load | None) -> None:
        peer.last_stats = message
        if load is not None:
            self.registry.set_load(peer, load)

    async def last_stats(self, peers: list[Peer]) -> list[dict[str, Any]]:
        return [p.last_stats for p in peers if p.last_stats is not None]

    async def pool_view(self, room: str) -> list[dict[str, Any]]:
        r = self.registry
        return [{**p.public(), "load": r.load_of(p).as_dict(), "senders": [s.public() for s in r.senders_of(p)]}
                for p in r.members(room) if p.role == "receiver"]

    async def totals(self) -> dict[str, int]:
        return self.registry.totals()

    async def counts(self) -> dict[str, Any]:
        return self.registry.counts()

    def on_gone(self, handler: GoneHandler) -> None:
        """Nothing vanishes here without its own disconnect."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
