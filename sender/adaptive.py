"""The adaptive operating point (``--split adaptive``): estimator and controller, pure logic.

No I/O and no clock of its own: ``sender.stream`` feeds it one ``Observation`` per tick
(``TICK_S``) and asks for a ``Switch``; ``tests/vectors/adaptive.json`` replays the same
observations through this module and the browser's twin, so both decide alike.
``docs/adaptive.md`` is the specification.

Why this model: capture-to-reply latency of operating point p (split x codec x head) is

    device_ms(split, head) + encode_ms(split, codec)            the device (profiled, refreshed)
  + payload_bytes(p) * 8 / capacity_bps                        putting the frame on the link
  + server_ms(split)                                           the receiver (reply ``timing``)

(plus the one-way delay and queueing, common to every point). A point is feasible when the
link carries its stream with headroom (``payload * 8 * fps * HEADROOM <= capacity``) and the
device keeps up with the frame rate. The controller picks the feasible point with the least
predicted latency, leaves a point at once when the link is congested (the queue says so),
switches to a better one only after ``DWELL_S`` and for a clear gain (hysteresis), and probes
a rung up when the capacity it knows is only a lower bound (nothing queued: the link carried
all we sent, and perhaps more): a train of a few frames of the rung, kept only when their
replies show no queueing on the path, so a probe that fails costs those few frames.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TICK_S = 0.1             # one observation and one decision every tick
RATE_TAU_S = 0.5         # delivery/send rate EWMA time constant
RTT_TAU_S = 2.0          # round-trip EWMA time constant
COST_TAU_FRAMES = 30.0   # device/server time EWMA, in samples (about 1 s at 30 fps)
HEADROOM = 1.3           # a point's stream must fit capacity / HEADROOM
DEVICE_SHARE = 0.8       # head + encode must fit this share of the frame period
CONGESTED_MS = 120.0     # send-queue delay (bufferedAmount / link rate) that means congestion ...
CONGESTED_TICKS = 3      # ... held this many ticks in a row (a receiver's stall of a tick or two is not the link)
PATH_TICKS = 2           # every reply over its network floor by CONGESTED_MS / 2 this many ticks: the path queues
DWELL_S = 2.0            # least time on a point before an improvement switch
GAIN = 0.15              # an improvement must predict this much less latency ...
GAIN_MS = 0.5            # ... and at least this many ms
PROBE_WAIT_S = 0.2       # under-used time before a probe train (a rise is taken within about 1 s)
PROBE_FRAMES = 6         # a probe is a train of this many frames of the rung, then back
PROBE_JUDGE_S = 0.05     # after the train's frames went out, their replies must be in by then (the next tick)
PROBE_EXCESS_MS = 5.0    # a train fails if a reply's network time exceeds its floor by more
PROBE_FACTOR = 2.0       # a rung is chosen if faster at 2, 4, 8 or 16 times the capacity known
PROBE_QUEUE_FRAMES = 2.0  # a train fails if the send queue grows by more than this many rung frames
PROBE_BAN_S = 1.0        # a rung that congested the link is not probed for this long ...
PROBE_BAN_RECENT_S = 5.0  # ... doubled when it congested within this of being kept by a probe ...
PROBE_BAN_MAX_S = 4.0    # ... up to this
PROBE_JUDGE_MAX_S = 0.3  # a train frame still unanswered this long after the train's judging: failed
TRAIN_GUARD_MS = 4.0     # a train frame is judged this long before the next frame is due (its head reads the choice)
NET_FLOOR_TAU_S = 5.0    # the network-time floor rises this slowly (falls at once)
RTT_NEAR = 2.0           # under-used: the newest RTT at most this times its floor ...
RTT_SLACK_MS = 25.0      # ... plus this (a shared CPU jitters by that much)
WARMUP_S = 1.0           # no congestion verdict before the rates have this much history
PRIOR_BPS = 10e6         # capacity assumed before anything is measured
SERVER_PRIOR_MS = 1.0    # a split's server time before its first reply, when no MACs are known


@dataclass(frozen=True)
class Point:
    """One operating point (from ``models/operating_points.json``)."""

    split: str
    codec: str
    head: str             # "float32" or "int8"
    payload_bytes: float  # mean bytes a frame on the channel
    top1: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.split}/{self.codec}/{self.head}"

    def bps(self, fps: float) -> float:
        return self.payload_bytes * 8.0 * fps


@dataclass(frozen=True)
class Observation:
    """What the stream saw during one tick ending at ``t`` (seconds, monotonic).

    ``sent_bytes``/``delivered_bytes``: frame bytes handed to the channel / settled by the
    receiver (reply, drop or error) in the tick; ``queued_bytes``: frame bytes sent and not
    yet settled at ``t`` (the channel's bufferedAmount is part of them); ``rtt_ms``: the
    newest ping round trip, if one came; ``net_ms``/``net_min_ms``: the greatest / least
    network time of the frames answered in the tick (capture-to-reply latency less the
    sender's own time to the channel and the receiver's ``total_ms``: queueing anywhere on
    the path, the tbf's included, shows there even while our send queue is empty; None: no
    reply); ``device_ms``: head+encode samples per
    ``split/head`` and ``encode_ms`` per ``split/codec``; ``server_ms``: receiver ``total_ms``
    per split; ``backpressure``: frames dropped because the channel was full;
    ``buffered_bytes``: the data channel's ``bufferedAmount`` at ``t``, the bytes still waiting
    for the link in the sender's own SCTP queue (None: not measured, ``queued_bytes`` stands in).
    Bytes leaving that queue per second are what the link carries; bytes waiting for a reply
    beyond it are the receiver's time, which ``server_ms`` measures, not the link's."""

    t: float
    sent_bytes: int = 0
    delivered_bytes: int = 0
    queued_bytes: int = 0
    rtt_ms: float | None = None
    device_ms: Mapping[str, float] = field(default_factory=dict)
    encode_ms: Mapping[str, float] = field(default_factory=dict)
    server_ms: Mapping[str, float] = field(default_factory=dict)
    backpressure: int = 0
    buffered_bytes: int | None = None
    net_ms: float | None = None
    net_min_ms: float | None = None


def _ewma(old: float | None, x: float, alpha: float) -> float:
    return x if old is None else old + alpha * (x - old)


class Estimates:
    """The live estimates: link (delivery rate, capacity, RTT, queue) and costs per point."""

    def __init__(self, device_ms: Mapping[str, float], encode_ms: Mapping[str, float],
                 server_ms: Mapping[str, float] | None = None, refresh_device: bool = True,
                 tail_macs: Mapping[str, float] | None = None, head_macs: Mapping[str, float] | None = None) -> None:
        self.device_ms: dict[str, float] = dict(device_ms)   # "split/head" -> ms
        self.encode_ms: dict[str, float] = dict(encode_ms)   # "split/codec" -> ms
        self.server_ms: dict[str, float] = dict(server_ms or {})
        self.refresh_device = refresh_device
        self.tail_macs = dict(tail_macs or {})  # split -> MACs of its tail (the manifest)
        self.head_macs = dict(head_macs or {})  # split -> MACs of its head
        self.delivered_bps = 0.0      # frame bytes settled by replies: a figure, not used to decide
        self.sent_bps = 0.0
        self.drain_bps = 0.0          # bytes leaving the send queue (bufferedAmount drain), every tick
        self.link_bps: float | None = None  # the same over backlogged ticks only: what the link carries
        self.buffered_bytes = 0
        self.over_ticks = 0           # consecutive ticks with the send queue beyond CONGESTED_MS
        self.grow_ticks = 0           # consecutive ticks the send queue grew beyond CONGESTED_MS / 2
        self.path_ticks = 0           # consecutive reply ticks whose every reply queued CONGESTED_MS / 2 on the path
        self.capacity_bps = PRIOR_BPS
        self.capacity_known = False   # measured under congestion (a ceiling), not a prior or floor
        self.rtt_ms: float | None = None
        self.queued_bytes = 0
        self.queue_ms = 0.0
        self.congested = False
        self.underused = False        # no send queue, RTT near its floor: capacity is only a floor
        self.rtt_floor_ms: float | None = None
        self.rtt_last_ms: float | None = None  # the newest sample: queue drained or not, it says so now
        self.net_floor_ms: float | None = None  # least network time of a reply (rises slowly)
        self.net_excess_ms: float | None = None  # this tick's greatest network time over that floor
        self.net_queue_ms: float | None = None   # this tick's least over it: the path holds a queue
        self._rtt_t: float | None = None
        self.t: float | None = None
        self.t0: float | None = None

    def update(self, o: Observation) -> None:
        dt = TICK_S if self.t is None else max(1e-3, o.t - self.t)
        self.t = o.t
        self.t0 = o.t if self.t0 is None else self.t0
        a = 1.0 - math.exp(-dt / RATE_TAU_S)
        self.delivered_bps = _ewma(self.delivered_bps, o.delivered_bytes * 8.0 / dt, a)
        self.sent_bps = _ewma(self.sent_bps, o.sent_bytes * 8.0 / dt, a)
        if o.rtt_ms is not None and o.rtt_ms >= 0:
            # pings come every 0.5 s, not every tick: the weight is the time since the last one
            since = dt if self._rtt_t is None else max(dt, o.t - self._rtt_t)
            self.rtt_ms = _ewma(self.rtt_ms, o.rtt_ms, 1.0 - math.exp(-since / RTT_TAU_S))
            self.rtt_last_ms, self._rtt_t = o.rtt_ms, o.t
            self.rtt_floor_ms = o.rtt_ms if self.rtt_floor_ms is None else min(self.rtt_floor_ms, o.rtt_ms)
        b = 1.0 / COST_TAU_FRAMES
        if self.refresh_device:
            for k, v in o.device_ms.items():
                self.device_ms[k] = _ewma(self.device_ms.get(k), v, b)
            for k, v in o.encode_ms.items():
                self.encode_ms[k] = _ewma(self.encode_ms.get(k), v, b)
        for k, v in o.server_ms.items():
            self.server_ms[k] = _ewma(self.server_ms.get(k), v, b)
        self.queued_bytes = o.queued_bytes
        # The path: a reply's network time over its floor is queueing somewhere between us
        # and the receiver (our send queue or the link's), seen even when ours is empty.
        if o.net_min_ms is not None:
            lo = o.net_min_ms
            f = self.net_floor_ms
            self.net_floor_ms = lo if f is None or lo < f else f + (lo - f) * (1.0 - math.exp(-dt / NET_FLOOR_TAU_S))
        self.net_excess_ms = (o.net_ms - self.net_floor_ms
                              if o.net_ms is not None and self.net_floor_ms is not None else None)
        self.net_queue_ms = (o.net_min_ms - self.net_floor_ms
                             if o.net_min_ms is not None and self.net_floor_ms is not None else None)
        # The link: bytes that left our send queue this tick. Over a tick that began with a
        # backlog the link (or SCTP's window over it) was the limit, so that rate is what it
        # carries; otherwise it is only what we offered. Frames past the send queue wait for
        # the receiver, whose time the replies measure (``server_ms``): not the link's.
        buffered = o.queued_bytes if o.buffered_bytes is None else o.buffered_bytes
        drained = max(0, o.sent_bytes + self.buffered_bytes - buffered) * 8.0 / dt
        grew = buffered > self.buffered_bytes
        self.drain_bps = _ewma(self.drain_bps, drained, a)
        if self.buffered_bytes > 0 and buffered > 0:
            self.link_bps = _ewma(self.link_bps, drained, a)
        self.buffered_bytes = buffered
        rate = max(self.link_bps or 0.0, self.drain_bps, 1e3) if buffered else max(self.drain_bps, 1e3)
        self.queue_ms = buffered * 8.0 / rate * 1000.0
        warm = o.t - self.t0 >= WARMUP_S
        self.over_ticks = self.over_ticks + 1 if warm and self.queue_ms > CONGESTED_MS else 0
        # a queue that grows tick after tick is congestion before it is long (a step down)
        self.grow_ticks = self.grow_ticks + 1 if warm and grew and self.queue_ms > CONGESTED_MS / 2 else 0
        # the path's own queue (a link buffer SCTP fills before ours): every reply of the tick late
        if self.net_queue_ms is not None:
            self.path_ticks = self.path_ticks + 1 if warm and self.net_queue_ms > CONGESTED_MS / 2 else 0
        queue = self.over_ticks >= CONGESTED_TICKS or self.grow_ticks >= CONGESTED_TICKS or o.backpressure > 0
        self.congested = warm and (queue or self.path_ticks >= PATH_TICKS)
        if self.congested:
            # The link is the bottleneck: what leaves the queue is what it carries; when only
            # the path queues, our queue drains at what we offer, and the replies come back at
            # what the link carries.
            carried = self.link_bps if self.link_bps is not None else self.drain_bps
            self.capacity_bps = max(carried if queue else min(carried, self.delivered_bps), 1e3)
            self.capacity_known = True
        elif self.drain_bps > self.capacity_bps:
            self.capacity_bps = self.drain_bps  # it carried more than we thought: a floor
        # Under-use needs no rate history: the replies' network times say it from the first
        # one on (a probe's train is judged by them), so a start on a point below the link's
        # (the device's speed said the late split) is left within a fraction of a second
        self.underused = ((warm or self.net_floor_ms is not None) and not self.congested and self.over_ticks == 0
                          and self.queue_ms <= CONGESTED_MS / 2 and not self.rtt_raised()
                          and (self.net_queue_ms is None or self.net_queue_ms <= PROBE_EXCESS_MS))

    def rtt_raised(self) -> bool:
        """The newest ping RTT is well above its floor (a queue somewhere on the path). The
        newest sample, not the EWMA: after a congested phase the average would hold the old
        queue for seconds after the queue itself has gone."""
        return (self.rtt_last_ms is not None and self.rtt_floor_ms is not None
                and self.rtt_last_ms > self.rtt_floor_ms * RTT_NEAR + RTT_SLACK_MS)

    def predict_ms(self, p: Point) -> float:
        """Predicted capture-to-reply latency of ``p`` (without the one-way delay)."""
        return (self.device_ms.get(f"{p.split}/{p.head}", 0.0) + self.encode_ms.get(f"{p.split}/{p.codec}", 0.0)
                + p.payload_bytes * 8.0 / self.capacity_bps * 1000.0
                + self.server_time(p.split))

    def server_time(self, split: str) -> float:
        """Measured, or until a split has replies: its tail's MACs at the speed the receiver
        showed on other splits (at the device's float32 speed before any reply)."""
        if split in self.server_ms:
            return self.server_ms[split]
        macs = self.tail_macs.get(split)
        if macs is None:
            return SERVER_PRIOR_MS
        seen = [(ms, self.tail_macs[k]) for k, ms in self.server_ms.items() if self.tail_macs.get(k)]
        if seen:
            return macs * sum(ms for ms, _ in seen) / sum(m for _, m in seen)
        dev = [(self.device_ms[f"{k}/float32"], m) for k, m in self.head_macs.items()
               if m and f"{k}/float32" in self.device_ms]
        return macs * sum(ms for ms, _ in dev) / sum(m for _, m in dev) if dev else SERVER_PRIOR_MS

    def device_fits(self, p: Point, fps: float) -> bool:
        return (self.device_ms.get(f"{p.split}/{p.head}", 0.0)
                + self.encode_ms.get(f"{p.split}/{p.codec}", 0.0)) <= DEVICE_SHARE * 1000.0 / fps

    def link_fits(self, p: Point, fps: float, capacity_bps: float | None = None) -> bool:
        return p.bps(fps) * HEADROOM <= (capacity_bps if capacity_bps is not None else self.capacity_bps)

    def as_dict(self) -> dict[str, float | bool | None]:
        return {"delivered_kbps": round(self.delivered_bps / 1e3, 1), "drain_kbps": round(self.drain_bps / 1e3, 1),
                "link_kbps": round(self.link_bps / 1e3, 1) if self.link_bps is not None else None,
                "capacity_kbps": round(self.capacity_bps / 1e3, 1), "buffered_bytes": self.buffered_bytes,
                "capacity_known": self.capacity_known, "queue_ms": round(self.queue_ms, 1),
                "queued_bytes": self.queued_bytes, "congested": self.congested, "underused": self.underused,
                "rtt_ms": round(self.rtt_ms, 2) if self.rtt_ms is not None else None,
                "net_floor_ms": round(self.net_floor_ms, 2) if self.net_floor_ms is not None else None,
                "net_excess_ms": round(self.net_excess_ms, 2) if self.net_excess_ms is not None else None,
                "net_queue_ms": round(self.net_queue_ms, 2) if self.net_queue_ms is not None else None}


@dataclass(frozen=True)
class Switch:
    """A decision: from ``old`` to ``new`` at ``t``, ``why`` (``congested``, ``better``,
    ``probe``, ``probe_ok``, ``probe_failed``), with the estimates and predictions that caused it.

    ``frames`` 0: ``new`` from now on. Otherwise a probe train: the next ``frames`` frames use
    ``new``, then the point in use again (``Controller.current``, which a train leaves as it
    is); ``probe_failed`` is then a record (``new`` is that point already), ``probe_ok`` the
    switch to the rung."""

    t: float
    old: Point
    new: Point
    why: str
    estimates: dict
    predicted_ms: dict[str, float]
    frames: int = 0

    def as_dict(self) -> dict:
        return {"t": round(self.t, 3), "from": self.old.key, "to": self.new.key, "why": self.why,
                "frames": self.frames, "estimates": self.estimates, "predicted_ms": self.predicted_ms}


@dataclass
class Probe:
    """A probe train: ``rung`` tried from ``back`` at ``t``, with the queue and capacity before
    it; ``worst_ms``: the greatest network time over its floor since; ``answered``: a reply came."""

    t: float
    back: Point
    rung: Point
    buffered_bytes: int
    capacity_bps: float
    hypothesis_bps: float   # the capacity at which the rung was predicted faster
    worst_ms: float = 0.0
    answered: bool = False
    cut: bool = False       # a train frame came back late (``train_check``): its other frames were not sent


class Controller:
    """Chooses among ``points`` at ``fps``; ``observe(o)`` returns a ``Switch`` or None.

    ``current`` is the point the frames use. Down-switches (congestion) are immediate;
    ``better`` switches wait ``DWELL_S`` and need a clear gain. While the link is under-used
    the capacity known is only a lower bound, so after ``PROBE_WAIT_S`` of it the controller
    sends a train of ``PROBE_FRAMES`` frames of the next larger stream predicted faster at
    2..16 times that capacity, then the current point again, and judges the train by its
    replies: kept (``probe_ok``, the capacity it supposed taken as the floor until congestion
    measures a ceiling) when their network time stayed within ``PROBE_EXCESS_MS`` of its
    floor, our send queue did not grow and all of them were answered within
    ``PROBE_JUDGE_S``; else nothing changes (``probe_failed``). A failed train costs its few
    frames' queueing, so probes need no backoff; a rung kept that congests the link soon after
    is not probed again for ``ban_s`` (doubled each time, up to ``PROBE_BAN_MAX_S``)."""

    def __init__(self, points: Iterable[Point], fps: float, estimates: Estimates, start: Point | None = None) -> None:
        self.points = tuple(sorted(points, key=lambda p: (p.payload_bytes, p.key)))
        if not self.points:
            raise ValueError("no operating points to adapt between")
        self.fps, self.est = fps, estimates
        self.current = start or self._best(self.points)
        self.since = -math.inf        # when the current point was chosen
        self.calm_since: float | None = None  # under-used since
        self.probing: Probe | None = None
        self.kept_at = -math.inf      # when a probe's rung was last kept
        self.ban_bps = math.inf       # rungs of this stream rate and more are not probed ...
        self.ban_until = -math.inf    # ... until then (a rung kept congested the link)
        self.ban_s = PROBE_BAN_S
        self.congested_bps = 0.0      # the stream congestion moved us off: rungs below it cannot show a rise
        self.switches = 0

    def _best(self, pts: Iterable[Point]) -> Point:
        pts = list(pts)
        ok = [p for p in pts if self.est.device_fits(p, self.fps)] or pts
        fits = [p for p in ok if self.est.link_fits(p, self.fps)]
        if not fits:  # nothing fits the link: the lightest stream
            return min(ok, key=lambda p: (p.bps(self.fps), self.est.predict_ms(p)))
        return min(fits, key=lambda p: (self.est.predict_ms(p), p.payload_bytes))

    def observe(self, o: Observation) -> Switch | None:
        self.est.update(o)
        now, est, cur = o.t, self.est, self.current
        if self.probing is not None:
            return self._trial(now, o)
        if est.congested:
            self.calm_since = None
            if not est.link_fits(cur, self.fps):
                # congestion soon after a kept probe: that rung was wrong, and is banned longer each time
                self.ban_s = min(PROBE_BAN_MAX_S, self.ban_s * 2) if now - self.kept_at < PROBE_BAN_RECENT_S else PROBE_BAN_S
                self.ban_bps, self.ban_until = cur.bps(self.fps), now + self.ban_s
                self.congested_bps = cur.bps(self.fps)
                return self._switch(now, self._best(self.points), "congested")
            return None
        if not est.underused:
            self.calm_since = None
        else:
            self.calm_since = now if self.calm_since is None else self.calm_since
        if now - self.since >= DWELL_S:
            # a larger stream than the one in use is taken on a measured ceiling, or by a train:
            # a capacity that is only a floor (a prior, a probe's supposition) is not a licence
            pool = self.points if est.capacity_known else [p for p in self.points if p.bps(self.fps) <= cur.bps(self.fps)]
            best = self._best(pool)
            if best != cur and est.predict_ms(best) < est.predict_ms(cur) * (1 - GAIN) - GAIN_MS:
                return self._switch(now, best, "better")
        if self.calm_since is not None and now - max(self.calm_since, self.since) >= PROBE_WAIT_S - 1e-9:
            found = self._rung(cur, now)
            if found is not None:
                rung, hypothesis = found
                self.probing = Probe(now, cur, rung, est.buffered_bytes, est.capacity_bps, hypothesis)
                return self._record(now, cur, rung, "probe", PROBE_FRAMES)
        return None

    def train_check(self, net_ms: float) -> bool:
        """A train frame judged before the next frame is made (``sender.switching`` asks once
        per train frame, ``TRAIN_GUARD_MS`` before the next is due): ``net_ms`` is the greatest
        network time of the replies since the last tick, or, while the frame is unanswered, the
        least it can be (the time it has been out less the receiver's). Over its floor by
        ``PROBE_EXCESS_MS``: the path queues, the train has failed, and True says to send no
        more of its frames (the queue they would join is the latency the point in use pays
        next); the ``probe_failed`` record comes with the next tick. A tick judges a train
        only after its reply is in, up to a tick late: by then a train on a link below the
        rung has sent one or two more frames into the queue."""
        pr, floor = self.probing, self.est.net_floor_ms
        if pr is None or floor is None or pr.cut:
            return False
        excess = net_ms - floor
        if excess <= PROBE_EXCESS_MS:
            return False
        pr.worst_ms = max(pr.worst_ms, excess)
        pr.cut = True
        return True

    def _trial(self, now: float, o: Observation) -> Switch | None:
        """One tick of a probe train: fail at once on congestion, queueing on the path (a
        reply's network time over its floor), send-queue growth or RTT rise; once the train's
        frames were due back (``PROBE_JUDGE_S`` after the last one left), keep the rung if
        none of that happened and none of them is still unanswered."""
        pr, est = self.probing, self.est
        assert pr is not None
        if est.net_excess_ms is not None:
            pr.worst_ms = max(pr.worst_ms, est.net_excess_ms)
            pr.answered = True
        grew = est.buffered_bytes - pr.buffered_bytes > PROBE_QUEUE_FRAMES * pr.rung.payload_bytes
        failed = est.congested or grew or est.rtt_raised() or o.backpressure > 0 or pr.worst_ms > PROBE_EXCESS_MS
        if not failed:
            due = pr.t + PROBE_FRAMES / self.fps + PROBE_JUDGE_S
            if now < due - 1e-9:
                return None
            # due back: more in flight than a frame of the point in use is a train frame the
            # path still holds; its reply will tell (or its absence, by PROBE_JUDGE_MAX_S)
            held = not pr.answered or est.queued_bytes > 1.5 * pr.back.payload_bytes
            if held and now < due + PROBE_JUDGE_MAX_S - 1e-9:
                return None
            failed = held
        self.probing = None
        if failed:
            self.calm_since = None
            return self._record(now, pr.rung, pr.back, "probe_failed")
        self.kept_at = now
        self.congested_bps = 0.0
        # accepted until congestion says otherwise (which sets the ceiling again)
        est.capacity_bps = max(pr.capacity_bps, pr.hypothesis_bps, pr.rung.bps(self.fps) * HEADROOM)
        est.capacity_known = False  # carried without a queue: a floor, not the ceiling
        return self._switch(now, pr.rung, "probe_ok")

    def _rung(self, cur: Point, now: float) -> tuple[Point, float] | None:
        """The next rung up and the capacity it supposes: the least of 2, 4, 8 or 16 times the
        capacity known at which a larger, device-feasible stream (not banned; at least the one
        congestion last moved us off, if there is one) is predicted faster than ``cur``, and the fastest such
        point at that capacity."""
        limit = cur.bps(self.fps)
        banned = self.ban_bps if now < self.ban_until else math.inf
        up = [p for p in self.points if limit < p.bps(self.fps) < banned and self.est.device_fits(p, self.fps)]
        # after congestion moved us off a stream, only a rung at least that large shows that
        # the link rose: a train of a smaller one passes a link's bucket whether it rose or not
        # (the ceiling congestion measured is too rough to tell: SCTP's losses make it read low)
        if any(p.bps(self.fps) >= self.congested_bps and self.est.device_fits(p, self.fps) for p in self.points):
            up = [p for p in up if p.bps(self.fps) >= self.congested_bps]  # none while those are banned
        cap = self.est.capacity_bps
        try:
            for k in range(1, 5):
                # faster than ``cur`` at the same supposed capacity (``cur`` gains from it too):
                # a rung that only differs by a few bytes is never worth a probe
                self.est.capacity_bps = cap * PROBE_FACTOR ** k
                gain = self.est.predict_ms(cur) * (1 - GAIN) - GAIN_MS
                faster = [p for p in up if self.est.link_fits(p, self.fps) and self.est.predict_ms(p) < gain]
                if faster:
                    return min(faster, key=lambda p: (self.est.predict_ms(p), p.bps(self.fps))), self.est.capacity_bps
            return None
        finally:
            self.est.capacity_bps = cap

    def _record(self, now: float, old: Point, new: Point, why: str, frames: int = 0) -> Switch:
        """A probe's decision: ``current`` stays as it is."""
        pred = {p.key: round(self.est.predict_ms(p), 3) for p in {old, new}}
        self.switches += 1
        return Switch(now, old, new, why, self.est.as_dict(), pred, frames)

    def _switch(self, now: float, new: Point, why: str) -> Switch | None:
        if new == self.current:
            return None
        sw = self._record(now, self.current, new, why)
        self.current, self.since = new, now
        return sw


def pareto(points: Iterable[Point], device_ms: Mapping[str, float], encode_ms: Mapping[str, float]) -> list[Point]:
    """Drop points another beats on every count (payload, device time, accuracy) for the
    same split: they can never be the controller's best, and each held point costs a head."""
    pts = list(points)

    def dev(p: Point) -> float:
        return device_ms.get(f"{p.split}/{p.head}", 0.0) + encode_ms.get(f"{p.split}/{p.codec}", 0.0)
    out = []
    for p in pts:
        beaten = any(q is not p and q.split == p.split and q.payload_bytes <= p.payload_bytes and dev(q) <= dev(p)
                     and q.top1 >= p.top1 and (q.payload_bytes, dev(q), -q.top1) != (p.payload_bytes, dev(p), -p.top1)
                     for q in pts)
        if not beaten:
            out.append(p)
    return out
