"""The latent frame: header layout, encoding into <=64 KiB messages, decoding, reassembly.

``docs/wire-format.md`` is the specification; ``static/js/wire/frame.js`` is the browser's twin,
and ``tests/vectors/`` keeps the two byte-compatible. This module knows nothing about what
the payload bytes mean (that is ``splitcore.wire.codecs``): it only moves them, whole, in order.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

MAGIC = b"SR"
VERSION = 1
MSG_LATENT = 1
MAX_MESSAGE = 65536
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 24
FIXED = struct.Struct("<2sBBHBBBBBBIdIHHIHH")  # the 40-byte fixed part, see the spec table
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_E = TypeVar("_E", bound=IntEnum)


class DType(IntEnum):
    FLOAT32 = 1
    FLOAT16 = 2
    INT8 = 3
    UINT8 = 4
    UINT4 = 5


class Codec(IntEnum):
    NONE = 0            # the elements are the values (float32, float16)
    AFFINE_TENSOR = 1   # int8, one scale/zero point per frame, in the header params
    AFFINE_CHANNEL = 2  # int8, per-channel scale/zero point calibrated in the manifest
    CLIP4 = 3           # uint4, clipped to [lo, lo + 15 * step], params in the header


class Compression(IntEnum):
    NONE = 0
    ZLIB = 1
    ZSTD = 2
    # 3 was lz4 (block): retired after the split study measured 1.11-1.56x on quantized latents,
    # against 1.52-2.43x for zlib. Never reuse the id: old frames must stay refused.


class FrameError(ValueError):
    """A message that is not a valid frame. ``code`` is the spec's error code, sent back to
    the sender in an ``error`` message; ``seq`` is set when the header was readable."""

    def __init__(self, code: str, detail: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.seq = code, detail, seq
        self.abandoned: Header | None = None  # an older incomplete frame this one ended


@dataclass(frozen=True)
class Header:
    """Everything in a frame but the payload bytes."""

    seq: int
    capture_ms: float
    split: str
    shape: tuple[int, ...]
    dtype: DType = DType.FLOAT32
    codec: Codec = Codec.NONE
    compression: Compression = Compression.NONE
    payload_len: int = 0
    frag_index: int = 0
    frag_count: int = 1
    frag_offset: int = 0
    params: bytes = field(default=b"", repr=False)

    @property
    def header_len(self) -> int:
        raw = FIXED.size + 4 * len(self.shape) + len(self.split) + len(self.params)
        return (raw + 7) & ~7


def element_count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def shape_payload_bound(n: int) -> int:
    """The largest payload_len any frame of ``n`` elements may declare, whatever its dtype,
    codec and compression: 4 bytes a value plus more than the worst-case expansion of either
    compressor on incompressible data (< 1/256, + 1 KiB). This is the frame-level check, made
    before the codec is looked at; ``splitcore.wire.codecs.max_payload_len`` is the tight one."""
    return 4 * n + (4 * n) // 256 + 1024


def pack_header(h: Header) -> bytes:
    """Serialise ``h``; raises ValueError for a header this side should never produce."""
    if not _SPLIT_RE.match(h.split):
        raise ValueError(f"split id {h.split!r} must match {_SPLIT_RE.pattern}")
    if not 1 <= len(h.shape) <= MAX_NDIM or min(h.shape) < 1 or element_count(h.shape) > MAX_ELEMENTS:
        raise ValueError(f"shape {h.shape} must have 1..{MAX_NDIM} dimensions, each >= 1, "
                         f"at most {MAX_ELEMENTS} elements")
    if not 0 <= h.seq <= 0xFFFFFFFF:
        raise ValueError(f"seq {h.seq} does not fit in 32 bits")
    split = h.split.encode("ascii")
    fixed = FIXED.pack(MAGIC, VERSION, MSG_LATENT, h.header_len, int(h.dtype), int(h.codec),
                       int(h.compression), len(h.shape), len(split), 0, h.seq, h.capture_ms,
                       h.payload_len, h.frag_index, h.frag_count, h.frag_offset,
                       len(h.params), 0)
    body = fixed + struct.pack(f"<{len(h.shape)}I", *h.shape) + split + h.params
    return body + bytes(h.header_len - len(body))


def encode(h: Header, payload: bytes | memoryview, max_message: int = MAX_MESSAGE) -> list[bytes]:
    """Split ``payload`` into messages of at most ``max_message`` bytes, header on each.

    One ``bytes`` per message is the only allocation: aiortc's ``send`` takes ``bytes``, and
    ``b"".join`` copies the tensor once, straight from the array's buffer.
    """
    payload = memoryview(payload).cast("B")
    room = max_message - h.header_len  # header_len depends on shape, split and params only
    if room <= 0:
        raise ValueError(f"header alone exceeds max_message={max_message}")
    count = max(1, -(-len(payload) // room))
    if count > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes needs {count} fragments (max 65535)")
    out = []
    for i in range(count):
        off = i * room
        part = Header(**{**h.__dict__, "payload_len": len(payload), "frag_index": i,
                         "frag_count": count, "frag_offset": off})
        out.append(b"".join((pack_header(part), payload[off:off + room])))
    return out


def decode(msg: bytes | bytearray | memoryview) -> tuple[Header, memoryview]:
    """Parse one message into its header and this fragment's payload bytes (a view)."""
    view = memoryview(msg).cast("B")
    if len(view) < 4:
        raise FrameError("truncated", f"{len(view)} bytes is shorter than any header")
    if bytes(view[:2]) != MAGIC:
        raise FrameError("bad_magic", f"starts with {bytes(view[:2])!r}, expected {MAGIC!r}")
    if view[2] != VERSION:
        raise FrameError("bad_version", f"version {view[2]}, this side speaks {VERSION}")
    if view[3] != MSG_LATENT:
        raise FrameError("bad_type", f"message type {view[3]} is not a latent frame (1)")
    if len(view) < FIXED.size:
        raise FrameError("truncated", f"{len(view)} bytes is shorter than the {FIXED.size}-byte header")
    (_, _, _, hlen, dt, codec, comp, ndim, slen, _flags, seq, cap, plen, fidx, fcount, foff,
     plen_params, _r) = FIXED.unpack_from(view)
    need = FIXED.size + 4 * ndim + slen + plen_params
    if hlen % 8 or hlen < need:
        raise FrameError("bad_header", f"header_len {hlen} (needs >= {need}, multiple of 8)", seq)
    if len(view) < hlen:
        raise FrameError("truncated", f"{len(view)} bytes is shorter than header_len {hlen}", seq)
    if not 1 <= ndim <= MAX_NDIM or not 1 <= slen <= 64:
        raise FrameError("bad_header", f"ndim {ndim} or split length {slen} out of range", seq)
    shape = struct.unpack_from(f"<{ndim}I", view, FIXED.size)
    split = bytes(view[FIXED.size + 4 * ndim:FIXED.size + 4 * ndim + slen]).decode("ascii", "replace")
    if not _SPLIT_RE.match(split):
        raise FrameError("bad_header", f"split id {split!r} has characters outside [A-Za-z0-9_.-]", seq)
    params = bytes(view[need - plen_params:need])
    header = Header(seq, cap, split, tuple(shape), _enum(DType, dt, "bad_dtype", seq),
                    _enum(Codec, codec, "bad_codec", seq),
                    _enum(Compression, comp, "bad_compression", seq),
                    plen, fidx, fcount, foff, params)
    _check_geometry(header, len(view) - hlen)
    return header, view[hlen:]


