"""Room and peer registry: who is in which room with which role, and who may talk to whom.

Pure logic with no I/O, so the protocol rules (one room per client, relay only between a
sender and a receiver of the same room) can be reasoned about and changed in one place,
independently of Socket.IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Refused

ROLES = ("sender", "receiver", "dashboard")
PEER_ROLES = ("sender", "receiver")  # the roles that take part in WebRTC


@dataclass
class Peer:
    """A joined client; `id` is its Socket.IO session id."""

    id: str
    room: str
    role: str
    name: str
    last_stats: dict[str, Any] | None = field(default=None, repr=False)

    def public(self) -> dict[str, str]:
        """The `Peer` object of the protocol: never leaks room internals or stats."""
        return {"id": self.id, "role": self.role, "name": self.name}


class Registry:
    """All joined peers, indexed by id and by room."""

    def __init__(self) -> None:
        self._peers: dict[str, Peer] = {}
        self._rooms: dict[str, dict[str, Peer]] = {}

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def join(self, peer_id: str, room: str, role: str, name: str) -> tuple[Peer, Peer | None]:
        """Add a peer; returns (new membership, old membership it had to leave, if any).

        The old membership is returned so the caller can tell the old room the peer left:
        the protocol allows a client in only one room at a time. Arguments are trusted:
        `validate.parse_join` has checked them.
        """
        old = self.leave(peer_id)
        peer = Peer(id=peer_id, room=room, role=role, name=name)
        self._peers[peer_id] = peer
        self._rooms.setdefault(room, {})[peer_id] = peer
        return peer, old

    def leave(self, peer_id: str) -> Peer | None:
        """Remove a peer; returns what it was, or None if it was in no room (not an error)."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return None
        members = self._rooms.get(peer.room, {})
        members.pop(peer_id, None)
        if not members:
            self._rooms.pop(peer.room, None)  # empty rooms must not accumulate
        return peer

    def members(self, room: str) -> list[Peer]:
        return list(self._rooms.get(room, {}).values())

    def others(self, peer: Peer) -> list[Peer]:
        """Everyone else in the peer's room: the audience of peer-joined / peer-left."""
        return [p for p in self.members(peer.room) if p.id != peer.id]

    def dashboards(self, room: str) -> list[Peer]:
        return [p for p in self.members(room) if p.role == "dashboard"]

    def relay_target(self, source: Peer, to_id: str) -> Peer:
        """The addressee of a `signal`, or Refused saying why this relay is not allowed."""
        if source.role not in PEER_ROLES:
            raise Refused(f"a {source.role} may not send signal messages")
        target = self._peers.get(to_id)
        if target is None or target.room != source.room:
            # Same answer for "unknown" and "other room": do not reveal other rooms' members.
            raise Refused(f"no peer {to_id!r} in room {source.room!r}")
        if target.role not in PEER_ROLES:
            raise Refused(f"peer {to_id!r} is a {target.role} and takes no signal messages")
        if target.role == source.role:
            raise Refused(f"signal must go sender<->receiver, not {source.role}->{target.role}")
        return target

    def counts(self) -> dict[str, Any]:
        """Room and peer counts per role, for /healthz."""
        rooms = {
            name: {role: sum(p.role == role for p in members.values()) for role in ROLES}
            for name, members in self._rooms.items()
        }
        return {"rooms": len(rooms), "peers": len(self._peers), "by_room": rooms}
