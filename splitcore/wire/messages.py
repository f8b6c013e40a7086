"""The JSON text messages on the latent channel: one typed definition, validated on receipt.

Binary messages are latent frames (``splitcore.wire.frame``); text messages are these. The
receiver answers every frame with exactly one ``reply``, ``drop`` or ``error``, so a sender
can account for each frame it sent. ``ping`` and ``pong`` go both ways and keep each side
sure the other is alive (aiortc has no ICE consent checks to tell it, and notices a dead peer
only when SCTP gives up after about 30 s).

``docs/wire-format.md`` is the specification, ``static/js/wire/messages.js`` the browser's
twin, and ``tests/vectors/messages.json`` keeps the two in agreement: both suites parse every
vector and must accept or refuse it with the same code.

Validation is strict about what a sender needs to account for a frame (``seq``, ``type``,
the reply's label) and lenient about what it does not: unknown fields are ignored, and a
``drop`` or ``error`` reason outside the known lists is kept as given, so a newer receiver
that adds a reason still has its frames accounted for.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

SPLIT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DROP_REASONS = ("stale", "incomplete")
TIMING_FIELDS = ("decode_ms", "queue_ms", "tail_ms", "total_ms")
MAX_TEXT = 16 * 1024        # bytes of UTF-8; a reply of 10 classes is ~600 B: far larger is refused unread
MAX_DEPTH = 32              # nesting of objects and arrays; a message needs 3
MAX_CLASSES = 1000          # probs/logits longer than this are refused, not allocated
MAX_REASON = 64
MAX_DETAIL = 1024
U32_MAX = 0xFFFFFFFF
# The data channel protocol a sender sets to ask for compact replies ("probs": [], no logits):
# asked once per connection, so the receiver spends nothing per frame deciding.
COMPACT = "splitrtc.compact"


class MessageError(ValueError):
    """A text message that is not one of ours. ``code`` is ``bad_json`` (not a JSON object
    at all) or ``bad_message`` (a field missing or mistyped); ``seq`` is the frame it was
    about, when that much was readable, so the frame can still be accounted for."""

    def __init__(self, code: str, detail: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.seq = code, detail, seq


@dataclass(frozen=True, slots=True)
class Timing:
    """The receiver's side of a frame's latency, in ms on its own clock: decoding the payload,
    waiting for the tail, the tail itself, and last fragment received to reply sent."""

    decode_ms: float
    queue_ms: float
    tail_ms: float
    total_ms: float


@dataclass(frozen=True, slots=True)
class Reply:
    """The tail's answer to frame ``seq``. ``logits`` are optional: ``--verify`` needs them,
    a compact reply leaves them out. ``probs`` is empty in a compact reply (``COMPACT``: the
    sender asked for label, name and timing only, which is what it accounts with; an empty
    list rather than no field, so every parser written before compact replies reads it)."""

    seq: int
    capture_ms: float
    split: str
    label: int
    name: str
    probs: tuple[float, ...]
    timing: Timing
    logits: tuple[float, ...] | None = None
    type: str = "reply"


@dataclass(frozen=True, slots=True)
class Drop:
    """Frame ``seq`` arrived but will not be answered (``stale``: a newer frame of the same
    sender overtook it; ``incomplete``: a newer frame began before all its fragments came)."""

    seq: int
    capture_ms: float
    reason: str
    type: str = "drop"


@dataclass(frozen=True, slots=True)
class Error:
    """A message the receiver could not use; ``seq`` is None when no header was readable.
    ``reason`` is one of the decoder's error codes (``splitcore.wire.frame``)."""

    seq: int | None
    reason: str
    detail: str = ""
    type: str = "error"


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness, either direction: answered at once with a ``pong`` carrying the same
    ``t_ms`` (the pinging side's monotonic clock, so the answer gives it the round trip)."""

    t_ms: float
    type: str = "ping"


@dataclass(frozen=True, slots=True)
class Pong:
    t_ms: float
    type: str = "pong"


Message = Reply | Drop | Error | Ping | Pong
FrameOutcome = Reply | Drop | Error  # what settles one frame on the sender


def dumps(msg: Message) -> str:
    """Compact JSON of a message; ValueError for a value JSON cannot carry (NaN, inf),
    which browsers' ``JSON.parse`` would refuse."""
    out: dict[str, Any] = {"type": msg.type}
    if isinstance(msg, Reply):
        out.update(seq=msg.seq, capture_ms=msg.capture_ms, split=msg.split, label=msg.label,
                   name=msg.name)
        if msg.logits is not None:
            out["logits"] = list(msg.logits)
        out["probs"] = list(msg.probs)
        out["timing"] = {k: getattr(msg.timing, k) for k in TIMING_FIELDS}
    elif isinstance(msg, Drop):
        out.update(seq=msg.seq, capture_ms=msg.capture_ms, reason=msg.reason)
    elif isinstance(msg, Error):
        out.update(seq=msg.seq, reason=msg.reason, detail=msg.detail)
    else:
        out["t_ms"] = msg.t_ms
    return json.dumps(out, separators=(",", ":"), allow_nan=False)


def parse(text: str | bytes) -> Message:
    """Validate one text message into its type; MessageError says what is wrong."""
    size = len(text) if isinstance(text, bytes) or len(text) > MAX_TEXT else len(text.encode())
    if size > MAX_TEXT:
        raise MessageError("bad_message", f"a text of {size} bytes is longer than any message ({MAX_TEXT})")
    try:
        m = _loads(text)
    except ValueError as exc:
        raise MessageError("bad_json", f"not JSON ({str(exc)[:80]})") from None
    except RecursionError:  # JavaScript parses deep nesting, and then finds no message in it
        raise MessageError("bad_message", "nested too deeply to be a message") from None
    if _too_deep(m):
        raise MessageError("bad_message", "nested too deeply to be a message")
    if not isinstance(m, dict):
        raise MessageError("bad_message", "message is not a JSON object")
    kind = m.get("type")
    if kind == "reply":
        return _reply(m)
    if kind == "drop":
        seq = int(_field(m, "seq", _is_u32, "a u32 integer"))
        return Drop(seq, _field(m, "capture_ms", _is_num, "a finite number", seq),
                    _field(m, "reason", _is_reason, f"a string of 1..{MAX_REASON} characters", seq))
    if kind == "error":
        raw_seq = m.get("seq")
        if raw_seq is not None and not _is_u32(raw_seq):
            raise MessageError("bad_message", f"error message: \"seq\" must be a u32 integer or null, "
                               f"got {_show(raw_seq)}")
        err_seq = int(raw_seq) if raw_seq is not None else None
        detail = m.get("detail", "")
        if not isinstance(detail, str) or len(detail) > MAX_DETAIL:
            raise MessageError("bad_message", f"error message: \"detail\" must be a string of at most "
                               f"{MAX_DETAIL} characters", err_seq)
        return Error(err_seq, _field(m, "reason", _is_reason, f"a string of 1..{MAX_REASON} characters", err_seq),
                     detail)
    if kind in ("ping", "pong"):
        t_ms = _field(m, "t_ms", _is_num, "a finite number")
        return Ping(float(t_ms)) if kind == "ping" else Pong(float(t_ms))
    raise MessageError("bad_message", f"unknown message type {_show(kind)}", _seq_of(m))


def _reply(m: dict[str, Any]) -> Reply:
    seq = int(_field(m, "seq", _is_u32, "a u32 integer"))
    capture_ms = _field(m, "capture_ms", _is_num, "a finite number", seq)
    split = _field(m, "split", lambda v: isinstance(v, str) and bool(SPLIT_RE.match(v)), "a split id", seq)
    label = _field(m, "label", lambda v: _is_int(v) and 0 <= v < MAX_CLASSES, f"an integer in [0, {MAX_CLASSES})", seq)
    name = _field(m, "name", lambda v: isinstance(v, str) and len(v) <= 256, "a string", seq)
    probs = _field(m, "probs", _is_numbers, f"an array of at most {MAX_CLASSES} finite numbers", seq)
    logits = m.get("logits")
    if logits is not None and not _is_numbers(logits):
        raise MessageError("bad_message", f"reply message: \"logits\" must be an array of at most "
                           f"{MAX_CLASSES} finite numbers", seq)
    timing = _field(m, "timing", lambda v: isinstance(v, dict), "an object", seq)
    for k in TIMING_FIELDS:
        if not _is_num(timing.get(k)):
            raise MessageError("bad_message", f"reply message: \"timing.{k}\" must be a finite number, "
                               f"got {_show(timing.get(k))}", seq)
    return Reply(seq, float(capture_ms), split, int(label), name, tuple(float(p) for p in probs),
                 Timing(*(float(timing[k]) for k in TIMING_FIELDS)),
                 tuple(float(v) for v in logits) if logits is not None else None)


def _field(m: dict[str, Any], key: str, ok: Any, what: str, seq: int | None = None) -> Any:
    value = m.get(key)
    if not ok(value):
        raise MessageError("bad_message", f"{m.get('type')} message: \"{key}\" must be {what}, "
                           f"got {_show(value)}", seq)
    return value


def _too_deep(value: Any) -> bool:
    """True when objects and arrays nest deeper than MAX_DEPTH (the top level is depth 1).
    Walks containers only, without recursion; a reply has three."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > MAX_DEPTH:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v)
                         if isinstance(c, dict | list))
    return False


def _seq_of(m: dict[str, Any]) -> int | None:
    seq = m.get("seq")
    return int(seq) if seq is not None and _is_u32(seq) else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity; JSON (and browsers) do not


# One decoder for every message. ``json.loads`` with a keyword builds a JSONDecoder a call,
# whose C scanner looks up six attributes by name, fresh strings each time, and CPython
# 3.11's type cache keeps them (up to its 4096 entries): a third of what filled it in a
# streaming sender, half in a receiver (results/soak/memory.md, tests/unit/test_messages_memory.py).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _loads(text: str | bytes) -> Any:
    """``json.loads(text, parse_constant=_no_constant)``, the same checks, without a decoder a call."""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _is_int(v: Any) -> bool:
    """An integer as JavaScript sees one: 12 and 12.0 (and 1.2e1) alike."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_u32(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= U32_MAX


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_numbers(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_CLASSES and all(_is_num(x) for x in v)


def _is_reason(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= MAX_REASON


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."
