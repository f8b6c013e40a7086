"""The tail side's inference engine: every split's tail, run on one worker thread.

All tails run on a single worker thread: ONNX Runtime's CPU kernels already use the core
they get, and the event loop (which runs aiortc's pure-Python SCTP stack) needs the other
one. One thread also means each session's preallocated buffers are never used concurrently.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from receiver.splits import SplitTable, load_splits
from splitcore.runtime.models import Manifest


@dataclass(frozen=True, slots=True)
class TailResult:
    label: int
    logits: tuple[float, ...]
    probs: tuple[float, ...]
    tail_ms: float
    started: float  # time.monotonic() when the tail began


class TailEngine:
    def __init__(self, manifest: Manifest, threads: int = 1) -> None:
        self.manifest = manifest
        # Loaded once, at start-up: a wrong file stops the receiver before anyone connects.
        self.splits = SplitTable(load_splits(manifest, threads))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")

    def _infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        started = time.monotonic()
        logits = self.splits[split_id].runner.run(latent)[0]
        tail_ms = (time.monotonic() - started) * 1000
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        return TailResult(int(logits.argmax()), tuple(logits.tolist()), tuple(round(float(v), 6) for v in p),
                          tail_ms, started)

    async def infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._infer, split_id, latent)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
