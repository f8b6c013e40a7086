"""The tail side's inference engine: one ONNX Runtime session per split, one worker thread.

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

from splitcore.runtime.models import Manifest, Runner, tail_runner


@dataclass
class TailResult:
    label: int
    logits: list[float]
    probs: list[float]
    tail_ms: float
    started: float  # time.monotonic() when the tail began


class TailEngine:
    def __init__(self, manifest: Manifest, threads: int = 1) -> None:
        self.manifest = manifest
        # Loaded once, at start-up: a wrong file stops the receiver before anyone connects.
        self.tails: dict[str, Runner] = {sid: tail_runner(manifest, sid, threads) for sid in manifest.splits}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tail")
        self._channels = {sid: p.codec("int8-channel").channels for sid, p in manifest.splits.items()
                          if p.calibration and "int8_channel" in p.calibration}

    def channels(self, split_id: str):
        """Per-channel int8 calibration of a split (None when the manifest has none)."""
        return self._channels.get(split_id)

    def expected_shape(self, split_id: str) -> tuple[int, ...] | None:
        point = self.manifest.splits.get(split_id)
        return point.shape if point else None

    def _infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        started = time.monotonic()
        logits = self.tails[split_id].run(latent)[0]
        tail_ms = (time.monotonic() - started) * 1000
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        return TailResult(int(logits.argmax()), logits.tolist(), [round(float(v), 6) for v in p],
                          tail_ms, started)

    async def infer(self, split_id: str, latent: np.ndarray) -> TailResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._infer, split_id, latent)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
