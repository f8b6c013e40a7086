"""The server's configurable limits, in one value passed from the command line down.

A signaling server faces the open network: every cost a client can make it pay (room size,
event rate) has a bound here, with defaults sized for real deployments (a room is one or a
few receivers, tens of senders, a few dashboards; a peer sends about one event a second,
plus a burst of candidates while connecting).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_ROOM_PEERS = 128
DEFAULT_EVENTS_PER_S = 50.0
DEFAULT_BURST = 200


@dataclass(frozen=True)
class Limits:
    """``max_room_peers``: members of one room, every role counted (0: no limit);
    ``events_per_s`` and ``burst``: each client's token bucket (0 events/s: no limit); a
    client that goes on sending after ``burst`` of its events were dropped is disconnected."""

    max_room_peers: int = DEFAULT_MAX_ROOM_PEERS
    events_per_s: float = DEFAULT_EVENTS_PER_S
    burst: int = DEFAULT_BURST

    def __post_init__(self) -> None:
        if self.max_room_peers < 0 or self.events_per_s < 0 or self.burst < 1:
            raise ValueError(f"limits must be >= 0 (burst >= 1): {self}")
