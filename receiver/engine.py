"""The tail side's inference engine: every split's tail, run on one worker thread, in batches.

All tails run on a single worker thread: ONNX Runtime's CPU kernels already use the core
they get, and the event loop (which runs aiortc's pure-Python SCTP stack) needs the rest.
One thread also means each split's preallocated batch arrays are never used concurrently.

Batching (``submit``): frames of the same split that are ready together go to the worker
thread as one job, and a job is one ONNX Runtime call: its latents are copied into the first
rows of the split's ``(max_batch, ...)`` input array (``receiver.splits.TailRunner``) and the
tail, exported with a symbolic batch dimension, runs them all at once. Its logits are those
of single-frame calls (tests/unit/test_tail_batching.py checks it on every split).

When a job goes: frames decoded in the same loop turn always join (the dispatch runs on the
loop's next turn), and frames that arrive while the thread is busy gather and go as soon as
it is free, at most ``max_batch`` a job. Beyond that a batch waits for more frames only when
more are likely: its split has shown at least two frames in the engine together recently
(so at least two streams feed it, since each session has at most one frame in the engine)
and its frames arrive faster than one per ``GATHER_S``. It then goes once it holds as many
frames as the split has had together, or ``GATHER_S`` after its first frame, whichever is
first. A single stream therefore never waits: its next frame cannot come before its
current one's reply. Measured before batching: with small tails most of the tail thread's
time was the hand-off itself (~0.09 ms a frame for a ~9 us tail), which a batch pays once;
one call a batch now pays the ONNX Runtime call's fixed cost once too. That is what the small
tails gain (features: 6.9 us of tail CPU a frame alone, 0.6 us in a batch of 32); the
convolutional tails' cost is their per-frame compute, which batching leaves as it is
(``python -m bench.tailbatch`` prints the table).

A ``models/`` directory whose tails still have a fixed batch dimension of 1 keeps working:
its jobs run a loop of single-frame calls (``BatchStats.calls`` counts the calls).
Newest-frame-wins and per-frame accounting live in ``SenderSession``, unchanged; every
frame still gets its own ``TailResult``, with ``tail_ms`` its share of the batch's call.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from receiver.limits import MAX_BATCH
from receiver.splits import SplitTable, load_splits
from splitcore.runtime.models import Manifest

GATHER_S = 0.002    # longest the first frame of a batch waits for more frames of its split
WINDOW_S = 1.0      # how long "frames of this split were in the engine together" is remembered
GAP_WEIGHT = 0.125  # weight of the newest gap between a split's frames in its running mean


@dataclass(frozen=True, slots=True)
class TailResult:
    label: int
    logits: tuple[float, ...]
    probs: tuple[float, ...]   # empty when the caller asked for none (compact replies)
    tail_ms: float             # this frame's share of its batch's ONNX Runtime call
    started: float             # time.monotonic() when the job began


@dataclass
class _Job:
    latent: np.ndarray
    probs: bool
    future: asyncio.Future[TailResult]
    t: float   # loop.time() when submitted


@dataclass
class _Queue:
    """One split's frames waiting for the worker thread, and what says whether more are coming."""

    jobs: list[_Job] = field(default_factory=list)
    running: int = 0        # this split's frames in the job on the worker thread
    gap: float = math.inf   # running mean of the time between this split's frames (s)
    last: float = -math.inf
    seen: int = 1           # most of this split's frames in the engine together, this window
    before: int = 1         # ... and in the window before
    window_end: float = -math.inf

    def arrived(self, now: float) -> None:
        """Note a frame submitted at ``now`` (before it joins ``jobs``)."""
        if self.last > -math.inf:
            dt = min(now - self.last, WINDOW_S)
            self.gap = dt if self.gap == math.inf else self.gap + GAP_WEIGHT * (dt - self.gap)
        self.last = now
        if now >= self.window_end:
            self.before = self.seen if now < self.window_end + WINDOW_S else 1
            self.seen, self.window_end = 1, now + WINDOW_S
        self.seen = max(self.seen, len(self.jobs) + self.running + 1)

    def due(self, max_batch: int) -> float:
        """When the waiting frames should go: the first one's arrival (now, that is), or up
        to GATHER_S later while more frames are likely."""
        first = self.jobs[0].t
        together = min(max(self.seen, self.before), max_batch)
        return first + GATHER_S if len(self.jobs) < together and self.gap < GATHER_S else first


@dataclass
class BatchStats:
    """Jobs and frames so far: frames / jobs is the mean batch; calls counts ONNX Runtime
    calls (one a job, or one a frame for a tail with a fixed batch of 1)."""

    jobs: int = 0
    frames: int = 0
    largest: int = 0
    calls: int = 0


