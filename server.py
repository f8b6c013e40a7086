#!/usr/bin/env python3
"""python server.py: the SplitRTC signaling server.

Brokers WebRTC set-up between the senders and receivers of a room (Socket.IO, protocol in
docs/signaling.md), relays their stats to the room's dashboards, and serves the browser
pages. It never sees a frame: latents go peer to peer over the data channels, which keep
streaming if this server restarts (the Python peers reconnect and rejoin by themselves).

    python server.py                       # http://127.0.0.1:8080
    python server.py --host 0.0.0.0 --port 9000 --max-room-peers 256
    python server.py --port 8081 --redis redis://10.0.0.5:6379/0   # one of several nodes
    SPLITRTC_SECRET=... SPLITRTC_TURN_SECRET=... python server.py --host 0.0.0.0 --port 8443 \
        --cert build/certs/server.pem --key build/certs/server.key --ice-servers ice.json

Ctrl-C or SIGTERM closes every client connection and exits 0 within 3 s.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path

from signaling import run, token, turn
from signaling.access import Access
from signaling.errors import RedisUnavailable
from signaling.iceplan import IcePlan
from signaling.limits import DEFAULT_BURST, DEFAULT_EVENTS_PER_S, DEFAULT_MAX_ROOM_PEERS, Limits
from signaling.runner import tls_context
from splitcore.process import cli
from splitcore.rtc import ice

PROG = "server.py"

EPILOG = """\
pages: /sender /receiver /dashboard, /healthz (JSON: room and peer counts, counters).
Browser packages come from node_modules (run `npm ci` in the repo root first).
Browsers give camera access and WASM threads only to secure contexts: use 127.0.0.1 or
localhost, or --cert/--key (python -m signaling.certs, `make cert`) when serving other machines.
Secrets come best from the environment ($SPLITRTC_SECRET, $SPLITRTC_TURN_SECRET): a command
line is visible to every user of the machine.
"""
ENV_TURN_SECRET = "SPLITRTC_TURN_SECRET"
ENV_REDIS = "SPLITRTC_REDIS"


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
    a = p.add_argument_group("access control")
    a.add_argument("--secret", default=None,
                   help=f"turn access control on: joins need a token signed with it (python -m signaling.token); "
                        f"default: ${token.ENV_SECRET}, else none (open server)")
    a.add_argument("--room", default="demo", help="room of the sender URL and QR code printed at start (default: %(default)s)")
    p.add_argument("--redis", default=None, metavar="URL",
                   help="redis://HOST:PORT/DB: run as one of several signaling nodes that share rooms, pools and "
                        "stats through this Redis (clients use websockets only: no sticky sessions needed); the "
                        "Redis must be private to the nodes. Default: $SPLITRTC_REDIS, else a single node")
    ice.add_ice_options(p)
    g = p.add_argument_group("TURN credentials")
    g.add_argument("--turn-secret", default=None,
                   help="coturn's static-auth-secret: every join gets fresh TURN REST credentials for the "
                        f"--ice-servers TURN urls (default: ${ENV_TURN_SECRET}, else credentials as configured)")
    g.add_argument("--turn-ttl", type=token.parse_duration, default=turn.DEFAULT_TTL_S, metavar="DURATION",
                   help="how long minted TURN credentials are valid: 90s, 30m, 8h (default: 6h)")
    t = p.add_argument_group("HTTPS")
    t.add_argument("--cert", type=Path, default=None, metavar="FILE", help="PEM certificate (chain): serve over TLS")
    t.add_argument("--key", type=Path, default=None, metavar="FILE", help="PEM private key of --cert")
    cli.add_log_level(p)
    args = p.parse_args(argv)
    if args.static is not None and not args.static.is_dir():
        p.error(f"--static {args.static} is not a folder")
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    args.redis = args.redis or os.environ.get(ENV_REDIS) or None
    if args.redis is not None and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        p.error("--redis must be a redis://HOST:PORT/DB (or rediss://, unix://) URL")
    return args


def security(args: argparse.Namespace) -> tuple[Access, IcePlan | None, ssl.SSLContext | None]:
    """Access rules, ICE plan and TLS context from the options; ValueError, OSError or
    ssl.SSLError with a message a person can act on."""
    secret = args.secret or os.environ.get(token.ENV_SECRET) or None
    access = Access(secret)
    turn_secret = args.turn_secret or os.environ.get(ENV_TURN_SECRET) or None
    config = ice.load(args.ice_servers, args.relay_only, turn_credentials=turn_secret is None)
    if turn_secret and not any(s.is_turn for s in config.servers):
        raise ValueError("--turn-secret needs a turn: url in --ice-servers (or $SPLITRTC_ICE_SERVERS)")
    plan = IcePlan(config, turn_secret, args.turn_ttl) if config.servers or turn_secret else None
    ctx = tls_context(args.cert, args.key) if args.cert is not None else None
    return access, plan, ctx


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging(args.log_level)
    busy = cli.port_in_use(args.host, args.port)
    if busy:
        return cli.fail(PROG, busy)
    limits = Limits(max_room_peers=args.max_room_peers, events_per_s=args.max_events_per_s, burst=args.burst)
    try:
        access, plan, ctx = security(args)
    except (ValueError, OSError, ssl.SSLError) as err:
        return cli.fail(PROG, err)
    try:
        run(host=args.host, port=args.port, static_dir=args.static, limits=limits, access=access,
            ice=plan, ssl_context=ctx, room=args.room, redis_url=args.redis)
    except RedisUnavailable as err:  # a clear line, no traceback
        print(f"{PROG}: {err}", file=sys.stderr)
        return cli.EXIT_FAILED
    except OSError as err:  # lost a race for the port since the check
        return cli.fail(PROG, cli.describe_bind_error(args.host, args.port, err))
    except KeyboardInterrupt:  # only where the loop takes no signal handlers (Windows)
        pass
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
