"""Validation of client payloads, turning untrusted JSON into typed requests.

Every check raises `Refused` with a message meant for the client, so a bad message costs the
sender one `error` event and never reaches the relay logic or another client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import Refused
from .rooms import ROLES
from .token import MAX_TOKEN_CHARS

MAX_PAYLOAD_BYTES = 64 * 1024
# Deepest JSON nesting accepted in a packet, counting Socket.IO's own [event, payload] array.
# The protocol's deepest payload (stats: [event, {report: [{...}]}]) is 4; 32 leaves room for
# free-form `app` stats. Checked on the raw text before json.loads, whose recursion a
# ~1000-deep payload would otherwise exhaust.
MAX_JSON_DEPTH = 32
MAX_EVENT_CHARS = 64  # event names are short words; anything longer is refused undecoded
MAX_SDP_BYTES = 64 * 1024
MAX_NAME_CHARS = 64
MAX_ID_CHARS = 128  # Socket.IO sids are 20 chars; anything much longer is not an id
MAX_CANDIDATE_CHARS = 4096
MAX_MID_CHARS = 256
# The room-name rule. Python's only copy; the browser's copies (same pattern) are in
# static/js/ui/page.js, static/js/dashboard.js and static/index.html (plus the HTML
# `pattern` attributes of static/index.html, sender.html and receiver.html).
ROOM_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
ROOM_RE = re.compile(ROOM_PATTERN)
SIGNAL_TYPES = ("offer", "answer", "candidate")


@dataclass(frozen=True)
class JoinRequest:
    room: str
    role: str
    name: str
    token: str | None = None
    pool: bool = False  # ``room`` names a receiver pool (docs/signaling.md, "Pools")


@dataclass(frozen=True)
class SignalRequest:
    to: str
    type: str
    sdp: str | None
    candidate: dict[str, Any] | None


@dataclass(frozen=True)
class StatsRequest:
    report: list[dict[str, Any]]
    app: dict[str, Any]


def payload_object(args: tuple[Any, ...], *, optional: bool = False) -> dict[str, Any]:
    """The single JSON-object argument of an event, size-checked.

    Socket.IO lets a client send any number of arguments of any type; the protocol says
    exactly one object. `optional` allows no argument at all (`leave` sent bare).
    """
    if not args and optional:
        return {}
    if len(args) != 1:
        raise Refused(f"expected one JSON object as payload, got {len(args)} arguments")
    payload = args[0]
    if not isinstance(payload, dict):
        raise Refused(f"payload must be a JSON object, got {_json_type(payload)}")
    try:
        size = len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError) as err:  # binary attachments, NaN, ...
        raise Refused(f"payload is not plain JSON: {err}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise Refused(f"payload is {size} bytes JSON-encoded, limit is {MAX_PAYLOAD_BYTES}")
    return payload


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OPEN_CLOSE = str.maketrans("{}", "[]")


def nesting_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays/objects deeper than ``limit``, found without
    parsing it: strings are cut out, the brackets left are peeled one level per pass (each
    pass removes every innermost pair), so the cost is at most ``limit`` linear passes in C.
    Malformed text answers False and is left for the JSON parser to refuse."""
    skeleton = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).translate(_OPEN_CLOSE)
    for _ in range(limit):
        if not skeleton:
            return False
        peeled = skeleton.replace("[]", "")
        if peeled == skeleton:
            return False  # unbalanced: not JSON
        skeleton = peeled
    return bool(skeleton) and skeleton.replace("[]", "") != skeleton


