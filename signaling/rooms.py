"""Room and peer registry: who is in which room with which role, and who may talk to whom.

Pure logic with no I/O, so the protocol rules (one room per client, relay only between a
sender and a receiver of the same room, who hears about whom, how big a room may grow) can
be reasoned about and changed in one place, independently of Socket.IO.

Who hears about whom (``VISIBLE``): a peer is told only of the roles it uses. A sender looks
for a receiver to offer to; a receiver answers senders (and shows their names); a dashboard
shows senders and receivers. So a join is announced to the k members that care, not to the
whole room, and the join ack lists only them: n senders joining a room cost n events, not
n^2/2 as when everyone heard of everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Refused
from .pool import Candidate, Load, is_pool, least_loaded

ROLES = ("sender", "receiver", "dashboard")
PEER_ROLES = ("sender", "receiver")  # the roles that take part in WebRTC
# The roles a member of each role is told about (join ack, peer-joined, peer-left).
VISIBLE: dict[str, tuple[str, ...]] = {
    "sender": ("receiver",),
    "receiver": ("sender",),
    "dashboard": ("sender", "receiver"),
}
# Its mirror: who is told when a member of each role joins or leaves.
AUDIENCE: dict[str, tuple[str, ...]] = {
    role: tuple(other for other in ROLES if role in VISIBLE[other]) for role in ROLES}


@dataclass
class Peer:
    """A joined client; `id` is its Socket.IO session id."""

    id: str
    room: str
    role: str
    name: str
    last_stats: dict[str, Any] | None = field(default=None, repr=False)
    expires: int = 0  # Unix seconds its token is good until; 0: no token (open server)

    def public(self) -> dict[str, str]:
        """The `Peer` object of the protocol: never leaks room internals or stats."""
        return {"id": self.id, "role": self.role, "name": self.name}


@dataclass
class Departure:
    """A peer that left, and what its leaving means for the others: who must hear
    ``peer-left`` (worked out before it left), and, for a pool receiver, the senders it was
    serving, now without a receiver (to be assigned another)."""

    peer: Peer
    audience: list[Peer]
    orphans: list[Peer] = field(default_factory=list)


class RoomFull(Refused):
    """A join refused because the room has ``max_room_peers`` members."""


class Room:
    """The members of one room by role, so "the receivers of room r" costs no scan."""

    def __init__(self) -> None:
        self.by_role: dict[str, dict[str, Peer]] = {role: {} for role in ROLES}
        self.size = 0

    def add(self, peer: Peer) -> None:
        self.by_role[peer.role][peer.id] = peer
        self.size += 1

    def remove(self, peer: Peer) -> None:
        if self.by_role[peer.role].pop(peer.id, None) is not None:
            self.size -= 1

    def of_roles(self, roles: tuple[str, ...], skip: str = "") -> list[Peer]:
        return [p for role in roles for p in self.by_role[role].values() if p.id != skip]


class Registry:
    """All joined peers, indexed by id and by room; rooms hold at most ``max_room_peers``
    (0: no limit)."""

    def __init__(self, max_room_peers: int = 0) -> None:
        self.max_room_peers = max_room_peers
        self._peers: dict[str, Peer] = {}
        self._rooms: dict[str, Room] = {}
        self._assigned: dict[str, str] = {}  # pool sender id -> its receiver's id
        self._loads: dict[str, Load] = {}     # pool receiver id -> its last reported load

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def join(self, peer_id: str, room: str, role: str, name: str,
             expires: int = 0) -> tuple[Peer, Peer | None]:
        """Add a peer; returns (new membership, old membership it had to leave, if any).

        The old membership is returned so the caller can tell the old room the peer left:
        the protocol allows a client in only one room at a time. A full room raises
        `RoomFull` before anything changes (the peer keeps its old membership). Arguments
        are trusted: `validate.parse_join` has checked them.
        """
        self.check_room(peer_id, room)
        old = self.leave(peer_id)
        peer = Peer(id=peer_id, room=room, role=role, name=name, expires=expires)
        self._peers[peer_id] = peer
        self._rooms.setdefault(room, Room()).add(peer)
        return peer, old

    def check_room(self, peer_id: str, room: str) -> None:
        """RoomFull unless ``peer_id`` may join ``room`` (it is in it already, or there is space)."""
        current = self._peers.get(peer_id)
        target = self._rooms.get(room)
        already_in = current is not None and current.room == room
        if (self.max_room_peers and target is not None and not already_in
                and target.size >= self.max_room_peers):
            raise RoomFull(f"room {room!r} is full ({self.max_room_peers} peers): try another room, "
                           "or ask the operator to raise --max-room-peers")

    def depart(self, peer_id: str) -> Departure | None:
        """Remove a peer as ``leave`` does, with who must be told and who is orphaned."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return None
        audience = self.audience(peer)
        orphans = self.senders_of(peer) if peer.role == "receiver" else []
        self.leave(peer_id)
        return Departure(peer, audience, orphans)

    def leave(self, peer_id: str) -> Peer | None:
        """Remove a peer; returns what it was, or None if it was in no room (not an error)."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return None
        self._assigned.pop(peer_id, None)
        self._loads.pop(peer_id, None)
        if peer.role == "receiver":  # its senders are orphans now (``depart`` lists them)
            for sender in [s for s, r in self._assigned.items() if r == peer_id]:
                del self._assigned[sender]
        members = self._rooms.get(peer.room)
        if members is not None:
            members.remove(peer)
            if not members.size:
                self._rooms.pop(peer.room, None)  # empty rooms must not accumulate
        return peer

    def _of_roles(self, room: str, roles: tuple[str, ...], skip: str = "") -> list[Peer]:
        members = self._rooms.get(room)
        return members.of_roles(roles, skip) if members is not None else []

    def members(self, room: str) -> list[Peer]:
        return self._of_roles(room, ROLES)

    def visible(self, peer: Peer) -> list[Peer]:
        """The members ``peer`` is told about: its join ack's ``peers``. In a pool a sender
        sees only the receiver assigned to it, a receiver only the senders it serves."""
        if is_pool(peer.room) and peer.role != "dashboard":
            return self._partners(peer)
        return self._of_roles(peer.room, VISIBLE[peer.role], skip=peer.id)

    def audience(self, peer: Peer) -> list[Peer]:
        """The members told when ``peer`` joins or leaves (peer-joined / peer-left)."""
        if is_pool(peer.room):
            return self.dashboards(peer.room) + (self._partners(peer) if peer.role != "dashboard" else [])
        return self._of_roles(peer.room, AUDIENCE[peer.role], skip=peer.id)

    def _partners(self, peer: Peer) -> list[Peer]:
        if peer.role == "sender":
            receiver = self.receiver_of(peer)
            return [receiver] if receiver is not None else []
        return self.senders_of(peer)

    # -- pools ---------------------------------------------------------------------------

    def receiver_of(self, sender: Peer) -> Peer | None:
        rid = self._assigned.get(sender.id)
        return self._peers.get(rid) if rid is not None else None

    def senders_of(self, receiver: Peer) -> list[Peer]:
        return [p for p in self._of_roles(receiver.room, ("sender",)) if self._assigned.get(p.id) == receiver.id]

    def waiting(self, room: str) -> list[Peer]:
        """The senders of pool ``room`` that have no receiver."""
        return [p for p in self._of_roles(room, ("sender",)) if p.id not in self._assigned]

    def assign(self, sender: Peer, exclude: tuple[str, ...] | set[str] = ()) -> Peer | None:
        """Give ``sender`` the least-loaded receiver of its pool (``pool.least_loaded``) that
        is not in ``exclude``, replacing any it had; None (and no receiver) if none is left."""
        self._assigned.pop(sender.id, None)
        receivers = self._of_roles(sender.room, ("receiver",))
        counts: dict[str, int] = {}
        for p in self._of_roles(sender.room, ("sender",)):
            rid = self._assigned.get(p.id)
            if rid is not None:
                counts[rid] = counts.get(rid, 0) + 1
        chosen = least_loaded((Candidate(r.id, counts.get(r.id, 0), self._loads.get(r.id, Load()))
                               for r in receivers), exclude)
        if chosen is None:
            return None
        self._assigned[sender.id] = chosen
        return self._peers[chosen]

    def release(self, sender: Peer) -> Peer | None:
        """Take ``sender``'s receiver away; returns it (None if it had none)."""
        rid = self._assigned.pop(sender.id, None)
        return self._peers.get(rid) if rid is not None else None

    def record_assignment(self, sender_id: str, receiver_id: str | None) -> None:
        """Mirror an assignment made elsewhere (Redis) when both ends are members here."""
        if receiver_id is not None and sender_id in self._peers and receiver_id in self._peers:
            self._assigned[sender_id] = receiver_id
        else:
            self._assigned.pop(sender_id, None)

    def members_all(self) -> list[Peer]:
        return list(self._peers.values())

    def set_load(self, receiver: Peer, load: Load) -> None:
        if receiver.id in self._peers:
            self._loads[receiver.id] = load

    def load_of(self, receiver: Peer) -> Load:
        return self._loads.get(receiver.id, Load())

    def others(self, peer: Peer) -> list[Peer]:
        """Everyone else in the peer's room."""
        return self._of_roles(peer.room, ROLES, skip=peer.id)

    def dashboards(self, room: str) -> list[Peer]:
        return self._of_roles(room, ("dashboard",))

    def relay_target(self, source: Peer, to_id: str) -> Peer:
        """The addressee of a `signal`, or Refused saying why this relay is not allowed."""
        target = check_relay(source, self._peers.get(to_id), to_id)
        if is_pool(source.room):
            sender, receiver = (source, target) if source.role == "sender" else (target, source)
            check_assigned(sender, receiver, self._assigned.get(sender.id))
        return target

    def totals(self) -> dict[str, int]:
        """Room and peer totals: what /healthz tells anyone (nothing about a given room)."""
        return {"rooms": len(self._rooms), "peers": len(self._peers)}

    def counts(self) -> dict[str, Any]:
        """Room and peer counts per role, for /healthz (an admin, or an open server)."""
        rooms = {name: {role: len(members.by_role[role]) for role in ROLES}
                 for name, members in self._rooms.items()}
        return {"rooms": len(rooms), "peers": len(self._peers), "by_room": rooms}


def check_relay(source: Peer, target: Peer | None, to_id: str) -> Peer:
    """The relay rules of docs/signaling.md, for any registry: ``target`` is the addressee
    looked up by id (None: unknown)."""
    if source.role not in PEER_ROLES:
        raise Refused(f"a {source.role} may not send signal messages")
    if target is None or target.room != source.room:
        # Same answer for "unknown" and "other room": do not reveal other rooms' members.
        raise Refused(f"no peer {to_id!r} in room {source.room!r}")
    if target.role not in PEER_ROLES:
        raise Refused(f"peer {to_id!r} is a {target.role} and takes no signal messages")
    if target.role == source.role:
        raise Refused(f"signal must go sender<->receiver, not {source.role}->{target.role}")
    return target


def check_assigned(sender: Peer, receiver: Peer, assigned: str | None) -> None:
    """In a pool, signaling goes only between a sender and the receiver assigned to it."""
    if assigned != receiver.id:
        raise Refused(f"receiver {receiver.id!r} is not the one assigned to sender {sender.id!r} in this pool")
