"""``--split adaptive`` at run time: the held heads, the tick that feeds the controller, switches.

``sender.adaptive`` decides (pure logic); this module gives it what the stream measured each
``TICK_S`` (bytes sent and settled from the ledger, the data channel's ``bufferedAmount``:
the send queue whose drain is the link's rate, the newest RTT, head, encode and receiver
times) and applies what it decides: the pipeline's ``choice`` is replaced in one assignment,
read once per frame before its head runs, so every frame is made and labelled by one point
and a switch loses nothing. A probe's train is the rung for its frames, each judged just
before the next one is made (``Controller.train_check``): on a link below the rung the first
late reply ends it there, a tick before the controller's verdict. Every switch is logged with
its estimates, counted, and kept (the last ``KEEP_SWITCHES``) for the ``--json`` summary; the
stats app dict carries the point in use.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitcore.process.cli import logger
from splitcore.runtime.models import Manifest
from splitcore.runtime.operating import OperatingPoints, _portable

from .adaptive import TICK_S, TRAIN_GUARD_MS, Controller, Estimates, Observation, Point, Switch, pareto
from .ledger import Ledger
from .pipeline import Choice, Encoded, Pipeline
from .profile import Profile, profile

if TYPE_CHECKING:
    from .stream import SenderStream

log = logger("sender.switching")
KEEP_SWITCHES = 1000
QUEUE_TARGET_S = 0.15   # backpressure limit: this much of the estimated capacity ...
MIN_FRAMES_BUFFERED = 2  # ... but never under two frames of the point in use


class Adaptive:
    """Runs ``controller`` on one stream; ``choice`` is the point the next frame uses."""

    def __init__(self, points: list[Point], prof: Profile, fps: float, refresh_device: bool = True,
                 manifest: Manifest | None = None) -> None:
        self.profile = prof
        splits = manifest.splits.values() if manifest is not None else ()
        est = Estimates(prof.device_ms, prof.encode_ms, refresh_device=refresh_device,
                        tail_macs={s.id: s.tail.macs for s in splits}, head_macs={s.id: s.head.macs for s in splits})
        self.controller = Controller(points, fps, est)
        self.choices = {p: Choice(p.split, prof.codecs[f"{p.split}/{p.codec}"], p.head,
                                  prof.heads[f"{p.split}/{p.head}"]) for p in self.controller.points}
        self.history: deque[dict[str, Any]] = deque(maxlen=KEEP_SWITCHES)
        self.started = time.time()
        self._dev: dict[str, list[float]] = {}
        self._enc: dict[str, list[float]] = {}
        self._sent = 0
        self._marks = (0, 0)  # settled bytes, backpressure drops at the last tick
        self._rtt_seen = 0
        self._pipeline: Pipeline | None = None
        self._ledger: Ledger | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._train: tuple[tuple[str, str, str], int] | None = None  # a probe train: its point, frames left

    @property
    def point(self) -> Point:
        return self.controller.current

    @property
    def choice(self) -> Choice:
        return self.choices[self.controller.current]

    def on_encoded(self, frame: Encoded) -> None:
        """A frame went out: its head and encode times refresh the profile; the last frame of
        a probe train hands the pipeline back to the point in use, the others are judged
        just before the next frame is made (``_judge_train``)."""
        self._sent += sum(len(m) for m in frame.messages)
        train = self._train
        if train is not None and train[0] == (frame.split, frame.codec, frame.head):
            left = train[1] - 1
            rest = self._train = (train[0], left) if left > 0 else None
            if rest is None:
                if self._pipeline is not None:
                    self._pipeline.choice = self.choice
            elif self._loop is not None:
                due = frame.capture_ms + 1000.0 / self.controller.fps - TRAIN_GUARD_MS
                self._loop.call_later(max(0.0, due / 1000.0 - time.monotonic()), self._judge_train,
                                      frame.seq & 0xFFFFFFFF, frame.split)
        for acc, key, ms in ((self._dev, f"{frame.split}/{frame.head}", frame.head_ms),
                             (self._enc, f"{frame.split}/{frame.codec}", frame.encode_ms)):
            a = acc.setdefault(key, [0.0, 0.0])
            a[0] += ms
            a[1] += 1

    def _judge_train(self, seq: int, split: str) -> None:
        """A train frame, just before the next frame reads the choice: its reply (the
        greatest network time since the last tick), or while it is unanswered the least its
        network time can be, to the controller; a late one ends the train here, a tick
        earlier than the controller's verdict (``Controller.train_check``)."""
        led = self._ledger
        if self._train is None or led is None:  # the train ended since (a tick's verdict)
            return
        entry = led.in_flight.get(seq)
        if entry is not None:
            net = time.monotonic() * 1000.0 - entry.sent_ms - self.controller.est.server_time(split)
        elif led.net_hi_ms >= led.net_lo_ms:
            net = led.net_hi_ms
        else:
            return  # answered and already read by a tick: the controller has judged it
        if self.controller.train_check(net):
            self._train = None
            if self._pipeline is not None:
                self._pipeline.choice = self.choice

    def observe(self, stream: SenderStream, now: float) -> Switch | None:
        """One tick: what the stream measured since the last one, to the controller."""
        led = self._ledger = stream.ledger
        settled, bp = led.settled_bytes, led.dropped_sender["backpressure"]
        rtt = None
        if led.rtt.seen > self._rtt_seen:
            rtt = led.rtt.last
            self._rtt_seen = led.rtt.seen
        server = {k: v[0] / v[1] for k, v in led.server_ms.items() if v[1]}
        led.server_ms.clear()
        link = stream.link
        net = (led.net_lo_ms, led.net_hi_ms) if led.net_hi_ms >= led.net_lo_ms else (None, None)
        led.net_lo_ms, led.net_hi_ms = math.inf, -math.inf
        o = Observation(now, self._sent, settled - self._marks[0], led.in_flight_bytes, rtt,
                        {k: v[0] / v[1] for k, v in self._dev.items()}, {k: v[0] / v[1] for k, v in self._enc.items()},
                        server, bp - self._marks[1],
                        buffered_bytes=link.channel.bufferedAmount if link is not None else 0,
                        net_ms=net[1], net_min_ms=net[0])
        self._sent, self._marks = 0, (settled, bp)
        self._dev.clear()
        self._enc.clear()
        sw = self.controller.observe(o)
        cur, est = self.controller.current, self.controller.est
        stream.opts.max_buffered = int(max(MIN_FRAMES_BUFFERED * cur.payload_bytes, est.capacity_bps / 8 * QUEUE_TARGET_S))
        if sw is not None:
            # a train: the rung for its frames (``on_encoded`` counts them), then ``current`` again
            stream.pipeline.choice = self.choices[sw.new]
            self._train = ((sw.new.split, sw.new.codec, sw.new.head), sw.frames) if sw.frames else None
            record = {**sw.as_dict(), "wall": round(time.time(), 3), "after_frame": led.sent}
            self.history.append(record)
            # trains come every fraction of a second while a link stays below the next rung: not warnings
            level = logging.INFO if sw.why in ("probe", "probe_failed") else logging.WARNING
            log.log(level, "switch %s -> %s (%s%s): capacity %.0f kbit/s%s, delivered %.0f kbit/s, queue %.0f ms, "
                    "path queueing %s ms, predicted %s, receiver %s", sw.old.key, sw.new.key, sw.why,
                    f", {sw.frames} frames" if sw.frames else "", est.capacity_bps / 1e3,
                    "" if est.capacity_known else " (not yet a ceiling)", est.delivered_bps / 1e3, est.queue_ms,
                    None if est.net_excess_ms is None else round(est.net_excess_ms, 1), sw.predicted_ms,
                    link.receiver_id if link is not None else "-")
        return sw

    async def run(self, stream: SenderStream) -> None:
        """Tick until cancelled (the stream's run ends)."""
        stream.pipeline.choice = self.choice
        stream.pipeline.on_encoded = self.on_encoded
        self._pipeline, self._ledger = stream.pipeline, stream.ledger
        self._loop = loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            next_t += TICK_S
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            self.observe(stream, time.monotonic())

    def app_stats(self) -> dict[str, Any]:
        p = self.controller.current
        return {"split": p.split, "codec": p.codec, "head": p.head, "operating_point": p.key,
                "switches": self.controller.switches, "adaptive": self.controller.est.as_dict()}

    def summary(self) -> dict[str, Any]:
        return {"switches": self.controller.switches, "switch_log": list(self.history),
                "final_point": self.controller.current.key, "candidates": [p.key for p in self.controller.points],
                "profile": self.profile.as_dict(), "estimates": self.controller.est.as_dict()}