def parse_join(payload: dict[str, Any]) -> JoinRequest:
    room = _required(payload, "room", max_chars=64)
    if not ROOM_RE.fullmatch(room):
        raise Refused(f"room must match ^{ROOM_PATTERN}$, got {room!r}")
    role = _required(payload, "role", max_chars=16)
    if role not in ROLES:
        raise Refused(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    name = _string(payload, "name", max_chars=MAX_NAME_CHARS, required=False) or ""
    token = _string(payload, "token", max_chars=MAX_TOKEN_CHARS, required=False) or None
    pool = payload.get("pool", False)
    if not isinstance(pool, bool):
        raise Refused(f"'pool' must be true or false, got {_json_type(pool)}")
    return JoinRequest(room=room, role=role, name=name, token=token, pool=pool)


MAX_EXCLUDE = 64  # receivers a sender may ask not to be given (those it just failed with)


def parse_assign(payload: dict[str, Any]) -> set[str]:
    """The ``exclude`` list of an ``assign`` request: receiver ids, bounded in number and length."""
    exclude = payload.get("exclude", [])
    if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE:
        raise Refused(f"'exclude' must be an array of at most {MAX_EXCLUDE} receiver ids")
    if not all(isinstance(e, str) and len(e) <= MAX_ID_CHARS for e in exclude):
        raise Refused(f"'exclude' must hold receiver ids (strings of at most {MAX_ID_CHARS} characters)")
    return set(exclude)


def parse_signal(payload: dict[str, Any]) -> SignalRequest:
    to = _required(payload, "to", max_chars=MAX_ID_CHARS)
    kind = _required(payload, "type", max_chars=16)
    if kind not in SIGNAL_TYPES:
        raise Refused(f"type must be one of {', '.join(SIGNAL_TYPES)}, got {kind!r}")
    if kind == "candidate":
        if "candidate" not in payload:
            raise Refused("a candidate signal needs a 'candidate' field (null ends candidates)")
        return SignalRequest(to, kind, None, _candidate(payload["candidate"]))
    sdp = _string(payload, "sdp", max_chars=MAX_SDP_BYTES)
    if not sdp or len(sdp.encode("utf-8")) > MAX_SDP_BYTES:
        raise Refused(f"sdp must be a non-empty string of at most {MAX_SDP_BYTES} bytes")
    return SignalRequest(to, kind, sdp, None)


STATS_FIELDS = ("report", "app")


def parse_stats(payload: dict[str, Any]) -> StatsRequest:
    """A peer's stats, which are always published as its own: the server stamps who sent them
    (``from``, ``role``, ``name``), so any other field, such as a ``from`` naming another
    peer, is refused rather than passed on or silently dropped."""
    extra = sorted(set(payload) - set(STATS_FIELDS))
    if extra:
        shown = ", ".join(repr(k[:MAX_EVENT_CHARS]) for k in extra[:4])
        raise Refused(f"stats take only 'report' and 'app' (the server says who sent them); got {shown}")
    report = payload.get("report")
    if not isinstance(report, list) or not all(isinstance(e, dict) for e in report):
        raise Refused(f"'report' must be an array of objects, got {_json_type(report)}")
    app = payload.get("app")
    if not isinstance(app, dict):
        raise Refused(f"'app' must be an object, got {_json_type(app)}")
    return StatsRequest(report=report, app=app)


def _candidate(value: Any) -> dict[str, Any] | None:
    """An RTCIceCandidateInit reduced to its known fields, or None for end-of-candidates.

    Only known fields are relayed, so the addressee never gets arbitrary data through us.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Refused(f"'candidate' must be an object or null, got {_json_type(value)}")
    out: dict[str, Any] = {
        "candidate": _string(value, "candidate", max_chars=MAX_CANDIDATE_CHARS,
                             required=False) or "",
        "sdpMid": _string(value, "sdpMid", max_chars=MAX_MID_CHARS, required=False),
        "sdpMLineIndex": _index(value.get("sdpMLineIndex")),
    }
    ufrag = _string(value, "usernameFragment", max_chars=MAX_MID_CHARS, required=False)
    if ufrag is not None:
        out["usernameFragment"] = ufrag
    return out


def _index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise Refused(f"'sdpMLineIndex' must be a small non-negative integer or null, "
                      f"got {value!r}")
    return value


def _required(obj: dict[str, Any], key: str, *, max_chars: int) -> str:
    value = _string(obj, key, max_chars=max_chars)
    assert value is not None  # required=True raises instead
    return value


def _string(obj: dict[str, Any], key: str, *, max_chars: int,
            required: bool = True) -> str | None:
    """obj[key] as a string of bounded length; None if absent/null and not required."""
    value = obj.get(key)
    if value is None:
        if required:
            raise Refused(f"missing required field {key!r}")
        return None
    if not isinstance(value, str):
        raise Refused(f"{key!r} must be a string, got {_json_type(value)}")
    if len(value) > max_chars:
        raise Refused(f"{key!r} is {len(value)} characters long, limit is {max_chars}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, which is what a JS client author will recognise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
