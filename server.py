#!/usr/bin/env python3
"""python server.py: the SplitRTC signaling server.

Brokers WebRTC set-up between the senders and receivers of a room (Socket.IO, protocol in
docs/signaling.md), relays their stats to the room's dashboards, and serves the browser
pages. It never sees a frame: latents go peer to peer over the data channels, which keep
streaming if this server restarts (the Python peers reconnect and rejoin by themselves).

    python server.py                       # http://127.0.0.1:8080
    python server.py --host 0.0.0.0 --port 9000 --max-room-peers 256

Ctrl-C or SIGTERM closes every client connection and exits 0 within 3 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signaling import run
from signaling.limits import DEFAULT_BURST, DEFAULT_EVENTS_PER_S, DEFAULT_MAX_ROOM_PEERS, Limits
from splitcore.process import cli

PROG = "server.py"

EPILOG = """\
pages: /sender /receiver /dashboard, /healthz (JSON: room and peer counts, counters).
Browser packages come from node_modules (run `npm ci` in the repo root first).
Browsers give camera access and WASM threads only to secure contexts: use 127.0.0.1 or
localhost, or put HTTPS in front when serving other machines.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser("python server.py", __doc__, EPILOG)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)")
    p.add_argument("--port", type=cli.port, default=8080,
                   help="TCP port, 0 for any free one (default: %(default)s)")
    p.add_argument("--static", type=Path, default=None, metavar="DIR",
                   help="folder of the pages and /static files (default: ./static next to server.py)")
    p.add_argument("--max-room-peers", type=cli.positive(int, "peers per room, 0: no limit", zero_ok=True),
                   default=DEFAULT_MAX_ROOM_PEERS, metavar="N",
                   help="most members of one room, every role counted; a join beyond it is refused with "
                        "a clear error (default: %(default)s, 0: no limit)")
    p.add_argument("--max-events-per-s", type=cli.positive(float, "events per second, 0: no limit", zero_ok=True),
                   default=DEFAULT_EVENTS_PER_S, metavar="R",
                   help="each client's sustained event rate; beyond it events are dropped, and a client "
                        "that goes on after --burst dropped events is disconnected (default: %(default)g, "
                        "0: no limit; peers send about 1 a second)")
    p.add_argument("--burst", type=cli.positive(int, "events"), default=DEFAULT_BURST, metavar="N",
                   help="events a client may send at once above the rate (default: %(default)s)")
    cli.add_log_level(p)
    args = p.parse_args(argv)
    if args.static is not None and not args.static.is_dir():
        p.error(f"--static {args.static} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging(args.log_level)
    busy = cli.port_in_use(args.host, args.port)
    if busy:
        return cli.fail(PROG, busy)
    limits = Limits(max_room_peers=args.max_room_peers, events_per_s=args.max_events_per_s, burst=args.burst)
    try:
        run(host=args.host, port=args.port, static_dir=args.static, limits=limits)
    except OSError as err:  # lost a race for the port since the check
        return cli.fail(PROG, cli.describe_bind_error(args.host, args.port, err))
    except KeyboardInterrupt:  # only where the loop takes no signal handlers (Windows)
        pass
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