def _enum(kind: type[_E], value: int, code: str, seq: int) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise FrameError(code, f"unknown {kind.__name__} {value}", seq) from None


def _check_geometry(h: Header, frag_len: int) -> None:
    if min(h.shape) < 1 or element_count(h.shape) > MAX_ELEMENTS:
        raise FrameError("bad_shape", f"shape {h.shape} (each dim >= 1, <= {MAX_ELEMENTS} elements)", h.seq)
    if h.payload_len > shape_payload_bound(element_count(h.shape)):
        raise FrameError("bad_length", f"payload_len {h.payload_len} is too large for shape {h.shape}", h.seq)
    if h.frag_count < 1 or h.frag_index >= h.frag_count:
        raise FrameError("bad_fragment", f"fragment {h.frag_index} of {h.frag_count}", h.seq)
    if h.frag_count == 1 and (h.frag_offset or frag_len != h.payload_len):
        code = "truncated" if frag_len < h.payload_len else "bad_length"
        raise FrameError(code, f"payload is {frag_len} bytes at offset {h.frag_offset}, "
                         f"payload_len says {h.payload_len}", h.seq)
    if h.frag_offset + frag_len > h.payload_len:
        raise FrameError("bad_fragment", f"bytes {h.frag_offset}+{frag_len} overrun payload_len "
                         f"{h.payload_len}", h.seq)


