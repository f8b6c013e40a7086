"""Device time per operating point, measured at start-up on the machine that runs the sender.

For ``--split adaptive`` the controller needs what each candidate costs here before it has
run it: every head the candidates use (split x float32/INT8) is loaded once (the sender holds
them all, so a switch never loads a model mid-stream) and run on a few frames, and every
codec is timed on that head's real latent. The running stream refreshes these figures from
the frames it sends (``sender.adaptive.Estimates``). ``python -m sender.profile`` prints them.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from splitcore.runtime.models import Manifest, Runner, head_runner
from splitcore.wire import codecs
from splitcore.wire.codecs import CodecSpec

from .adaptive import Point

WARMUP = 2
FRAMES = 5


@dataclass
class Profile:
    """Held heads and measured costs: ``device_ms`` per ``split/head``, ``encode_ms`` per
    ``split/codec`` (medians of ``FRAMES`` runs after ``WARMUP``)."""

    heads: dict[str, Runner]
    codecs: dict[str, CodecSpec]
    device_ms: dict[str, float]
    encode_ms: dict[str, float]

    def as_dict(self) -> dict:
        return {"device_ms": {k: round(v, 4) for k, v in self.device_ms.items()},
                "encode_ms": {k: round(v, 4) for k, v in self.encode_ms.items()}}


def _time(fn: object, frames: int) -> float:
    call = fn  # a zero-argument callable
    for _ in range(WARMUP):
        call()  # type: ignore[operator]
    runs = []
    for _ in range(frames):
        t0 = time.perf_counter()
        call()  # type: ignore[operator]
        runs.append((time.perf_counter() - t0) * 1000)
    return float(np.median(runs))


def profile(manifest: Manifest, points: Iterable[Point], threads: int = 1, frames: int = FRAMES,
            seed: int = 0) -> Profile:
    """Load every head ``points`` use and time heads and codecs on ``frames`` inputs."""
    x = np.random.default_rng(seed).random(manifest.input_shape, dtype=np.float32)
    heads: dict[str, Runner] = {}
    specs: dict[str, CodecSpec] = {}
    device: dict[str, float] = {}
    encode: dict[str, float] = {}
    pts = list(points)
    for p in pts:
        hk, ck = f"{p.split}/{p.head}", f"{p.split}/{p.codec}"
        if hk not in heads:
            heads[hk] = runner = head_runner(manifest, p.split, threads, int8=p.head == "int8")
            device[hk] = _time(lambda r=runner: r.run(x), frames)
        if ck not in specs:
            specs[ck] = spec = manifest.split(p.split).codec(p.codec)
            latent = heads[hk].run(x).copy()
            encode[ck] = _time(lambda s=spec, z=latent: codecs.encode(z, s), frames)
    return Profile(heads, specs, device, encode)


def main(argv: list[str] | None = None) -> int:
    from splitcore.runtime.operating import OperatingPoints
    ap = argparse.ArgumentParser(prog="python -m sender.profile", description=__doc__)
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    m = Manifest.load(args.manifest)
    ops = OperatingPoints.load(m.path.parent / "operating_points.json")
    pts = [Point(o.split, o.codec, o.head, o.payload_bytes, o.top1) for o in ops.points if o.split in m.splits]
    print(json.dumps(profile(m, pts, args.threads).as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