class TailEngine:
    def __init__(self, manifest: Manifest, threads: int = 1, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.manifest = manifest
        # Loaded once, at start-up: a wrong file stops the receiver before anyone connects.
        self.splits = SplitTable(load_splits(manifest, threads, max_batch))
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        self._queues: dict[str, _Queue] = {}
        self._busy = False   # a job is on the worker thread (only touched on the loop)
        self._soon = False   # a dispatch is scheduled for the loop's next turn
        self._timer: asyncio.TimerHandle | None = None  # a dispatch at a batch's gather deadline

    # ------------------------------------------------------------------------- the worker thread

    def _run_batch(self, split_id: str, frames: Sequence[tuple[np.ndarray, bool]]) -> list[TailResult | BaseException]:
        """Copy the latents into the split's batch rows and run them in one call."""
        runner = self.splits[split_id].runner
        started = time.monotonic()
        out: list[TailResult | BaseException] = [RuntimeError("not run")] * len(frames)
        rows: list[int] = []   # frame index of each row
        for k, (latent, _) in enumerate(frames):
            if latent.shape != (1, *runner.input.shape[1:]):
                # one frame's failure is that frame's, not its batch's
                out[k] = ValueError(f"latent of shape {latent.shape} for split {split_id}, "
                                    f"which takes {[1, *runner.input.shape[1:]]}")
                continue
            runner.input[len(rows)] = latent[0]
            rows.append(k)
        if not rows:
            return out
        t0 = time.monotonic()
        try:
            logits = runner.run(len(rows))
        except Exception as exc:
            for k in rows:
                out[k] = exc
            return out
        share = (time.monotonic() - t0) * 1000 / len(rows)
        for r, k in enumerate(rows):
            out[k] = _result(logits[r], frames[k][1], share, started)
        return out

    def _infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        (r,) = self._run_batch(split_id, [(latent, True)])
        if isinstance(r, BaseException):
            raise r
        return r

    async def infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        """One frame on its own job (no batching): what ``submit`` is checked against."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._infer, split_id, latent)

    # ------------------------------------------------------------------------- batches

    def submit(self, split_id: str, latent: np.ndarray, probs: bool = True) -> asyncio.Future[TailResult]:
        """Queue ``latent`` (read on the worker thread: keep it untouched until the future is
        done) for the next job of its split; the future gets its result."""
        loop = asyncio.get_running_loop()
        q = self._queues.get(split_id)
        if q is None:
            q = self._queues[split_id] = _Queue()
        now = loop.time()
        q.arrived(now)
        fut: asyncio.Future[TailResult] = loop.create_future()
        q.jobs.append(_Job(latent, probs, fut, now))
        if not self._busy and not self._soon:
            self._soon = True
            loop.call_soon(self._dispatch)
        return fut

    def _dispatch(self) -> None:
        """Send the split whose batch is due, oldest first frame first, to the worker thread
        (at most ``max_batch`` frames); if none is due yet, come back at the first deadline.
        Called on the loop whenever a frame arrives or the thread becomes free."""
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        pick: tuple[str, _Queue] | None = None
        wake = math.inf
        for sid, q in self._queues.items():
            if any(j.future.done() for j in q.jobs):  # cancelled: its session closed
                q.jobs[:] = [j for j in q.jobs if not j.future.done()]
            if not q.jobs:
                continue
            due = q.due(self.max_batch)
            if due > now:
                wake = min(wake, due)
            elif pick is None or q.jobs[0].t < pick[1].jobs[0].t:
                pick = sid, q
        if pick is None:
            if wake < math.inf:
                self._timer = loop.call_at(wake, self._dispatch)
            return
        split_id, q = pick
        jobs = q.jobs[:self.max_batch]
        del q.jobs[:self.max_batch]
        self._busy = True
        q.running = len(jobs)
        self.stats.jobs += 1
        self.stats.frames += len(jobs)
        self.stats.largest = max(self.stats.largest, len(jobs))
        self.stats.calls += self.splits[split_id].runner.calls(len(jobs))
        try:
            work = loop.run_in_executor(self._pool, self._run_batch, split_id, [(j.latent, j.probs) for j in jobs])
        except RuntimeError as exc:  # closed: the sessions are being closed too
            self._busy = False
            q.running = 0
            for j in jobs:
                j.future.set_exception(exc)
            return
        work.add_done_callback(lambda f: self._finished(f, q, jobs))

    def _finished(self, work: asyncio.Future[list[TailResult | BaseException]], q: _Queue, jobs: list[_Job]) -> None:
        self._busy = False
        q.running = 0
        if work.cancelled():
            results: list[TailResult | BaseException] = [RuntimeError("tail engine closed")] * len(jobs)
        elif work.exception() is not None:
            results = [work.exception() or RuntimeError("tail job failed")] * len(jobs)
        else:
            results = work.result()
        for j, r in zip(jobs, results, strict=True):
            if j.future.done():
                continue
            if isinstance(r, BaseException):
                j.future.set_exception(r)
            else:
                j.future.set_result(r)
        if any(other.jobs for other in self._queues.values()):
            self._dispatch()

    @property
    def queued(self) -> int:
        """Frames waiting for the worker thread, all splits: part of the receiver's load report."""
        return sum(len(q.jobs) for q in self._queues.values())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool.shutdown(wait=True, cancel_futures=True)


def _result(logits: np.ndarray, probs: bool, tail_ms: float, started: float) -> TailResult:
    """One frame's reply values from its row of logits (copied out: the row is reused)."""
    p: tuple[float, ...] = ()
    if probs:
        z = logits.astype(np.float64)
        e = np.exp(z - z.max())
        e /= e.sum()
        p = tuple(round(float(v), 6) for v in e)
    return TailResult(int(logits.argmax()), tuple(logits.tolist()), p, tail_ms, started)
