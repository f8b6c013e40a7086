"""python -m receiver: run the tail side of SplitRTC.

Joins ROOM on the signaling server as a receiver, answers every sender that offers, runs
the tail of the split each frame names (all splits of the manifest are loaded at start-up)
and replies with the label, the logits, the class probabilities and its own timings.
Publishes getStats-style byte counters to the dashboard once a second.

Example:
    python -m receiver --server http://127.0.0.1:8080 --room demo
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from receiver.service import Receiver
from splitcore.process.cpus import add_cpus_option, pin
from splitcore.process.loops import add_event_loop_option, run_with_loop
from splitcore.rtc.signaling import SignalingError
from splitcore.runtime.models import Manifest, ModelError


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m receiver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8080", help="signaling server URL")
    p.add_argument("--room", default="demo", help="room to join (default: demo)")
    p.add_argument("--name", default="receiver", help="label shown on the dashboard")
    p.add_argument("--manifest", default=None, help="models/manifest.json of the models to serve")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per tail (default 1)")
    p.add_argument("--ice-server", action="append", default=[],
                   help="STUN/TURN URL (repeatable); none by default, for closed networks")
    p.add_argument("--summary", action="store_true", help="print per-sender counters as JSON at exit")
    add_event_loop_option(p)
    add_cpus_option(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> Receiver:
    receiver = Receiver(args.server, args.room, args.name, Manifest.load(args.manifest),
                        args.threads, args.ice_server)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await receiver.run_forever()
    except asyncio.CancelledError:
        pass
    return receiver


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cpus:
            pin(args.cpus)  # before the tail sessions and their worker thread exist
        receiver = run_with_loop(run(args), args.event_loop)
    except (ModelError, SignalingError, ValueError) as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        print(json.dumps(receiver.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
