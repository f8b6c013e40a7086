"""Signed room tokens: who may join which room, in which role, until when.

With ``server.py --secret S`` (or ``$SPLITRTC_SECRET``) a join needs a token minted with the
same secret. A token is a JWT (HS256) whose claims are the room, the roles it allows
(``sender``, ``receiver``, ``dashboard``, and ``admin`` for server-wide views such as
``/healthz``), a name for the dashboard, and its expiry. Only the holder of the secret can
mint one, so a stranger who can reach the server cannot join a room, and a sender's token
cannot be used to join as the receiver that would read its latents and forge its replies.

Room ``*`` means every room (for an operator's admin or dashboard token); it must be asked
for explicitly. ``verify`` raises :class:`TokenError` with a ``reason`` code the server can
send back as is (``malformed``, ``bad_signature``, ``expired``, ``not_yet_valid``,
``wrong_room``, ``role_not_allowed``) and a message a person can act on.

Mint one from a shell::

    SPLITRTC_SECRET=... python -m signaling.token --room lab --role sender --ttl 8h --name cam1
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jwt

ENV_SECRET = "SPLITRTC_SECRET"
ROLES = ("sender", "receiver", "dashboard", "admin")
ALL_ROOMS = "*"
AUDIENCE = "splitrtc"            # a JWT signed with the same secret for something else is refused
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32            # RFC 7518 3.2: an HS256 key at least as long as the hash
MAX_TOKEN_CHARS = 4096           # ours are ~250 chars; a longer one is refused before decoding
MAX_TTL_S = 366 * 86400
LEEWAY_S = 30                    # clock skew between the minting machine and the server
ROOM_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")   # the rooms docs/signaling.md allows
NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{0,64}")
REASONS = ("malformed", "bad_signature", "expired", "not_yet_valid", "wrong_room", "role_not_allowed")


class TokenError(ValueError):
    """A token refused; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """What a verified token grants."""

    room: str
    roles: frozenset[str]
    name: str
    exp: int
    iat: int

    def allows(self, role: str) -> bool:
        return role in self.roles

    def covers(self, room: str) -> bool:
        return self.room == ALL_ROOMS or self.room == room


