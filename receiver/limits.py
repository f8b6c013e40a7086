"""How much the receiver gives each sender, and the budget that ends a hostile one.

Every bound a peer could otherwise push around is here, with its command-line default:
how many sessions in total and per sender id, how long an offer may take to become a data
channel, how long a silent peer is kept, how many malformed messages a peer may send.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BATCH = 32            # frames of one split in one tail job (receiver.engine)
EARLIER = "(earlier)"     # summary key of the ended sessions added up beyond Limits.keep_closed


@dataclass(frozen=True)
class Limits:
    max_sessions: int = 64          # concurrent sessions, all senders together
    max_per_sender: int = 1         # concurrent sessions of one sender id (a new offer replaces the oldest)
    offer_timeout_s: float = 10.0   # an offer whose data channel is not open by then is torn down
    peer_timeout_s: float = 2.0     # nothing at all received for this long: the peer is gone
    ping_interval_s: float = 0.5    # docs/wire-format.md: each side pings every 0.5 s
    malformed_rate: float = 20.0    # malformed messages a second a peer may sustain ...
    malformed_burst: int = 200      # ... after a burst of this many; beyond: disconnected
    max_buffered: int = 1 << 20     # bytes of our replies a peer may leave unread in the channel
    log_interval_s: float = 5.0     # a peer's warnings are summarised once per interval
    keep_closed: int = 64           # ended sessions whose summaries are kept one by one
    ban_s: float = 30.0             # offers from a sender disconnected for abuse are refused this long


class MalformedBudget:
    """A token bucket: ``burst`` malformed messages at once, ``rate`` a second after that.

    A sender with a bug sends a few bad frames and keeps its session; one that sends them
    faster than ``rate`` for long enough runs out and is disconnected.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._at = clock()

    def spend(self) -> bool:
        """Take one token; False when the budget is spent."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
