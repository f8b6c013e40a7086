"""Time-limited TURN credentials: the TURN REST scheme coturn implements with ``use-auth-secret``.

A TURN server needs a username and password; putting a long-lived one in a browser page gives
it to anyone who opens the page. With ``static-auth-secret=S`` in coturn's configuration and
``server.py --turn-secret S``, the signaling server instead mints a pair per peer at join:

    username   = "<expiry, Unix seconds>:<peer name>"
    credential = base64(HMAC-SHA1(S, username))

coturn recomputes the credential from the username and refuses it after the expiry, so a
leaked pair is worth hours, not forever, and the secret never leaves the two servers.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from splitcore.rtc.ice import IceServer

DEFAULT_TTL_S = 6 * 3600
MAX_TTL_S = 7 * 86400
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")   # ':' separates the expiry in coturn's parser


@dataclass(frozen=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: int


def credential_for(secret: str | bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): what coturn computes to check a username."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return base64.b64encode(hmac.new(key, username.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def mint(secret: str | bytes, name: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> TurnCredential:
    """A username/credential pair for ``name`` valid ``ttl_s`` seconds from ``now``.

    ``name`` only labels the allocation in coturn's logs; characters coturn would misparse
    (``:``) or a log would mangle become ``_``, and it is cut to 64.
    """
    if not secret:
        raise ValueError("the TURN secret is empty")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"TURN credential ttl must be > 0 and at most {MAX_TTL_S} s, got {ttl_s}")
    expires = int(time.time() if now is None else now) + max(1, round(ttl_s))
    safe = _NAME_UNSAFE.sub("_", name)[:64] or "peer"
    username = f"{expires}:{safe}"
    return TurnCredential(username, credential_for(secret, username), expires)


def ice_servers_for(peer_name: str, ice: Iterable[IceServer], turn_secret: str | bytes | None,
                    ttl: float = DEFAULT_TTL_S, now: float | None = None) -> list[dict[str, Any]]:
    """The W3C ``RTCIceServer`` list to hand to one peer, with fresh credentials on TURN urls.

    With ``turn_secret`` every server that has a ``turn:``/``turns:`` url gets a new pair (one
    pair for the whole call: it names one peer); its STUN urls, if mixed in, go into an
    entry of their own without credentials. Without a secret the list is passed on as
    configured (static credentials, e.g. for a TURN service that issues its own).
    """
    cred = mint(turn_secret, peer_name, ttl, now) if turn_secret else None
    out: list[dict[str, Any]] = []
    for server in ice:
        if cred is None or not server.is_turn:
            out.append(server.to_dict())
            continue
        turn = [u for u in server.urls if u.startswith("turn")]
        stun = [u for u in server.urls if not u.startswith("turn")]
        if stun:
            out.append(IceServer(tuple(stun)).to_dict())
        out.append(IceServer(tuple(turn), cred.username, cred.credential).to_dict())
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m signaling.turn``: an ICE server list with fresh TURN REST credentials, for a
    Python peer's ``--ice-servers`` (browsers get theirs from the server at join)."""
    import argparse
    import json
    import os
    import sys

    from signaling.token import parse_duration

    p = argparse.ArgumentParser(prog="python -m signaling.turn", description=main.__doc__)
    p.add_argument("--url", action="append", required=True, metavar="URL",
                   help="a turn:/turns: url of the relay (repeatable)")
    p.add_argument("--name", default="peer", help="the peer the credentials name (default: peer)")
    p.add_argument("--ttl", type=parse_duration, default=DEFAULT_TTL_S, metavar="DURATION",
                   help="how long they are valid, e.g. 6h (default: 6 h)")
    p.add_argument("--secret", default=None,
                   help="coturn's static-auth-secret (default: $SPLITRTC_TURN_SECRET)")
    args = p.parse_args(argv)
    secret = args.secret or os.environ.get("SPLITRTC_TURN_SECRET")
    if not secret:
        print("python -m signaling.turn: give --secret or set SPLITRTC_TURN_SECRET", file=sys.stderr)
        return 2
    try:
        servers = ice_servers_for(args.name, [IceServer(tuple(args.url))], secret, args.ttl)
    except ValueError as exc:
        print(f"python -m signaling.turn: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(servers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
