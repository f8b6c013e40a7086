"""The sender's account of every frame: where each one went, and how long it took.

Every captured frame ends in exactly one bucket: dropped before sending (the pacer fell
behind, or the channel was backed up), answered, dropped by the receiver (with its reason),
refused as malformed, or still in flight when the run ended. ``check()`` proves the books
balance; the end-to-end tests assert it.
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO

import numpy as np


@dataclass
class InFlight:
    capture_ms: float
    frame: int                    # the source's frame index: gaps are the pacer's drops
    reference: np.ndarray | None  # full-model logits for --verify, else None
    head_done_ms: float = 0.0     # monotonic ms when the head's latent was ready
    sent_ms: float = 0.0          # monotonic ms when the last message was handed to the channel


STAGES = ("capture_to_head_ms", "encode_send_ms", "network_ms", "receiver_ms")


class Reservoir:
    """Latencies for the run's percentiles in bounded memory: every sample while there are
    fewer than ``size`` (an hour at 30 fps by default), then a uniform random sample of them
    all (reservoir sampling), so a sender left running for days does not grow."""

    def __init__(self, size: int = 108_000, seed: int = 0) -> None:
        self.size, self.seen = size, 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def append(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        elif (j := self._rng.randrange(self.seen)) < self.size:
            self.values[j] = value

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return iter(self.values)


@dataclass
class Ledger:
    classes: tuple[str, ...]
    log_file: IO[str] | None = None
    captured: int = 0
    sent: int = 0
    replied: int = 0
    dropped_sender: Counter = field(default_factory=Counter)
    dropped_receiver: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    unmatched: int = 0          # replies for a seq we were not waiting for
    latencies: Reservoir = field(default_factory=Reservoir)
    stages: dict[str, Reservoir] = field(default_factory=lambda: {k: Reservoir() for k in STAGES})
    recent: deque = field(default_factory=lambda: deque(maxlen=300))
    verified: int = 0
    bit_exact: int = 0
    label_agree: int = 0
    max_abs_diff: float = 0.0
    last_label: str = ""
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    started: float | None = None  # first capture: connecting is not streaming time
    first_sent: float = 0.0
    last_sent: float = 0.0

    def on_captured(self) -> None:
        self.captured += 1
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def fps(self) -> float:
        """Sustained send rate: frame intervals over the time from first to last send."""
        if self.sent < 2:
            return 0.0
        return round((self.sent - 1) / (self.last_sent - self.first_sent), 2)

    def on_skipped(self, n: int) -> None:
        """Frames the pacer skipped because the pipeline fell behind: stale, never sent."""
        self.captured += n
        self.dropped_sender["stale"] += n

    def drop_before_send(self, reason: str) -> None:
        """A captured frame not sent (e.g. ``backpressure``: the channel is backed up)."""
        self.dropped_sender[reason] += 1

    def on_sent(self, seq: int, capture_ms: float, reference: np.ndarray | None, frame: int,
                head_done_ms: float = 0.0) -> None:
        self.last_sent = time.monotonic()
        if not self.sent:
            self.first_sent = self.last_sent
        self.sent += 1
        self.in_flight[seq] = InFlight(capture_ms, frame, reference, head_done_ms or self.last_sent * 1000,
                                       self.last_sent * 1000)

    def on_message(self, msg: dict, now_ms: float) -> None:
        """Settle one frame from the receiver's reply, drop or error message."""
        seq = msg.get("seq")
        entry = self.in_flight.pop(seq, None) if isinstance(seq, int) else None
        kind = msg.get("type")
        if entry is None:  # not ours, a duplicate, or an error about an unreadable header
            self.unmatched += 1
            return
        if kind == "reply":
            self._reply(seq, msg, entry, now_ms - entry.capture_ms)
        elif kind == "drop":
            self.dropped_receiver[msg.get("reason", "unknown")] += 1
            self._log({"seq": seq, "frame": entry.frame, "status": "dropped", "reason": msg.get("reason")})
        else:
            self.errors[msg.get("reason", "unknown")] += 1
            self._log({"seq": seq, "frame": entry.frame, "status": "error", "reason": msg.get("reason")})

    def _reply(self, seq: int, msg: dict, entry: InFlight, latency_ms: float) -> None:
        self.replied += 1
        self.latencies.append(latency_ms)
        self._split_latency(msg, entry, entry.capture_ms + latency_ms)
        self.recent.append(latency_ms)
        label = int(msg["label"])
        self.last_label = self.classes[label] if 0 <= label < len(self.classes) else str(label)
        if entry.reference is not None:
            got = np.asarray(msg.get("logits", []), np.float32)
            self.verified += 1
            if got.shape == entry.reference.shape:
                self.bit_exact += int(np.array_equal(got.view(np.uint32), entry.reference.view(np.uint32)))
                self.max_abs_diff = max(self.max_abs_diff, float(np.abs(got - entry.reference).max()))
            self.label_agree += int(label == int(entry.reference.argmax()))
        record = {"seq": seq, "frame": entry.frame, "label": label, "name": self.last_label,
                  "latency_ms": round(latency_ms, 3)}
        if isinstance(msg.get("timing"), dict):
            record["receiver"] = msg["timing"]  # decode, queue, tail and total ms on the receiver
        self._log(record)

    def _split_latency(self, msg: dict, entry: InFlight, now_ms: float) -> None:
        """Where a frame's latency went: the sender's own stages on its clock, the receiver's
        time from its reply, and the rest (both directions of the data channel, both event
        loops) as ``network_ms``. Needs no shared clock."""
        timing = msg.get("timing")
        recv = timing.get("total_ms") if isinstance(timing, dict) else None
        if not isinstance(recv, (int, float)):
            return
        self.stages["capture_to_head_ms"].append(entry.head_done_ms - entry.capture_ms)
        self.stages["encode_send_ms"].append(entry.sent_ms - entry.head_done_ms)
        self.stages["network_ms"].append(now_ms - entry.sent_ms - recv)
        self.stages["receiver_ms"].append(float(recv))

    def _log(self, record: dict) -> None:
        if self.log_file is not None:
            self.log_file.write(json.dumps(record) + "\n")

    def percentiles(self, recent: bool = False) -> tuple[float | None, float | None]:
        data = self.recent if recent else self.latencies
        if not data:
            return None, None
        p50, p99 = np.percentile(np.fromiter(data, float), [50, 99])
        return round(float(p50), 3), round(float(p99), 3)

    def check(self) -> bool:
        """Sent frames are all settled or still in flight; captured ones all sent or dropped."""
        settled = self.replied + self.dropped_receiver.total() + self.errors.total()
        return (settled + len(self.in_flight) == self.sent
                and self.sent + self.dropped_sender.total() == self.captured)

    def summary(self) -> dict:
        p50, p99 = self.percentiles()
        out = {"frames_captured": self.captured, "frames_sent": self.sent,
               "replies": self.replied, "dropped_by_sender": dict(self.dropped_sender),
               "dropped_by_receiver": dict(self.dropped_receiver), "errors": dict(self.errors),
               "in_flight_at_exit": len(self.in_flight), "unmatched_messages": self.unmatched,
               "accounted": self.check(), "seconds": round(self.elapsed(), 3), "fps": self.fps(),
               "latency_p50_ms": p50, "latency_p99_ms": p99}
        if self.stages["receiver_ms"]:
            out["latency_stages_p50_ms"] = {k: round(float(np.median(v.values)), 3) for k, v in self.stages.items()}
        if self.verified:
            out["fidelity"] = {"verified": self.verified, "bit_exact": self.bit_exact,
                               "label_agreement": round(self.label_agree / self.verified, 6),
                               "max_abs_logit_diff": self.max_abs_diff}
        return out
