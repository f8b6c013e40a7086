"""What the server did, counted: shown by /healthz and read by ``bench.signaling_storm``.

Plain integers bumped on the event loop (no locks needed); cumulative since start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    joins: int = 0
    joins_refused_full: int = 0
    joins_refused_token: int = 0  # joins without a valid token for that room and role
    events_sent: int = 0        # deliveries: one event to three clients counts three
    refused: int = 0            # client messages answered with an `error` event
    rate_limited: int = 0       # client messages dropped by the per-client rate limit
    flood_disconnects: int = 0  # clients disconnected for flooding

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