PayloadLimit = Callable[[Header], int]
"""``limit(header) -> int`` for ``Reassembler``: raises FrameError for a frame this side will
not take at all, or returns the largest ``payload_len`` it accepts for that header."""


class Reassembler:
    """Collects the fragments of one frame at a time, for one sender connection.

    The channel is reliable and ordered, so fragments of a frame arrive in order and a newer
    ``seq`` means the older frame will never complete: it is given up and reported, so the
    sender can account for it.

    Memory: ``limit`` (see ``PayloadLimit``) sees every new frame's header, single message or
    first fragment, before anything is stored for it; a frame that declares more than it
    allows is refused (``too_large``). The receiver's limit checks split and shape against
    its manifest and returns ``codecs.max_payload_len``, so what a sender declares never
    decides how much is allocated. One buffer is reused for all frames: it grows (at most to
    what ``limit`` allowed for the frame that made it grow) and never shrinks. Without a limit
    only the frame-level checks of ``decode`` bound it (up to 4 bytes an element).
    """

    def __init__(self, limit: PayloadLimit | None = None) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._head: Header | None = None
        self._next_offset = 0

    @property
    def capacity(self) -> int:
        """Bytes held for reassembly (the reused buffer), for tests and memory reports."""
        return len(self._buf)

    def push(self, h: Header, part: memoryview) -> tuple[tuple[Header, memoryview] | None, Header | None]:
        """Returns ``(complete frame or None, abandoned older frame's header or None)``.

        A completed fragmented frame's payload is a view of the reused buffer: it is valid
        until the next ``push``. A FrameError carries in ``abandoned`` the older frame it
        ended, if any."""
        if h.frag_count == 1:
            abandoned, self._head = self._head, None
            self._admit(h, abandoned)
            return (h, part), abandoned
        abandoned = None
        if self._head is not None and (h.seq != self._head.seq or h.frag_index == 0):
            abandoned, self._head = self._head, None
        if self._head is None:
            if h.frag_index != 0:
                raise _with(FrameError("bad_fragment", f"fragment {h.frag_index} without fragment 0", h.seq), abandoned)
            allowed = self._admit(h, abandoned)
            if len(self._buf) < h.payload_len:
                # Grow geometrically so that compressed frames of varying size settle on one
                # buffer after a few frames, but never past what this frame was allowed.
                self._buf = bytearray(max(h.payload_len, min(allowed, 2 * len(self._buf))))
            self._head, self._next_offset = h, 0
        if h.frag_offset != self._next_offset or h.payload_len != self._head.payload_len:
            self._head = None
            raise _with(FrameError("bad_fragment", f"fragment {h.frag_index} at offset {h.frag_offset} of "
                                   f"payload_len {h.payload_len}, expected offset {self._next_offset}", h.seq), abandoned)
        self._buf[h.frag_offset:h.frag_offset + len(part)] = part
        self._next_offset += len(part)
        if h.frag_index + 1 < h.frag_count:
            return None, abandoned
        first, self._head = self._head, None
        if self._next_offset != h.payload_len:
            raise _with(FrameError("truncated", f"fragments gave {self._next_offset} of {h.payload_len} bytes", h.seq),
                        abandoned)
        return (first, memoryview(self._buf)[:h.payload_len]), abandoned

    def _admit(self, h: Header, abandoned: Header | None) -> int:
        """The limit's verdict on a new frame, before anything is allocated for it: the bytes
        it may have (its own payload_len when there is no limit)."""
        if self._limit is None:
            return h.payload_len
        try:
            allowed = self._limit(h)
            if h.payload_len > allowed:
                raise FrameError("too_large", f"payload_len {h.payload_len} exceeds the {allowed} bytes a "
                                 f"{h.codec.name.lower()}/{h.compression.name.lower()} frame of split {h.split} "
                                 f"and shape {list(h.shape)} may have", h.seq)
        except FrameError as err:
            if err.seq is None:
                err.seq = h.seq
            raise _with(err, abandoned) from None
        return allowed


def _with(err: FrameError, abandoned: Header | None) -> FrameError:
    """``err``, carrying the older incomplete frame it ended (for the sender's accounting)."""
    if abandoned is not None:
        err.abandoned = abandoned
    return err
