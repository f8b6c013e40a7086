"""Receiver pools: which receiver a sender that asks for a pool gets.

A pool is a room whose senders do not choose: receivers register in it (``join`` with
``pool: true``), and each sender is assigned one, the least loaded, by the server. The
registry (``rooms.Registry`` on one node, ``redisdir.RedisDirectory`` across nodes) keeps who
serves whom; this module holds only the choice, so both use the same rule.

Load is what each receiver reports in its ``stats`` (``app.load``: ``streams``, ``cpu``, the
cores its processes used over the last second, ``queue``, frames waiting for its tails, and
``workers``, the worker processes that share them: ``python -m receiver --workers N``),
combined with the assignments the server has made since (a report is up to a second old:
eight senders joining at once must not all see the same idle receiver). Every figure is
compared per worker, so a receiver of four workers takes four times the senders of a
receiver of one before it counts as busier. The order is: a saturated receiver (per worker,
cpu >= ``SATURATED_CPU`` or a tail queue of ``SATURATED_QUEUE`` frames) last, then fewest
streams, then least CPU, then shortest queue, then the id (a stable tie-break, so tests and
operators can predict it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

POOL_PREFIX = "pool/"  # room key of pool NAME: "/" is not allowed in room names, so no clash
SATURATED_CPU = 0.9
SATURATED_QUEUE = 8
MAX_WORKERS = 1024


def pool_key(name: str) -> str:
    return POOL_PREFIX + name


def is_pool(room: str) -> bool:
    return room.startswith(POOL_PREFIX)


def pool_name(room: str) -> str:
    """The name a client knows: the pool's name, or the room's."""
    return room[len(POOL_PREFIX):] if is_pool(room) else room


@dataclass(frozen=True)
class Load:
    """One receiver's last report; zeros (and one worker) until its first stats arrive."""

    streams: int = 0
    cpu: float = 0.0
    queue: int = 0
    workers: int = 1

    @classmethod
    def from_app(cls, app: dict[str, Any]) -> Load | None:
        """The ``load`` object of a receiver's ``app`` stats, or None if it has none (an
        older receiver, a browser page): bad values are clamped, never trusted as given."""
        load = app.get("load")
        if not isinstance(load, dict):
            return None
        return cls(streams=_bounded_int(load.get("streams"), 1_000_000),
                   cpu=_bounded_float(load.get("cpu"), 1024.0),
                   queue=_bounded_int(load.get("queue"), 1_000_000),
                   workers=max(1, _bounded_int(load.get("workers", 1), MAX_WORKERS)))

    @property
    def saturated(self) -> bool:
        return self.cpu >= SATURATED_CPU * self.workers or self.queue >= SATURATED_QUEUE * self.workers

    def as_dict(self) -> dict[str, Any]:
        return {"streams": self.streams, "cpu": self.cpu, "queue": self.queue, "workers": self.workers}


@dataclass(frozen=True)
class Candidate:
    """A receiver of the pool as the choice sees it."""

    id: str
    assigned: int          # senders the server has assigned to it
    load: Load = Load()

    def key(self) -> tuple[bool, float, float, float, str]:
        n = self.load.workers
        return (self.load.saturated, max(self.assigned, self.load.streams) / n, self.load.cpu / n,
                self.load.queue / n, self.id)


def least_loaded(candidates: Iterable[Candidate], exclude: Iterable[str] = ()) -> str | None:
    """The id of the receiver to assign next, or None if none is left."""
    skip = set(exclude)
    best = min((c for c in candidates if c.id not in skip), key=Candidate.key, default=None)
    return best.id if best is not None else None


def _bounded_int(value: Any, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return int(min(max(value, 0), top))


def _bounded_float(value: Any, top: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return round(float(min(max(value, 0.0), top)), 3)
