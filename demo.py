"""python demo.py: the whole system on one machine, ready to watch in a browser.

Starts the signaling server, one receiver and one Python sender streaming the built-in
moving test pattern (or --camera / --video), prints the dashboard's address, and keeps
everything running until Ctrl-C (or SIGTERM), which stops every process within 3 s. Any
process that dies takes the demo down with a message naming it, instead of leaving the
others waiting for a peer that will never come. A port already in use is reported before
anything starts.

    python demo.py                      # pattern source, room "demo", port 8080
    python demo.py --camera 0 --split stage2
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from types import FrameType

from splitcore.process import cli
from splitcore.process.children import PY, ChildError, receiver_args, sender_args, spawn, stop, wait_http

PROG = "demo"
# Ctrl-C to exit: the children get SIGINT and this long to finish (the sender collects its
# last replies), then SIGKILL; the 3-second promise above includes it.
STOP_GRACE_S = 2.5


class Stopped(Exception):
    """SIGTERM arrived: leave the main loop through its clean-up, like Ctrl-C."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser("python demo.py", __doc__)
    p.add_argument("--host", default="127.0.0.1", help="address the server listens on (default: %(default)s)")
    p.add_argument("--port", type=cli.port, default=8080, help="the server's TCP port (default: %(default)s)")
    p.add_argument("--room", default="demo", help="room of the sender, the receiver and the dashboard (default: %(default)s)")
    p.add_argument("--split", default="stage1", help="split point id (see models/manifest.json; default: %(default)s)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="webcam index or device path instead of the pattern")
    src.add_argument("--video", help="a video file (looped) instead of the pattern")
    p.add_argument("--seconds", type=cli.positive(float, "seconds", zero_ok=True), default=0,
                   help="stop after this long (default: 0, until Ctrl-C)")
    return p.parse_args(argv)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.port == 0:
        return cli.fail(PROG, "--port 0 is not supported here: the receiver and sender need the port in advance")
    busy = cli.port_in_use(args.host, args.port)
    if busy:
        return cli.fail(PROG, busy)
    url = f"http://{args.host}:{args.port}"
    source = (["--camera", args.camera] if args.camera else
              ["--video", args.video, "--loop"] if args.video else [])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        procs["server"] = spawn([PY, "server.py", "--host", args.host, "--port", str(args.port)],
                                die_with_parent=True)
        try:
            wait_http(f"{url}/healthz", procs["server"])
        except ChildError as exc:
            print(f"{PROG}: the server {exc}; see its output above", file=sys.stderr)
            return cli.EXIT_FAILED
        procs["receiver"] = spawn(receiver_args(url, args.room, workers="auto"), die_with_parent=True)
        procs["sender"] = spawn(sender_args(url, args.room, "--split", args.split, *source), die_with_parent=True)
        print(f"\n  SplitRTC is running. Dashboard: {url}/dashboard?room={args.room}\n"
              f"  Browser pages: {url}/   (Ctrl-C stops everything)\n", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{PROG}: the {name} exited with code {p.returncode}; stopping", file=sys.stderr)
                    return cli.EXIT_FAILED
            time.sleep(0.2)
        return cli.EXIT_OK
    except (KeyboardInterrupt, Stopped):
        return cli.EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop(reversed(list(procs.values())), signal.SIGINT, grace=STOP_GRACE_S)


if __name__ == "__main__":
    sys.exit(main())
