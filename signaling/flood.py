"""Per-client rate limiting: a token bucket per connection, decided before any decoding.

A client may send ``burst`` events at once and ``rate`` events a second after that. Events
beyond it are dropped unread; the first drop of a streak is answered with one `error` event
(more would amplify the flood); a client that keeps sending after ``burst`` drops is
disconnected. Legitimate peers send about one event a
second (stats) plus a short burst of candidates while connecting, far below the defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = field(init=False)
    last: float = field(init=False)
    dropped: int = 0  # dropped since the bucket was last full

    def __post_init__(self) -> None:
        self.tokens, self.last = float(self.burst), time.monotonic()

    def take(self, now: float) -> bool:
        """One event at ``now``: True if it may pass."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= self.burst:
            self.dropped = 0  # the client calmed down: forgive
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.dropped += 1
        return False


PASS, WARN, DROP, DISCONNECT = "pass", "warn", "drop", "disconnect"


class FloodGuard:
    """The buckets of every connection; ``rate`` 0 disables the limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, client: str) -> str:
        """PASS; WARN (the first event over the rate: drop it and tell the client), DROP
        (the next ones) or DISCONNECT (``burst`` events dropped and it goes on)."""
        if self.rate <= 0:
            return PASS
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst)
        if bucket.take(time.monotonic()):
            return PASS
        if bucket.dropped == 1:
            return WARN
        return DISCONNECT if bucket.dropped > self.burst else DROP

    def forget(self, client: str) -> None:
        self._buckets.pop(client, None)