def check_secret(secret: str | bytes) -> bytes:
    """The secret as bytes; ValueError if it is too short to sign with."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret is {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
                         "(python -m signaling.token --new-secret prints one)")
    return key


def mint(secret: str | bytes, room: str, roles: Iterable[str], ttl_s: float, name: str = "",
         now: float | None = None) -> str:
    """A token for ``room`` (or ``*``) allowing ``roles`` for ``ttl_s`` seconds."""
    key = check_secret(secret)
    if room != ALL_ROOMS and not ROOM_RE.fullmatch(room):
        raise ValueError(f"room {room!r} must be 1-64 of A-Z a-z 0-9 _ . - (or {ALL_ROOMS!r} for every room)")
    wanted = sorted(set(roles))
    bad = [r for r in wanted if r not in ROLES]
    if not wanted or bad:
        raise ValueError(f"roles must be a non-empty subset of {', '.join(ROLES)}; got {', '.join(bad) or 'none'}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be > 0 and at most {MAX_TTL_S} s (366 days), got {ttl_s}")
    if not NAME_RE.fullmatch(name):
        raise ValueError("name must be at most 64 characters, without control characters")
    iat = int(time.time() if now is None else now)
    claims = {"aud": AUDIENCE, "room": room, "roles": wanted, "name": name,
              "iat": iat, "exp": iat + max(1, round(ttl_s))}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(secret: str | bytes, token: object, room: str | None, role: str,
           now: float | None = None, leeway_s: float = LEEWAY_S) -> Claims:
    """The claims of ``token`` if it is valid for joining ``room`` as ``role``.

    ``room=None`` asks for a server-wide right (e.g. ``/healthz`` with the ``admin`` role):
    only a token for room ``*`` has it. Checks run in the order of the reasons, so an
    expired token for the wrong room says "expired".
    """
    key = check_secret(secret)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", f"a token is a JWT string of at most {MAX_TOKEN_CHARS} characters")
    try:
        raw = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE,
                         options={"require": ["aud", "exp", "iat", "room", "roles"],
                                  "verify_exp": False, "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidSignatureError:
        raise TokenError("bad_signature", "token signature does not match this server's secret") from None
    except jwt.InvalidAudienceError:
        raise TokenError("malformed", f"token is not a SplitRTC room token (audience is not {AUDIENCE!r})") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError("malformed", f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:  # DecodeError, InvalidAlgorithmError, ...
        raise TokenError("malformed", f"token is not a valid JWT: {exc}") from None
    claims = _claims(raw)
    _check_time(claims, now, leeway_s)
    if room is None:
        if claims.room != ALL_ROOMS:
            raise TokenError("wrong_room",
                             f"token is for room {claims.room!r}; this needs one for every room ({ALL_ROOMS!r})")
    elif not claims.covers(room):
        raise TokenError("wrong_room", f"token is for room {claims.room!r}, not {room!r}")
    if not claims.allows(role):
        raise TokenError("role_not_allowed", f"token allows {', '.join(sorted(claims.roles))}, not {role!r}")
    return claims


def verify_any_room(secret: str | bytes, token: object, roles: Iterable[str],
                    now: float | None = None, leeway_s: float = LEEWAY_S) -> Claims:
    """The claims of ``token`` if it is valid for some room and allows one of ``roles``.

    For what is not tied to one room, such as the model files a sender or receiver page
    fetches: any member of any room may have them, a stranger may not."""
    wanted = tuple(roles)
    if not wanted:
        raise ValueError("verify_any_room needs at least one role")
    last: TokenError | None = None
    for role in wanted:
        try:
            # the token's own room: the signature check in verify() makes it trustworthy
            claims = verify(secret, token, _room_of(token) or "-", role, now, leeway_s)
        except TokenError as exc:
            if exc.reason != "role_not_allowed":
                raise
            last = exc
        else:
            return claims
    assert last is not None
    raise TokenError("role_not_allowed", f"{last}; this needs one of {', '.join(wanted)}")


def _room_of(token: object) -> str:
    """The unverified room claim, only to pick what ``verify`` then checks with the signature."""
    try:
        room = (jwt.decode(token, options={"verify_signature": False}).get("room")
                if isinstance(token, str) and len(token) <= MAX_TOKEN_CHARS else None)
    except jwt.InvalidTokenError:
        return ""
    return room if isinstance(room, str) else ""


def _check_time(claims: Claims, now: float | None, leeway_s: float) -> None:
    t = time.time() if now is None else now
    if t >= claims.exp + leeway_s:
        raise TokenError("expired", f"token expired {_ago(t - claims.exp)} ago; mint a new one")
    if claims.iat > t + leeway_s:
        raise TokenError("not_yet_valid", "token is issued in the future: check the clocks of this "
                                          "server and of the machine that minted it")


def _claims(raw: dict) -> Claims:
    room, roles, name = raw.get("room"), raw.get("roles"), raw.get("name", "")
    exp, iat = raw.get("exp"), raw.get("iat")
    if not isinstance(room, str) or not (room == ALL_ROOMS or ROOM_RE.fullmatch(room)):
        raise TokenError("malformed", "token's room claim is not a room name")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r in ROLES for r in roles):
        raise TokenError("malformed", f"token's roles claim must be a non-empty list of {', '.join(ROLES)}")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise TokenError("malformed", "token's name claim is not a short string")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise TokenError("malformed", "token's exp and iat claims must be integers (Unix seconds)")
    assert isinstance(exp, int) and isinstance(iat, int)
    return Claims(room, frozenset(roles), name, exp, iat)


def _ago(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``8h``, ``7d`` -> seconds (argparse type)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([smhd]?)\s*", text)
    if m is None or int(m[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 8h or 7d")
    seconds = int(m[1]) * _UNITS[m[2] or "s"]
    if seconds > MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"{text} is longer than 366 days")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    from splitcore.process import cli

    p = cli.parser("python -m signaling.token", __doc__,
                   epilog=f"The secret comes from --secret or ${ENV_SECRET} (prefer the variable: a "
                          "command line is visible to every user of the machine). The token is printed "
                          "alone on stdout; give it to a peer as --token, $SPLITRTC_TOKEN or ?token=.")
    p.add_argument("--room", help=f"room the token is for ({ALL_ROOMS!r}: every room, for operators)")
    p.add_argument("--role", action="append", choices=ROLES, default=[],
                   help="a role the token allows (repeat for several)")
    p.add_argument("--ttl", type=parse_duration, default=3600, help="lifetime: 90s, 30m, 8h, 7d (default: 1h)")
    p.add_argument("--name", default="", help="name shown on the dashboard (default: none)")
    p.add_argument("--secret", default=None, help=f"server secret (default: ${ENV_SECRET})")
    p.add_argument("--new-secret", action="store_true", help="print a fresh random secret for server.py --secret and exit")
    args = p.parse_args(argv)
    if args.new_secret:
        print(secrets.token_urlsafe(MIN_SECRET_BYTES))
        return cli.EXIT_OK
    secret = args.secret or os.environ.get(ENV_SECRET, "")
    if not secret:
        return cli.fail(p.prog, f"no secret: pass --secret or set ${ENV_SECRET}")
    if not args.room or not args.role:
        return cli.fail(p.prog, "--room and at least one --role are needed")
    try:
        print(mint(secret, args.room, args.role, args.ttl, args.name))
    except ValueError as exc:
        return cli.fail(p.prog, exc)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
