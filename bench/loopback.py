"""Loopback benchmark: every split point streamed live at 30 fps through the real system.

    python -m bench.loopback [--seconds 20] [--splits stage1,stage2] [--event-loop uvloop] [--no-pin] [--out DIR]

For each split it starts ``server.py``, a receiver and a sender (the built-in pattern
source) as separate processes on 127.0.0.1, streams for ``--seconds``, and reads the
sender's JSON summary: sustained fps, end-to-end latency (capture to reply, on the sender's
clock) p50/p99, payload and wire bytes per frame, and every drop. It prints a Markdown table
and writes it, with the raw summaries, under ``--out``.

By default the sender and the receiver are pinned to a core each (``--cpus``), as if each
ran on its own machine; ``--no-pin`` lets the kernel place them, which measures the two
peers fighting over the same cores as well (see ``splitcore.process.cpus``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from sender.ledger import STAGES
from splitcore.process.children import process, receiver_args, run_sender, server
from splitcore.process.cpus import available
from splitcore.process.loops import LOOPS, default_loop
from splitcore.runtime.models import Manifest

COLUMNS = ("split", "latent", "frames", "fps", "p50 ms", "p99 ms", "payload B/frame",
           "wire B/frame", "wire/payload", "stale drops", "other drops")
# Median ms of each stage of a frame's latency, in the order of sender.ledger.STAGES.
STAGE_COLUMNS = ("split", "capture+head", "encode+send", "data channel (both ways)", "receiver", "p50 total")


def pinning() -> tuple[str, str] | None:
    """(sender CPU, receiver CPU): the first two this process may use; None with fewer."""
    cpus = sorted(available())
    return (str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else None


def bench_split(split: str, seconds: float, fps: float, workdir: Path, event_loop: str = "asyncio",
                tail_threads: int = 1, pin: tuple[str, str] | None = None) -> dict:
    frames = int(seconds * fps)
    loop = ("--event-loop", event_loop)
    send_cpus, recv_cpus = (("--cpus", pin[0]), ("--cpus", pin[1])) if pin else ((), ())
    extra = (*loop, "--threads", str(tail_threads), *recv_cpus)
    with server(workdir) as url, process(receiver_args(url, "bench", *extra), workdir / f"receiver-{split}.log"):
        summary, _ = run_sender(url, "bench", "--split", split, "--frames", str(frames), "--quiet",
                                "--fps", str(fps), *loop, *send_cpus, timeout=seconds * 3 + 60)
    return summary


def row(split: str, shape: tuple[int, ...], s: dict) -> list[str]:
    sent = max(1, s["frames_sent"])
    stale = s["dropped_by_sender"].get("stale", 0) + s["dropped_by_receiver"].get("stale", 0)
    other = (sum(s["dropped_by_sender"].values()) + sum(s["dropped_by_receiver"].values())
             + sum(s["errors"].values()) + s["in_flight_at_exit"] - stale)
    return [split, "x".join(map(str, shape[1:])), str(s["frames_sent"]), f"{s['fps']:.2f}",
            f"{s['latency_p50_ms']:.2f}", f"{s['latency_p99_ms']:.2f}",
            f"{s['payload_bytes'] / sent:,.0f}", f"{s['wire_bytes'] / sent:,.0f}",
            f"{s['wire_bytes'] / s['payload_bytes']:.3f}", str(stale), str(other)]


def stage_row(split: str, s: dict) -> list[str]:
    st = s.get("latency_stages_p50_ms") or {}
    return [split, *(f"{st[k]:.2f}" if k in st else "–" for k in STAGES), f"{s['latency_p50_ms']:.2f}"]


def markdown(rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loopback", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="streaming time per split (default 20)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--splits", default="", help="comma-separated split ids (default: all)")
    p.add_argument("--event-loop", choices=LOOPS, default=default_loop(),
                   help="for the sender and the receiver (default: uvloop where installed)")
    p.add_argument("--tail-threads", type=int, default=1, help="ONNX Runtime threads for the receiver's tail")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the sender and the receiver to a core each (default: pinned)")
    p.add_argument("--out", type=Path, default=Path("results/loopback"))
    args = p.parse_args(argv)
    manifest = Manifest.load()
    splits = [s for s in args.splits.split(",") if s] or list(manifest.splits)
    pin = pinning() if args.pin else None
    if args.pin and pin is None:
        print("only one CPU available: the sender and the receiver run unpinned")
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for split in tqdm(splits, desc="splits", unit="split"):
            results[split] = bench_split(split, args.seconds, args.fps, Path(tmp), args.event_loop,
                                         args.tail_threads, pin)
            rows.append(row(split, manifest.split(split).shape, results[split]))
    table = markdown(rows) + "\n\nWhere the time goes (medians, ms):\n\n" + markdown(
        [stage_row(s, results[s]) for s in splits], STAGE_COLUMNS)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"seconds": args.seconds, "fps": args.fps, "event_loop": args.event_loop, "tail_threads": args.tail_threads,
            "pinned": {"sender": pin[0], "receiver": pin[1]} if pin else None, "machine": platform.machine(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (args.out / "loopback.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (args.out / "loopback.md").write_text(table + "\n")
    print(f"\nwrote {args.out}/loopback.json and loopback.md")


if __name__ == "__main__":
    main()
