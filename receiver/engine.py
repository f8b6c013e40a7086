"""The tail side's inference engine: every split's tail, run on one worker thread, in batches.

All tails run on a single worker thread: ONNX Runtime's CPU kernels already use the core
they get, and the event loop (which runs aiortc's pure-Python SCTP stack) needs the rest.
One thread also means each session's preallocated buffers are never used concurrently.

Batching (``submit``): frames of the same split that are ready together go to the worker
thread as one job. A split's first frame is dispatched on the loop's next turn (so frames
decoded in the same turn join it); frames that arrive while the thread is busy gather and
go together as soon as it is free, at most ``max_batch`` a job. The wait is therefore
bounded by one job's duration, and nothing is added when the receiver is idle. Measured
before batching: with small tails most of the tail thread's time was the hand-off itself
(~0.09 ms a frame for a ~9 us tail), which a batch pays once.

The exported tails (``models/*.tail.onnx``) have a fixed batch dimension of 1, and the
``onnx`` package that could rewrite them is not a run-time dependency: a batch runs as a
loop of single-frame ONNX Runtime calls inside the one job, so its logits are bit for bit
those of unbatched calls. Each session still has at most one frame in the engine
(newest-frame-wins and per-frame accounting live in ``SenderSession``, unchanged).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from receiver.splits import SplitTable, load_splits
from splitcore.runtime.models import Manifest

MAX_BATCH = 32   # frames of one split in one job


@dataclass(frozen=True, slots=True)
class TailResult:
    label: int
    logits: tuple[float, ...]
    probs: tuple[float, ...]   # empty when the caller asked for none (compact replies)
    tail_ms: float             # this frame's share of the job: its own ONNX Runtime call
    started: float             # time.monotonic() when the job began


@dataclass
class _Job:
    latent: np.ndarray
    probs: bool
    future: asyncio.Future[TailResult]


@dataclass
class _Queue:
    """One split's frames waiting for the worker thread, and whether a job of it is out."""

    jobs: list[_Job] = field(default_factory=list)
    scheduled: bool = False


@dataclass
class BatchStats:
    """Jobs and frames so far: frames / jobs is the mean batch."""

    jobs: int = 0
    frames: int = 0
    largest: int = 0


class TailEngine:
    def __init__(self, manifest: Manifest, threads: int = 1, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.manifest = manifest
        # Loaded once, at start-up: a wrong file stops the receiver before anyone connects.
        self.splits = SplitTable(load_splits(manifest, threads))
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        self._queues: dict[str, _Queue] = {}
        self._busy = False   # a job is on the worker thread (only touched on the loop)

    # ------------------------------------------------------------------------- one frame

    def _one(self, split_id: str, latent: np.ndarray, probs: bool, started: float) -> TailResult:
        t0 = time.monotonic()
        logits = self.splits[split_id].runner.run(latent)[0]
        tail_ms = (time.monotonic() - t0) * 1000
        p: tuple[float, ...] = ()
        if probs:
            z = logits.astype(np.float64)
            e = np.exp(z - z.max())
            e /= e.sum()
            p = tuple(round(float(v), 6) for v in e)
        return TailResult(int(logits.argmax()), tuple(logits.tolist()), p, tail_ms, started)

    def _infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        return self._one(split_id, latent, True, time.monotonic())

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
        fut: asyncio.Future[TailResult] = loop.create_future()
        q.jobs.append(_Job(latent, probs, fut))
        if not self._busy and not q.scheduled:
            q.scheduled = True
            loop.call_soon(self._dispatch)
        return fut

    def _dispatch(self) -> None:
        """Send the split with the most waiting frames to the worker thread (at most
        ``max_batch`` of them); called on the loop when the thread is free."""
        for q in self._queues.values():
            q.scheduled = False
        if self._busy:
            return
        split_id, q = max(self._queues.items(), key=lambda kv: len(kv[1].jobs), default=("", _Queue()))
        jobs = [j for j in q.jobs[:self.max_batch] if not j.future.done()]  # cancelled: its session closed
        del q.jobs[:self.max_batch]
        if not jobs:
            if any(q.jobs for q in self._queues.values()):
                self._dispatch()
            return
        self._busy = True
        self.stats.jobs += 1
        self.stats.frames += len(jobs)
        self.stats.largest = max(self.stats.largest, len(jobs))
        try:
            work = asyncio.get_running_loop().run_in_executor(self._pool, self._run_batch, split_id, jobs)
        except RuntimeError as exc:  # closed: the sessions are being closed too
            self._busy = False
            for j in jobs:
                j.future.set_exception(exc)
            return
        work.add_done_callback(lambda f: self._finished(f, jobs))

    def _run_batch(self, split_id: str, jobs: list[_Job]) -> list[TailResult | BaseException]:
        started = time.monotonic()
        out: list[TailResult | BaseException] = []
        for j in jobs:
            try:
                out.append(self._one(split_id, j.latent, j.probs, started))
            except Exception as exc:  # one frame's failure is that frame's, not its batch's
                out.append(exc)
        return out

    def _finished(self, work: asyncio.Future[list[TailResult | BaseException]], jobs: list[_Job]) -> None:
        self._busy = False
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
        if any(q.jobs for q in self._queues.values()):
            self._dispatch()

    @property
    def queued(self) -> int:
        """Frames waiting for the worker thread, all splits: part of the receiver's load report."""
        return sum(len(q.jobs) for q in self._queues.values())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
