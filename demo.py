"""python demo.py: the whole system on one machine, ready to watch in a browser.

Starts the signaling server, one receiver and one Python sender streaming the built-in
moving test pattern (or --camera / --video), prints the dashboard's address, and keeps
everything running until Ctrl-C. Any process that dies takes the demo down with a message
naming it, instead of leaving the others waiting for a peer that will never come.

    python demo.py                      # pattern source, room "demo", port 8080
    python demo.py --camera 0 --split stage2
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from splitcore.process.children import PY, ChildError, receiver_args, sender_args, spawn, stop, wait_http


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address the server listens on")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--room", default="demo")
    p.add_argument("--split", default="stage1", help="split point id (see models/manifest.json)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="webcam index or device path instead of the pattern")
    src.add_argument("--video", help="a video file (looped) instead of the pattern")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    url = f"http://{args.host}:{args.port}"
    source = (["--camera", args.camera] if args.camera else
              ["--video", args.video, "--loop"] if args.video else [])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["server"] = spawn([PY, "server.py", "--host", args.host, "--port", str(args.port)])
        try:
            wait_http(f"{url}/healthz", procs["server"])
        except ChildError as exc:
            print(f"demo: the server {exc}; see its output above", file=sys.stderr)
            return 1
        procs["receiver"] = spawn(receiver_args(url, args.room))
        procs["sender"] = spawn(sender_args(url, args.room, "--split", args.split, *source))
        print(f"\n  SplitRTC is running. Dashboard: {url}/dashboard?room={args.room}\n"
              f"  Browser pages: {url}/   (Ctrl-C stops everything)\n", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"demo: the {name} exited with code {p.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop(reversed(list(procs.values())), signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
