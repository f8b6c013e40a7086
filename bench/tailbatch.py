"""Tail CPU per frame by batch size: what running a split's ready frames as one ONNX Runtime
call saves the receiver's tail thread (issue 16).

    nice python -m bench.tailbatch [--batches 1 4 16 32] [--seconds 0.5] [--threads 1]

For each split and batch size, the split's ``receiver.splits.TailRunner`` (the engine's own
runner, preallocated ``max(batches)`` rows deep) runs batches of real latents (its head on
blurred-noise images) for at least ``--seconds``; the figure is the tail thread's CPU time
(``time.thread_time``: with one intra-op thread ONNX Runtime computes on the calling thread)
divided by the frames, and the wall time likewise. Batch 1 is what a receiver with batch-1
tails pays for every frame. The engine's hand-off to its worker thread (~0.09 ms a job) is
not included: it is paid once a batch on top of these figures.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from receiver.splits import TailRunner
from splitcore.runtime.models import Manifest, head_runner
from splitcore.runtime.preprocess import to_input


def _latents(m: Manifest, split: str, n: int) -> np.ndarray:
    import cv2  # the sender's dependency too; only the latents need it
    rng = np.random.default_rng(0)
    images = np.stack([cv2.GaussianBlur(im, (5, 5), 1.5) for im in rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)])
    head = head_runner(m, split)
    return np.stack([head.run(x[None])[0].copy() for x in to_input(images)])


def per_frame(runner: TailRunner, x: np.ndarray, batch: int, seconds: float) -> tuple[float, float]:
    """(CPU ms, wall ms) a frame when ``runner`` runs batches of ``batch`` rows of ``x``."""
    runner.input[:batch] = x[:batch]
    runner.run(batch)  # warm-up: the first call at a new shape plans its kernels
    frames, cpu0, wall0 = 0, time.thread_time(), time.perf_counter()
    while frames < 3 * batch or time.perf_counter() - wall0 < seconds:
        runner.input[:batch] = x[:batch]
        runner.run(batch)
        frames += batch
    return ((time.thread_time() - cpu0) * 1000 / frames, (time.perf_counter() - wall0) * 1000 / frames)


def measure(m: Manifest, batches: Sequence[int], seconds: float, threads: int = 1) -> dict[str, dict[int, tuple[float, float]]]:
    """Per split, per batch size: (CPU ms, wall ms) a frame."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for sid, point in m.splits.items():
        runner = TailRunner(point.tail, point.shape, max(batches), threads)
        if not runner.batchable:
            raise SystemExit(f"{point.tail.path} has a fixed batch of 1: run python -m splitcore.offline.batchable")
        x = _latents(m, sid, max(batches))
        out[sid] = {b: per_frame(runner, x, b, seconds) for b in batches}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=None)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--seconds", type=float, default=0.5, help="least time per split and batch size")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (the receiver's --threads)")
    args = p.parse_args(argv)
    if min(args.batches) < 1:
        p.error("batch sizes are at least 1")
    table = measure(Manifest.load(args.manifest), args.batches, args.seconds, args.threads)
    print("tail CPU ms per frame (wall ms per frame), by batch size; last column: CPU at batch 1 / at the largest")
    print(f"{'split':<10}" + "".join(f"{'batch ' + str(b):>20}" for b in args.batches) + f"{'gain':>8}")
    for sid, row in table.items():
        cells = "".join(f"{f'{cpu:.4f} ({wall:.4f})':>20}" for cpu, wall in row.values())
        first, last = row[args.batches[0]][0], row[args.batches[-1]][0]
        print(f"{sid:<10}{cells}{first / last:>7.2f}x")


if __name__ == "__main__":
    main()
