"""The sender's account of every frame: where each one went, and how long it took.

Every captured frame ends in exactly one bucket: dropped before sending (``stale``: the pacer
fell behind; ``backpressure``: the channel was backed up; ``no_receiver``: none connected;
``channel_closed``: the channel closed under it), answered, dropped by the receiver (with its
reason), refused (an ``error`` from the receiver, or ``bad_reply`` when the receiver's answer
about it was malformed), ``lost`` with a connection, or still in flight when the run ended.
``check()`` proves the books balance; the tests assert it.

Every text from the receiver goes through ``on_text``, which validates it with
``splitcore.wire.messages.parse`` before it touches the books, so no message, however
malformed, can settle a frame twice or leave one unaccounted. The browser's twin
(``static/js``'s ledger) follows the same rules, and ``tests/vectors/ledger.json`` replays
the same events through both.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from splitcore.wire.messages import TIMING_FIELDS, Drop, Error, Message, MessageError, Reply, parse


@dataclass
class InFlight:
    capture_ms: float
    frame: int                    # the source's frame index: gaps are the pacer's drops
    reference: np.ndarray | None  # full-model logits for --verify, else None
    head_done_ms: float = 0.0     # monotonic ms when the head's latent was ready
    sent_ms: float = 0.0          # monotonic ms when the last message was handed to the channel
    point: tuple[str, str, str] | None = None  # (split, codec, head) under --split adaptive
    nbytes: int = 0               # bytes on the channel (counted under --split adaptive)


STAGES = ("capture_to_head_ms", "encode_send_ms", "network_ms", "receiver_ms")


class Reservoir:
    """Latencies for the run's percentiles in fixed memory: every sample while there are
    fewer than ``size`` (an hour at 30 fps by default), then a uniform random sample of them
    all (reservoir sampling), so a sender left running for days does not grow.

    The samples live in one float32 array written through at creation (0.4 MiB for an hour):
    a list of Python floats grew the sender by 40 B a sample, 22 MB an hour across its seven
    reservoirs (bench.soak), and even a lazily mapped array would grow as its pages are first
    touched. Milliseconds in float32 keep 7 significant digits."""

    def __init__(self, size: int = 108_000, seed: int = 0) -> None:
        self.size, self.seen = size, 0
        self._data = np.full(size, np.nan, np.float32)  # every page touched now, not later
        self.last: float | None = None  # the newest sample, wherever it was stored
        self._rng = random.Random(seed)

    def append(self, value: float) -> None:
        self.seen += 1
        self.last = value
        if self.seen <= self.size:
            self._data[self.seen - 1] = value
        elif (j := self._rng.randrange(self.seen)) < self.size:
            self._data[j] = value

    @property
    def values(self) -> np.ndarray:
        """The samples kept (a view, in no particular order once the reservoir is full)."""
        return self._data[:min(self.seen, self.size)]

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def __iter__(self) -> Iterator[float]:
        return iter(self.values.tolist())


@dataclass
class Outage:
    """A time without a receiver: from losing one (``cause``) to the next data channel open.
    ``start``/``end`` are Unix times; ``frames_dropped`` counts the frames captured meanwhile
    (all dropped by the sender), ``frames_lost`` those in flight when the connection died."""

    cause: str
    receiver: str
    start: float
    frames_lost: int
    dropped_before: int = 0
    end: float | None = None
    frames_dropped: int = 0
    new_receiver: str = ""
    _mono_start: float = 0.0
    _mono_end: float | None = None

    def as_dict(self) -> dict[str, Any]:
        end = self._mono_end if self._mono_end is not None else time.monotonic()
        return {"cause": self.cause, "receiver": self.receiver, "start": round(self.start, 3),
                "end": round(self.end, 3) if self.end is not None else None,
                "seconds": round(end - self._mono_start, 3), "frames_dropped": self.frames_dropped,
                "frames_lost": self.frames_lost, "new_receiver": self.new_receiver or None}


@dataclass
class Ledger:
    classes: tuple[str, ...]
    log_file: IO[str] | None = None
    captured: int = 0
    sent: int = 0
    replied: int = 0
    dropped_sender: Counter[str] = field(default_factory=Counter)
    dropped_receiver: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lost: int = 0               # in flight when the connection to the receiver died
    unmatched: int = 0          # texts about no frame in flight (duplicates, unknown seq, no seq)
    refused: int = 0            # texts that were not valid messages (some settled as bad_reply)
    latencies: Reservoir = field(default_factory=Reservoir)
    stages: dict[str, Reservoir] = field(default_factory=lambda: {k: Reservoir() for k in STAGES})
    rtt: Reservoir = field(default_factory=Reservoir)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    verified: int = 0
    bit_exact: int = 0
    label_agree: int = 0
    max_abs_diff: float = 0.0
    last_label: str = ""
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    started: float | None = None  # first capture: connecting is not streaming time
    first_sent: float = 0.0
    last_sent: float = 0.0
    in_flight_bytes: int = 0      # of frames sent with nbytes, not yet settled
    settled_bytes: int = 0        # of frames settled by the receiver (reply, drop, error), in all
    server_ms: dict[str, list[float]] = field(default_factory=dict)  # split -> [sum, n] of reply total_ms
    net_lo_ms: float = math.inf   # least / greatest network time of the replies since the adaptive
    net_hi_ms: float = -math.inf  # controller last read them (it resets both; see sender.switching)

    # --- frames the sender handles -------------------------------------------------------

    def on_captured(self) -> None:
        self.captured += 1
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def fps(self) -> float:
        """Sustained send rate: frame intervals over the time from first to last send."""
        if self.sent < 2 or self.last_sent <= self.first_sent:
            return 0.0
        return round((self.sent - 1) / (self.last_sent - self.first_sent), 2)

    def on_skipped(self, n: int) -> None:
        """Frames the pacer skipped because the pipeline fell behind: stale, never sent."""
        self.captured += n
        self.dropped_sender["stale"] += n

    def drop_before_send(self, reason: str) -> None:
        """A captured frame not sent (``backpressure``, ``no_receiver``, ``channel_closed``)."""
        self.dropped_sender[reason] += 1

    def on_sent(self, seq: int, capture_ms: float, reference: np.ndarray | None = None,
                frame: int | None = None, head_done_ms: float = 0.0, now_ms: float | None = None,
                point: tuple[str, str, str] | None = None, nbytes: int = 0) -> None:
        """Frame ``seq`` was handed to the channel at ``now_ms`` (default: now, monotonic ms)."""
        self.last_sent = now_ms / 1000 if now_ms is not None else time.monotonic()
        if not self.sent:
            self.first_sent = self.last_sent
        self.sent += 1
        sent_ms = self.last_sent * 1000
        self.in_flight[seq] = InFlight(capture_ms, seq if frame is None else frame, reference,
                                       head_done_ms or sent_ms, sent_ms, point, nbytes)
        self.in_flight_bytes += nbytes

    def connection_lost(self) -> int:
        """The connection died: every frame in flight is ``lost``. Returns how many."""
        n = len(self.in_flight)
        for seq, entry in self.in_flight.items():
            self._log({"seq": seq, "frame": entry.frame, "status": "lost"}, entry)
        self.lost += n
        self.in_flight.clear()
        self.in_flight_bytes = 0
        return n

    # --- what the receiver says ------------------------------------------------------------

    def on_text(self, text: str | bytes, now_ms: float) -> Message | None:
        """One text from the receiver: validated, then settles at most one frame.

        Returns the message (the caller answers a ``ping`` and times a ``pong``), or None
        when it was refused: a refusal that names a frame in flight settles that frame as
        an error ``bad_reply``; any other counts as ``unmatched``."""
        try:
            msg = parse(text)
        except MessageError as err:
            self.refused += 1
            entry = self._pop(err.seq)
            if entry is None:
                self.unmatched += 1
            else:
                self.errors["bad_reply"] += 1
                self._log({"seq": err.seq, "frame": entry.frame, "status": "error", "reason": "bad_reply",
                           "detail": err.detail}, entry)
            return None
        if isinstance(msg, Reply | Drop | Error):
            self.settle(msg, now_ms)
        return msg

    def settle(self, msg: Reply | Drop | Error, now_ms: float) -> None:
        """Settle the frame a valid reply, drop or error is about; ``unmatched`` if none is
        in flight under its seq (a duplicate, an unknown seq, an error without seq)."""
        entry = self._pop(msg.seq)
        if entry is None:
            self.unmatched += 1
        elif isinstance(msg, Reply):
            self._reply(msg, entry, now_ms - entry.capture_ms)
        elif isinstance(msg, Drop):
            self.dropped_receiver[msg.reason] += 1
            self._log({"seq": msg.seq, "frame": entry.frame, "status": "dropped", "reason": msg.reason}, entry)
        else:
            self.errors[msg.reason] += 1
            self._log({"seq": msg.seq, "frame": entry.frame, "status": "error", "reason": msg.reason}, entry)

    def _pop(self, seq: int | None) -> InFlight | None:
        """Take frame ``seq`` out of the books (None if not in flight): its bytes are settled."""
        entry = self.in_flight.pop(seq, None) if seq is not None else None
        if entry is not None:
            self.in_flight_bytes -= entry.nbytes
            self.settled_bytes += entry.nbytes
        return entry

    def _reply(self, msg: Reply, entry: InFlight, latency_ms: float) -> None:
        self.replied += 1
        if entry.point is not None:
            acc = self.server_ms.setdefault(msg.split, [0.0, 0.0])
            acc[0] += msg.timing.total_ms
            acc[1] += 1
        self.latencies.append(latency_ms)
        self._split_latency(msg, entry, entry.capture_ms + latency_ms)
        self.recent.append(latency_ms)
        label = msg.label
        self.last_label = self.classes[label] if 0 <= label < len(self.classes) else str(label)
        if entry.reference is not None:
            got = np.asarray(msg.logits if msg.logits is not None else (), np.float32)
            self.verified += 1
            if got.shape == entry.reference.shape:
                self.bit_exact += int(np.array_equal(got.view(np.uint32), entry.reference.view(np.uint32)))
                self.max_abs_diff = max(self.max_abs_diff, float(np.abs(got - entry.reference).max()))
            self.label_agree += int(label == int(entry.reference.argmax()))
        self._log({"seq": msg.seq, "frame": entry.frame, "label": label, "name": self.last_label,
                   "latency_ms": round(latency_ms, 3),
                   "receiver": {k: getattr(msg.timing, k) for k in TIMING_FIELDS}}, entry)

    def _split_latency(self, msg: Reply, entry: InFlight, now_ms: float) -> None:
        """Where a frame's latency went: the sender's own stages on its clock, the receiver's
        time from its reply, and the rest (both directions of the data channel, both event
        loops) as ``network_ms``. Needs no shared clock."""
        recv = msg.timing.total_ms
        net = now_ms - entry.sent_ms - recv
        self.stages["capture_to_head_ms"].append(entry.head_done_ms - entry.capture_ms)
        self.stages["encode_send_ms"].append(entry.sent_ms - entry.head_done_ms)
        self.stages["network_ms"].append(net)
        self.net_lo_ms, self.net_hi_ms = min(self.net_lo_ms, net), max(self.net_hi_ms, net)
        self.stages["receiver_ms"].append(recv)

    def on_rtt(self, ms: float) -> None:
        """A round trip measured by a ping and its pong."""
        self.rtt.append(ms)

    # --- outages ---------------------------------------------------------------------------

    def outage_started(self, cause: str, receiver: str, frames_lost: int) -> Outage:
        outage = Outage(cause, receiver, time.time(), frames_lost, self.dropped_sender.total(),
                        _mono_start=time.monotonic())
        self.outages.append(outage)
        return outage

    def outage_ended(self, new_receiver: str) -> Outage | None:
        outage = self.open_outage()
        if outage is not None:
            outage.end, outage._mono_end, outage.new_receiver = time.time(), time.monotonic(), new_receiver
            outage.frames_dropped = self.dropped_sender.total() - outage.dropped_before
        return outage

    def open_outage(self) -> Outage | None:
        return self.outages[-1] if self.outages and self.outages[-1].end is None else None

    # --- results -----------------------------------------------------------------------------

    def _log(self, record: dict[str, Any], entry: InFlight | None = None) -> None:
        if self.log_file is not None:
            if entry is not None:
                record["capture_ms"] = round(entry.capture_ms, 1)  # monotonic: benchmarks align phases by it
                if entry.point is not None:
                    record["split"], record["codec"], record["head"] = entry.point
            self.log_file.write(json.dumps(record) + "\n")

    def percentiles(self, recent: bool = False) -> tuple[float | None, float | None]:
        data: Reservoir | deque[float] = self.recent if recent else self.latencies
        if not len(data):
            return None, None
        samples = data.values if isinstance(data, Reservoir) else np.fromiter(data, float)
        p50, p99 = np.percentile(samples, [50, 99])
        return round(float(p50), 3), round(float(p99), 3)

    def check(self) -> bool:
        """Sent frames are all settled or still in flight; captured ones all sent or dropped."""
        settled = self.replied + self.dropped_receiver.total() + self.errors.total() + self.lost
        return (settled + len(self.in_flight) == self.sent
                and self.sent + self.dropped_sender.total() == self.captured)

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.percentiles()
        open_outage = self.open_outage()
        if open_outage is not None:  # still without a receiver at exit: what it cost so far
            open_outage.frames_dropped = self.dropped_sender.total() - open_outage.dropped_before
        out: dict[str, Any] = {
            "frames_captured": self.captured, "frames_sent": self.sent,
            "replies": self.replied, "dropped_by_sender": dict(self.dropped_sender),
            "dropped_by_receiver": dict(self.dropped_receiver), "errors": dict(self.errors),
            "lost": self.lost, "in_flight_at_exit": len(self.in_flight), "unmatched_messages": self.unmatched,
            "refused_messages": self.refused, "accounted": self.check(), "seconds": round(self.elapsed(), 3),
            "fps": self.fps(), "latency_p50_ms": p50, "latency_p99_ms": p99,
            "outages": [o.as_dict() for o in self.outages]}
        if len(self.rtt):
            out["rtt_p50_ms"] = round(float(np.median(self.rtt.values)), 3)
        if self.stages["receiver_ms"]:
            out["latency_stages_p50_ms"] = {k: round(float(np.median(v.values)), 3) for k, v in self.stages.items()}
        if self.verified:
            out["fidelity"] = {"verified": self.verified, "bit_exact": self.bit_exact,
                               "label_agreement": round(self.label_agree / self.verified, 6),
                               "max_abs_logit_diff": self.max_abs_diff}
        return out
