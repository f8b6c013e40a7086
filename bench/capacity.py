"""Capacity: how many 30-fps streams one receiver holds, and what each frame costs it.

    python -m bench.capacity [--streams 8,16,32] [--split features] [--codec clip4+zlib]
                             [--workers 1] [--generators 1] [--seconds 20] [--warmup 3]
                             [--receiver-cpus 1] [--generator-cpus 0] [--out results/capacity]

Starts ``server.py`` and, for each stream count N, a fresh ``python -m receiver --workers W``
and ``--generators`` load-generator processes (this module with ``--generate``) that open N
real aiortc peer connections between them, each a sender of its own on the signaling server.
The frames are pre-encoded once (CIFAR-10 test images through the split's head and the
codec; ``SPLITRTC_DATA``), so a generator does no inference: per frame it only writes the
header (seq, capture time) and sends. Streams are paced at ``--fps`` with random phases and
ask for compact replies (``--full-replies`` for the old JSON).

After ``--warmup`` seconds of streaming, for ``--seconds``, it counts per N: replies a
second, the fraction of frames answered with a label, stale and incomplete drops, errors,
frames lost (sent, never settled), frames the generator could not send (back-pressure),
p50/p99 capture-to-reply latency, and for every receiver process (the parent and each
worker) its CPU (from /proc/PID/stat) and RSS, and the generators' CPU. From these: the
receiver's CPU time per frame received, and the streams per core that implies (one core /
CPU per frame / fps).

A stream count is "held" when replies a second reach 95% of N x fps and p99 <= 50 ms.
Writes ``capacity-SPLIT-CODEC-wW.json``, ``.md`` (the table) and ``.png`` under ``--out``.

On a machine with fewer cores than receiver workers plus generators, the generators compete
with the receiver: then the figure that carries to a bigger machine is the CPU per frame at
the highest load reached, and the capacity it implies.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.cpuquota import quotas
from splitcore.process.children import PY, ROOT, child_env, free_port, process, wait_http

FPS = 30.0
HELD_P99_MS = 50.0
HELD_FRACTION = 0.95
CONNECT_CONCURRENCY = 8
MAX_BUFFERED = 256 * 1024   # bytes queued in a channel before the generator skips a frame
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class Encoded:
    """One pre-encoded latent: everything but seq and capture time."""

    split: str
    shape: tuple[int, ...]
    dtype: int
    codec: int
    compression: int
    params: bytes
    payload: bytes


def encode_frames(split: str, codec: str, count: int) -> list[Encoded]:
    """``count`` CIFAR-10 test images through the head of ``split`` and ``codec``."""
    from splitcore.offline.datasets import load_cifar10
    from splitcore.runtime.models import Manifest, head_runner
    from splitcore.runtime.preprocess import to_input
    from splitcore.wire import codecs

    m = Manifest.load()
    spec = m.split(split).codec(codec)
    head = head_runner(m, split)
    images = load_cifar10(split="test", limit=count).images
    out = []
    for img in images:
        latent = head.run(to_input(img)).copy()
        dtype, cdc, params, payload = codecs.encode(latent, spec)
        out.append(Encoded(split, tuple(latent.shape), int(dtype), int(cdc), int(spec.compression), bytes(params),
                           bytes(payload)))
    return out


# ------------------------------------------------------------------------------ generator


@dataclass
class StreamCounts:
    sent: int = 0
    replies: int = 0
    labeled: int = 0
    stale: int = 0
    incomplete: int = 0
    errors: int = 0
    backpressure: int = 0
    latencies: list[float] = field(default_factory=list)


class Stream:
    """One sender: its own signaling client, peer connection and channel."""

    def __init__(self, index: int, frames: list[Encoded], compact: bool) -> None:
        self.index, self.frames, self.compact = index, frames, compact
        self.counts = StreamCounts()
        self.pending: dict[int, bool] = {}   # seq -> counted (sent inside the window)
        self.channel: Any = None
        self.pc: Any = None
        self.sig: Any = None
        self.window = (float("inf"), float("inf"))

    async def connect(self, url: str, room: str, name: str) -> None:
        from splitcore.rtc.peer import description, new_peer_connection
        from splitcore.rtc.signaling import SignalingClient
        from splitcore.wire.messages import COMPACT

        self.sig = SignalingClient(url, room, "sender", name)
        self.pc = new_peer_connection()
        answered = asyncio.Event()

        async def on_signal(msg: dict) -> None:
            if msg.get("type") == "answer":
                await self.pc.setRemoteDescription(description(msg))
                answered.set()
        self.sig.on_signal(on_signal)
        await self.sig.connect()
        receiver = await self.sig.wait_for_peer("receiver", timeout=60)
        self.channel = self.pc.createDataChannel("latent", ordered=True, protocol=COMPACT if self.compact else "")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self.on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.sig.signal(receiver["id"], "offer", sdp=self.pc.localDescription.sdp)
        await asyncio.wait_for(opened.wait(), 60)

    def on_message(self, text: str | bytes) -> None:
        now = time.monotonic() * 1000
        if not isinstance(text, str):
            return
        m = json.loads(text)
        kind = m.get("type")
        if kind == "ping":
            self.channel.send(json.dumps({"type": "pong", "t_ms": m["t_ms"]}))
            return
        if kind == "pong":
            return
        counted = self.pending.pop(m.get("seq"), None)
        if not counted:
            return
        c = self.counts
        if kind == "reply":
            c.replies += 1
            c.labeled += "label" in m
            c.latencies.append(round(now - m["capture_ms"], 3))
        elif kind == "drop":
            if m.get("reason") == "stale":
                c.stale += 1
            else:
                c.incomplete += 1
        else:
            c.errors += 1

    async def run(self, fps: float, stop_at: float) -> None:
        from splitcore.wire.frame import Codec, Compression, DType, Header, encode

        period = 1.0 / fps
        t = time.monotonic() + random.random() * period
        seq = 0
        while True:
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            now = time.monotonic()
            if now >= stop_at:
                return
            t += period
            if t < now:  # we fell behind (a loaded generator): skip, never burst
                t = now + period
            ch = self.channel
            if ch.readyState != "open":
                return
            counted = self.window[0] <= now < self.window[1]
            if ch.bufferedAmount > MAX_BUFFERED:
                self.counts.backpressure += counted
                continue
            f = self.frames[seq % len(self.frames)]
            h = Header(seq, now * 1000, f.split, f.shape, DType(f.dtype), Codec(f.codec), Compression(f.compression),
                       params=f.params)
            for msg in encode(h, f.payload):
                ch.send(msg)
            self.pending[seq] = counted
            self.counts.sent += counted
            seq += 1

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sig.close(), 2)


async def generate(args: argparse.Namespace) -> None:
    """The ``--generate`` child: connect, say ready, wait for ``go``, stream, print counts."""
    import gc

    frames: list[Encoded] = pickle.loads(Path(args.frames_file).read_bytes())
    streams = [Stream(i, frames, not args.full_replies) for i in range(args.count)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(s: Stream) -> None:
        async with gate:
            await s.connect(args.server, args.room, f"cap-g{args.generate}-s{s.index}")
    await asyncio.gather(*(connect(s) for s in streams))
    gc.collect()
    gc.freeze()  # a generator's GC pauses skewed such runs (NOTES.md): none from what is built
    print(json.dumps({"ready": len(streams)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)   # "go"
    start = time.monotonic()
    window = (start + args.warmup, start + args.warmup + args.seconds)
    for s in streams:
        s.window = window
    await asyncio.gather(*(s.run(args.fps, window[1]) for s in streams))
    await asyncio.sleep(args.drain)
    counts = []
    for s in streams:
        c = s.counts
        lost = sum(1 for counted in s.pending.values() if counted)
        counts.append({"sent": c.sent, "replies": c.replies, "labeled": c.labeled, "stale": c.stale,
                       "incomplete": c.incomplete, "errors": c.errors, "backpressure": c.backpressure,
                       "lost": lost, "latencies": c.latencies})
    print(json.dumps({"streams": counts}), flush=True)
    await asyncio.gather(*(s.close() for s in streams))


# ------------------------------------------------------------------------------ receiver processes


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d.name))
    return out


def cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK   # utime + stime


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name}: exited {proc.returncode}:\n{path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: no {text!r} within {timeout:.0f}s:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------ one point


def measure(url: str, tmp: Path, args: argparse.Namespace, n: int, frames_file: Path) -> dict[str, Any]:
    room = f"cap{n}-{random.randrange(1 << 30)}"
    rlog = tmp / f"receiver-{n}.log"
    rargs = [PY, "-m", "receiver", "--server", url, "--room", room, "--workers", str(args.workers),
             "--max-sessions", str(max(64, 2 * n))]
    if args.receiver_cpus:
        rargs += ["--cpus", args.receiver_cpus]
    with quotas(args.worker_quota) as quota, process(rargs, rlog) as rp:
        wait_text(rlog, f"joined room {room}", rp, 120)
        gens: list[subprocess.Popen[str]] = []
        per = [n // args.generators + (i < n % args.generators) for i in range(args.generators)]
        for g, count in enumerate(per):
            if count == 0:
                continue
            cmd = [PY, "-m", "bench.capacity", "--generate", str(g), "--count", str(count), "--server", url,
                   "--room", room, "--frames-file", str(frames_file), "--fps", str(args.fps),
                   "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--drain", str(args.drain)]
            if args.full_replies:
                cmd.append("--full-replies")
            if args.generator_cpus:
                cmd = ["taskset", "-c", args.generator_cpus, *cmd]
            gens.append(subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=open(tmp / f"gen-{n}-{g}.log", "w"), text=True, env=child_env()))
        try:
            for p in gens:
                assert p.stdout is not None
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError(f"a generator exited {p.wait()}:\n{(tmp / f'gen-{n}-0.log').read_text()[-3000:]}")
            ready = re.search(r"workers ready \(pids ([\d, ]+)\)", rlog.read_text())
            workers = [int(x) for x in ready.group(1).split(",")] if ready else sorted(children_of(rp.pid))
            pids = [rp.pid, *workers]   # the workers in index order
            if quota is not None:       # each worker (or the lone receiver) its own share of a core
                for pid in workers if args.workers > 1 else [rp.pid]:
                    quota.limit(pid)
            for p in gens:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            time.sleep(args.warmup)
            cpu0 = {pid: cpu_s(pid) for pid in pids}
            gen0 = [cpu_s(p.pid) for p in gens]
            t0 = time.monotonic()
            time.sleep(args.seconds)
            cpu1 = {pid: cpu_s(pid) for pid in pids}
            gen1 = [cpu_s(p.pid) for p in gens]
            took = time.monotonic() - t0
            gen_used = [b - a for a, b in zip(gen0, gen1, strict=True) if a is not None and b is not None]
            throttled = quota.throttled() if quota is not None else {}
            rss = {pid: rss_mb(pid) for pid in pids}
            results = []
            for p in gens:
                out, _ = p.communicate(timeout=args.seconds + args.drain + 60)
                results += json.loads(out.strip().splitlines()[-1])["streams"]
        finally:
            for p in gens:
                if p.poll() is None:
                    p.kill()
    tot = {k: sum(r[k] for r in results) for k in ("sent", "replies", "labeled", "stale", "incomplete", "errors",
                                                   "backpressure", "lost")}
    lat = np.array([v for r in results for v in r["latencies"]], np.float64)
    procs: list[dict[str, Any]] = []
    cpu_total = 0.0
    for i, pid in enumerate(pids):
        a, b = cpu0.get(pid), cpu1.get(pid)
        used = (b - a) if a is not None and b is not None else None
        cpu_total += used or 0.0
        size = rss.get(pid)
        procs.append({"role": "parent" if i == 0 and args.workers > 1 else ("receiver" if i == 0 else f"worker{i - 1}"),
                      "pid": pid, "cpu": round(used / took, 3) if used is not None else None,
                      "throttled_periods": throttled.get(pid),
                      "rss_mb": round(size, 1) if size is not None else None})
    received = tot["replies"] + tot["stale"] + tot["incomplete"] + tot["errors"]
    cpu_ms = 1000 * cpu_total / received if received else None
    p50 = float(np.percentile(lat, 50)) if lat.size else None
    p99 = float(np.percentile(lat, 99)) if lat.size else None
    answered_s = tot["replies"] / args.seconds
    return {
        "streams": n, **tot, "answered_per_s": round(answered_s, 1),
        "labeled_fraction": round(tot["labeled"] / tot["sent"], 4) if tot["sent"] else 0.0,
        "p50_ms": round(p50, 2) if p50 is not None else None, "p99_ms": round(p99, 2) if p99 is not None else None,
        "held": bool(p99 is not None and p99 <= HELD_P99_MS and answered_s >= HELD_FRACTION * n * args.fps),
        "receiver_processes": procs, "receiver_cpu_cores": round(cpu_total / took, 3),
        "generator_cpu_cores": round(sum(gen_used) / took, 3) if gen_used else None,
        "cpu_ms_per_frame": round(cpu_ms, 4) if cpu_ms else None,
        "implied_streams_per_core": round(1000 / (cpu_ms * args.fps), 1) if cpu_ms else None,
    }


# ------------------------------------------------------------------------------ report


def table(points: list[dict[str, Any]]) -> str:
    head = ("| streams | answered/s | labeled | stale | incompl. | lost | backpr. | p50 ms | p99 ms | held | "
            "receiver CPU (cores, per process) | RSS MB | CPU ms/frame | implied streams/core | generator cores |")
    rows = [head, "|" + "---|" * 15]
    for p in points:
        cpus = ", ".join(f"{q['role']} {q['cpu']}" for q in p["receiver_processes"])
        rss = ", ".join(f"{q['rss_mb']}" for q in p["receiver_processes"])
        rows.append(f"| {p['streams']} | {p['answered_per_s']} | {p['labeled_fraction']:.3f} | {p['stale']} | "
                    f"{p['incomplete']} | {p['lost']} | {p['backpressure']} | {p['p50_ms']} | {p['p99_ms']} | "
                    f"{'yes' if p['held'] else 'no'} | {p['receiver_cpu_cores']} ({cpus}) | {rss} | "
                    f"{p['cpu_ms_per_frame']} | {p['implied_streams_per_core']} | {p.get('generator_cpu_cores')} |")
    return "\n".join(rows)


def plot(points: list[dict[str, Any]], title: str, path: Path, fps: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["streams"] for p in points]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(n, [p["answered_per_s"] for p in points], "o-", label="answered/s")
    a1.plot(n, [x * fps for x in n], "k--", lw=0.8, label=f"offered ({fps:g} fps each)")
    a1.set_xlabel("streams")
    a1.set_ylabel("replies per second")
    a1.legend()
    a2.plot(n, [p["p50_ms"] for p in points], "o-", label="p50")
    a2.plot(n, [p["p99_ms"] for p in points], "s-", label="p99")
    a2.axhline(HELD_P99_MS, color="r", lw=0.8, ls="--", label=f"{HELD_P99_MS:g} ms")
    a2.set_xlabel("streams")
    a2.set_ylabel("capture to reply, ms")
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label(result: dict[str, Any]) -> str:
    quota = result.get("worker_quota")
    w = result["workers"]
    return f"{w} worker{'s' if w > 1 else ''}" + (f" x {quota:g} core" if quota else "")


def compare(files: list[Path], path: Path) -> str:
    """Several runs' answered/s and p99 against streams in one figure (one line a run, one
    panel pair a split and codec), and their table: ``--workers 1`` against ``2``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(f.read_text()) for f in files]
    kinds = sorted({(r["split"], r["codec"]) for r in runs})
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.8 * len(kinds)), squeeze=False)
    rows = ["| split codec | run | streams held (p99 <= 50 ms, >= 95 % answered) | most answered/s | "
            "receiver cores there | generator cores there |", "|---|---|---|---|---|---|"]
    for (split, codec), (a1, a2) in zip(kinds, axes, strict=True):
        top = 0
        for f, r in zip(files, runs, strict=True):
            if (r["split"], r["codec"]) != (split, codec):
                continue
            pts = r["points"]
            n = [p["streams"] for p in pts]
            top = max(top, *n)
            tag = f.stem.split(f"-w{r['workers']}", 1)[-1].lstrip("-")   # the run's --tag
            line, = a1.plot(n, [p["answered_per_s"] for p in pts], "o-", label=label(r) + (f" ({tag})" if tag else ""))
            a2.plot(n, [p["p99_ms"] for p in pts], "o-", color=line.get_color())
            held = [p["streams"] for p in pts if p["held"]]
            best = max(pts, key=lambda p: p["answered_per_s"])
            rows.append(f"| {split} {codec} | {label(r)} ({f.name}) | {', '.join(map(str, held)) or 'none'} | "
                        f"{best['answered_per_s']} ({best['streams']} streams) | {best['receiver_cpu_cores']} | "
                        f"{best.get('generator_cpu_cores')} |")
        fps = runs[0]["fps"]
        a1.plot([0, top], [0, top * fps], "k--", lw=0.8, label=f"offered ({fps:g} fps each)")
        a1.set(xlabel="streams", ylabel="replies per second", title=f"{split} {codec}")
        a1.legend(fontsize=8)
        a2.axhline(HELD_P99_MS, color="r", lw=0.8, ls="--")
        a2.set(xlabel="streams", ylabel="p99 capture to reply, ms (log)", yscale="log", title="p99")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="8,16,32", help="stream counts, comma-separated (default %(default)s)")
    p.add_argument("--split", default="features")
    p.add_argument("--codec", default="clip4+zlib")
    p.add_argument("--workers", type=int, default=1, help="receiver worker processes (default 1)")
    p.add_argument("--generators", type=int, default=1, help="load-generator processes (default 1)")
    p.add_argument("--fps", type=float, default=FPS)
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per point (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="streaming before the window (default 3)")
    p.add_argument("--drain", type=float, default=1.5, help="waiting for the last replies (default 1.5)")
    p.add_argument("--full-replies", action="store_true", help="ask for full replies (probs and logits)")
    p.add_argument("--receiver-cpus", default=None, help="--cpus for the receiver (workers take one each)")
    p.add_argument("--generator-cpus", default=None, help="taskset -c list for the generators")
    p.add_argument("--worker-quota", type=float, default=None, metavar="CORES",
                   help="limit each receiver worker (or the lone receiver) to this share of a core with a "
                        "cgroup of its own (root; bench/cpuquota.py): --workers 1 against 2 on a small machine")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "capacity")
    p.add_argument("--tag", default="", help="added to the output file names")
    # the generator child
    p.add_argument("--generate", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--server", default="", help=argparse.SUPPRESS)
    p.add_argument("--room", default="", help=argparse.SUPPRESS)
    p.add_argument("--frames-file", default="", help=argparse.SUPPRESS)
    p.add_argument("--compare", type=Path, nargs="+", default=None, metavar="JSON",
                   help="instead of measuring: plot these runs' results side by side (to --out/capacity-compare.png) "
                        "and print their table")
    args = p.parse_args(argv)
    if args.compare:
        args.out.mkdir(parents=True, exist_ok=True)
        print(compare(args.compare, args.out / f"capacity-compare{('-' + args.tag) if args.tag else ''}.png"))
        return 0
    if args.generate is not None:
        asyncio.run(generate(args))
        return 0
    # SIGTERM (a timeout, a kill) unwinds like Ctrl-C: the receiver, the generators and the
    # CPU-quota groups are stopped and removed by their ``with`` blocks, not left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    counts = [int(x) for x in args.streams.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"capacity-{args.split}-{args.codec}-w{args.workers}{('-' + args.tag) if args.tag else ''}"
    with tempfile.TemporaryDirectory(prefix="capacity-") as t:
        tmp = Path(t)
        frames_file = tmp / "frames.pkl"
        frames = encode_frames(args.split, args.codec, 16)
        frames_file.write_bytes(pickle.dumps(frames))
        mean_bytes = sum(len(f.payload) for f in frames) / len(frames)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with process([PY, "server.py", "--port", str(port), "--max-room-peers", "0",
                      "--max-events-per-s", "100000", "--log-level", "warning"], tmp / "server.log") as sp:
            wait_http(f"{url}/healthz", sp)
            points = []
            for n in counts:
                point = measure(url, tmp, args, n, frames_file)
                points.append(point)
                print(json.dumps({k: v for k, v in point.items() if k != "receiver_processes"}), flush=True)
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    result = {"split": args.split, "codec": args.codec, "payload_bytes_mean": round(mean_bytes, 1),
              "workers": args.workers, "generators": args.generators, "fps": args.fps, "seconds": args.seconds,
              "warmup": args.warmup, "compact_replies": not args.full_replies, "cpus": os.cpu_count(),
              "receiver_cpus": args.receiver_cpus, "generator_cpus": args.generator_cpus,
              "worker_quota": args.worker_quota, "loadavg_end": loadavg,
              "points": points}
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    top = max(points, key=lambda q: q["answered_per_s"])
    text = (f"# Capacity: {args.split} {args.codec} (~{mean_bytes:.0f} B a frame), {args.workers} receiver "
            f"worker(s){f' of {args.worker_quota:g} core each (cgroup quota)' if args.worker_quota else ''}, "
            f"{args.generators} generator(s), {args.seconds:g} s a point\n\n{table(points)}\n\n"
            f"At the highest load reached ({top['streams']} streams, {top['answered_per_s']} replies/s) the receiver "
            f"spent {top['cpu_ms_per_frame']} ms CPU a frame received: {top['implied_streams_per_core']} streams "
            f"of {args.fps:g} fps per core. Load average at the end: {' '.join(loadavg)}.\n")
    (args.out / f"{name}.md").write_text(text)
    plot(points, f"{args.split} {args.codec}, {args.workers} worker(s)", args.out / f"{name}.png", args.fps)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
