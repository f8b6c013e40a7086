#!/usr/bin/env python3
"""SplitRTC signaling server: brokers WebRTC set-up between senders and receivers of a room,
relays their stats to dashboards, and serves the browser pages (see docs/signaling.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from signaling import run

EPILOG = """\
pages: /sender /receiver /dashboard, /healthz (JSON room and peer counts).
Browser packages come from node_modules (run `npm ci` in the repo root first).
Browsers give camera access and WASM threads only to secure contexts: use 127.0.0.1 or
localhost, or put HTTPS in front when serving other machines.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080,
                        help="TCP port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--static", type=Path, default=None, metavar="DIR",
                        help="folder of the pages and /static files (default: ./static "
                             "next to server.py)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="logging verbosity (default: %(default)s)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if args.static is not None and not args.static.is_dir():
        parser.error(f"--static {args.static} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(host=args.host, port=args.port, static_dir=args.static)
    except OSError as err:
        logging.getLogger("signaling").error("cannot listen on %s:%s: %s",
                                             args.host, args.port, err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