def build(manifest: Manifest, points_file: str | Path | None, max_drop: float, fps: float, *,
          int8_head: bool | None = None, portable: bool = True, threads: int = 1,
          device_profile: str | Path | None = None, max_ssim: float | None = None) -> Adaptive:
    """The candidates ``--max-drop`` allows (``models/operating_points.json``), every head they
    use loaded and profiled here, the points no candidate can beat dropped (``pareto``).

    ``device_profile``: a JSON file from ``python -m sender.profile`` run on the target device;
    its times replace this machine's and are not refreshed from the stream (for planning a
    deployment, or to run a slower device's policy on a faster machine)."""
    ops = OperatingPoints.load(points_file or manifest.path.parent / "operating_points.json")
    floor = ops.full_top1 - max_drop / 100.0
    pts = [Point(o.split, o.codec, o.head, o.payload_bytes, o.top1) for o in ops.points
           if o.split in manifest.splits and o.top1 >= floor - 1e-12
           and (int8_head is None or (o.head == "int8") == int8_head)
           and (not portable or _portable(o.codec)) and o.private(max_ssim)]
    if not pts:
        leak = f" with attack SSIM <= {max_ssim}" if max_ssim is not None else ""
        raise ValueError(f"no operating point within {max_drop} points of the full model's "
                         f"{ops.full_top1 * 100:.2f}%{leak}")
    prof = profile(manifest, pts, threads)
    if device_profile is not None:
        try:
            given = json.loads(Path(device_profile).read_text())
            prof.device_ms.update({k: float(v) for k, v in given["device_ms"].items()})
            prof.encode_ms.update({k: float(v) for k, v in given.get("encode_ms", {}).items()})
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{device_profile} is not a device profile (python -m sender.profile): {exc}") from None
    kept = pareto(pts, prof.device_ms, prof.encode_ms)
    log.info("adaptive: %d of %d operating points kept (the rest are beaten on bytes, device time and accuracy)",
             len(kept), len(pts))
    return Adaptive(kept, prof, fps, refresh_device=device_profile is None, manifest=manifest)
