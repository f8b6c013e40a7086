"""Latent codecs: how a float32 tensor becomes payload bytes and back.

A codec is a quantizer (``codec`` and ``dtype`` header fields) optionally followed by a
lossless compressor (``compression``). Names used on the command line and in the study:

    float32 | float16 | int8-tensor | int8-channel | clip4   [+zlib | +zstd]

Where the quantizer's parameters live, and why (``docs/wire-format.md`` has the layout):
- ``int8-tensor``: scale and zero point computed per frame from its min and max, sent in the
  header (8 bytes). The frame is self-describing and never clips.
- ``int8-channel``: one scale and zero point per channel, *calibrated* on training images and
  stored in the manifest; the header carries a 4-byte fingerprint of that calibration so a
  receiver with different numbers refuses the frame. Per-frame per-channel parameters would
  cost 8 bytes x channels (1 KiB for the 2,048-feature split, half its int8 payload).
- ``clip4``: values clipped to a calibrated range, 16 levels, two values a byte (low nibble
  first); ``lo`` and ``step`` go in the header (8 bytes), so the receiver needs no manifest.

Rounding is half-to-even in float64 on both sides of the wire (Python and JavaScript) and
dequantisation is float32 arithmetic, so both implementations produce identical bytes and
identical tensors; ``tests/vectors`` proves it.

Decoding is bounded by what the header implies, never by what the payload claims: the
decompressed size follows from dtype and shape (``raw_size``), a compressed payload is never
inflated past it (``too_large``), and ``max_payload_len`` is the most a legitimate frame can
carry, for the reassembler's limit. Parameters no encoder produces (NaN, infinite or
non-positive scales and steps) are refused (``bad_params``) instead of reaching the tail.
"""
from __future__ import annotations

import hashlib
import math
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from splitcore.wire.frame import Codec, Compression, DType, FrameError, Header, element_count

if TYPE_CHECKING:
    import zstandard

_F32, _F16 = np.dtype("<f4"), np.dtype("<f2")
_AFFINE = struct.Struct("<fi")          # int8-tensor params: scale f32, zero_point i32
_CLIP = struct.Struct("<ff")            # clip4 params: lo f32, step f32
QUANTIZERS = ("float32", "float16", "int8-tensor", "int8-channel", "clip4")
COMPRESSORS = {"zlib": Compression.ZLIB, "zstd": Compression.ZSTD}
# Every receiver, browsers included, decodes these; zstd only Python peers do.
PORTABLE_COMPRESSORS = ("zlib",)


@dataclass(frozen=True)
class ChannelCalibration:
    """Per-channel int8 parameters; channel c is the c-th of ``len(scale)`` equal contiguous
    blocks of the flattened latent (for [1,C,H,W], exactly the C channels)."""

    scale: np.ndarray       # float32 [C]
    zero_point: np.ndarray  # int32 [C], within [-128, 127]

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.scale.astype("<f4").tobytes() +
                              self.zero_point.astype("<i4").tobytes()).digest()[:4]


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec name plus what it needs from the manifest for one split."""

    quantizer: str
    compression: Compression = Compression.NONE
    clip: tuple[float, float] | None = None            # (lo, hi) for clip4
    channels: ChannelCalibration | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        suffix = {v: k for k, v in COMPRESSORS.items()}.get(self.compression)
        return self.quantizer + (f"+{suffix}" if suffix else "")


def parse(name: str, calibration: dict | None = None) -> CodecSpec:
    """``"clip4+zlib"`` -> CodecSpec, taking clip range or channel parameters from the
    split's ``calibration`` (``manifest.json``: ``splits[i].calibration``)."""
    quant, plus, comp = name.partition("+")
    if quant not in QUANTIZERS or (plus and comp not in COMPRESSORS):
        raise ValueError(f"unknown codec {name!r}: use one of {', '.join(QUANTIZERS)}, optionally "
                         f"followed by +{', +'.join(COMPRESSORS)}")
    cal = calibration or {}
    clip = channels = None
    if quant == "clip4":
        if "clip" not in cal:
            raise ValueError("clip4 needs the split's calibrated clip range (manifest 'calibration.clip')")
        clip = (float(cal["clip"][0]), float(cal["clip"][1]))
        if not np.isfinite(clip).all() or clip[1] <= clip[0]:
            raise ValueError(f"clip range {clip} must be finite with hi > lo")
        lo32, step32, top32 = _clip_params(*clip)
        if not (math.isfinite(lo32) and math.isfinite(top32) and step32 > 0):
            # what decoders refuse (bad_params) or decode to infinities must not be produced:
            # lo and step go on the wire as float32, and decoding computes lo + 15 * step in
            # float32, so the range must fit float32 and be wider than 15 of its smallest steps
            raise ValueError(f"clip range {clip} gives lo {lo32}, step {step32} and top value {top32} in "
                             "float32: all must be finite and the step positive")
    if quant == "int8-channel":
        if "int8_channel" not in cal:
            raise ValueError("int8-channel needs calibrated per-channel parameters (manifest "
                             "'calibration.int8_channel')")
        c = cal["int8_channel"]
        channels = ChannelCalibration(np.asarray(c["scale"], np.float32), np.asarray(c["zero_point"], np.int32))
        if (channels.scale.shape != channels.zero_point.shape or not np.all(channels.scale > 0)
                or not np.all(np.isfinite(channels.scale)) or np.any(np.abs(channels.zero_point + 0.5) > 128)
                or not np.array_equal(channels.zero_point, np.asarray(c["zero_point"], np.float64))):
            raise ValueError("int8-channel calibration needs positive finite scales and integer "
                             "zero points in [-128, 127], one each per channel")
    return CodecSpec(quant, COMPRESSORS.get(comp, Compression.NONE), clip, channels)


# ---------------------------------------------------------------------------------- encode


def encode(x: np.ndarray, spec: CodecSpec) -> tuple[DType, Codec, bytes, memoryview | bytes]:
    """(dtype, codec, params, payload) for a float32 latent."""
    dtype, codec, params, raw = _quantize(np.ascontiguousarray(x, np.float32), spec)
    return dtype, codec, params, _compress(raw, spec.compression)


def _quantize(x: np.ndarray, spec: CodecSpec) -> tuple[DType, Codec, bytes, memoryview | bytes]:
    q = spec.quantizer
    if q not in ("float32", "float16") and not np.isfinite(x).all():
        if q == "int8-tensor" or np.isnan(x).any():
            raise ValueError(f"{q} cannot encode non-finite values (NaN{' or inf' if q == 'int8-tensor' else ''})")
    if q == "float32":
        return DType.FLOAT32, Codec.NONE, b"", x.data.cast("B")
    if q == "float16":
        return DType.FLOAT16, Codec.NONE, b"", x.astype(_F16).tobytes()
    if q == "int8-tensor":
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)  # keep 0 exact
        scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
        if scale == 0:  # a range of a few subnormals: (hi - lo) / 255 underflows float32
            scale = np.float32(np.finfo(np.float32).smallest_subnormal)
        zp = int(np.clip(np.rint(-128.0 - lo / float(scale)), -128, 127))
        return DType.INT8, Codec.AFFINE_TENSOR, _AFFINE.pack(scale, zp), _affine(x.ravel(), scale, zp)
    if q == "int8-channel":
        cal = spec.channels
        assert cal is not None  # parse() sets it for int8-channel
        if x.size % len(cal.scale):
            raise ValueError(f"{x.size} values do not split into {len(cal.scale)} channels")
        blocks = x.reshape(len(cal.scale), -1)
        out = np.clip(np.rint(blocks.astype(np.float64) / cal.scale[:, None].astype(np.float64))
                      + cal.zero_point[:, None], -128, 127).astype(np.int8)
        return DType.INT8, Codec.AFFINE_CHANNEL, cal.fingerprint, out.tobytes()
    assert spec.clip is not None  # parse() sets it for clip4
    lo, hi = spec.clip
    step = np.float32((hi - lo) / 15.0)
    codes = np.clip(np.rint((x.ravel().astype(np.float64) - np.float32(lo)) / float(step)), 0, 15).astype(np.uint8)
    return DType.UINT4, Codec.CLIP4, _CLIP.pack(lo, step), pack4(codes)


def _clip_params(lo: float, hi: float) -> tuple[float, float, float]:
    """clip4's (lo, step) as they go on the wire (float32) for a calibrated range, and the
    value code 15 decodes to (float32 arithmetic, as decoders do)."""
    with np.errstate(over="ignore", invalid="ignore"):
        lo32, step32 = np.float32(lo), np.float32((hi - lo) / 15.0)
        return float(lo32), float(step32), float(lo32 + np.float32(15) * step32)


def _affine(v: np.ndarray, scale: np.float32, zp: int) -> bytes:
    return np.clip(np.rint(v.astype(np.float64) / float(scale)) + zp, -128, 127).astype(np.int8).tobytes()


def pack4(codes: np.ndarray) -> bytes:
    """Two 4-bit codes a byte, element 2i in the low nibble; an odd tail gets a zero high nibble."""
    if len(codes) % 2:
        codes = np.append(codes, np.uint8(0))
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8).tobytes()


def _compress(raw: memoryview | bytes, comp: Compression) -> memoryview | bytes:
    if comp == Compression.NONE:
        return raw
    if comp == Compression.ZLIB:
        return zlib.compress(raw, 6)
    import zstandard
    return zstandard.ZstdCompressor(level=3).compress(raw)


# ---------------------------------------------------------------------------------- decode

# Bytes a element takes on the wire, per (codec, dtype) pair that goes together: 2 means
# one element a byte, 1 half a byte (uint4); and the codec's parameter bytes.
_HALF_BYTES = {(Codec.NONE, DType.FLOAT32): 8, (Codec.NONE, DType.FLOAT16): 4,
               (Codec.AFFINE_TENSOR, DType.INT8): 2, (Codec.AFFINE_CHANNEL, DType.INT8): 2,
               (Codec.CLIP4, DType.UINT4): 1}
_PARAMS_LEN = {Codec.NONE: 0, Codec.AFFINE_TENSOR: 8, Codec.AFFINE_CHANNEL: 4, Codec.CLIP4: 8}
_ZSTD_BLOCK_MAX = 128 << 10     # ZSTD_BLOCKSIZE_MAX
_ZSTD_MIN_WINDOW = 1 << 10      # ZSTD_WINDOWLOG_ABSOLUTEMIN


def raw_size(h: Header) -> int:
    """Bytes of the quantized payload before compression, or FrameError if undecodable
    (``bad_dtype``: dtype does not go with codec; ``bad_params``: wrong parameter length)."""
    half = _HALF_BYTES.get((h.codec, h.dtype))
    if half is None:
        raise FrameError("bad_dtype", f"dtype {h.dtype.name} does not go with codec {h.codec.name}", h.seq)
    want = _PARAMS_LEN[h.codec]
    if len(h.params) != want:
        raise FrameError("bad_params", f"codec {h.codec.name} takes {want} parameter bytes, got {len(h.params)}", h.seq)
    return (half * element_count(h.shape) + 1) // 2


def max_payload_len(h: Header) -> int:
    """The largest ``payload_len`` a legitimate frame with ``h``'s shape, dtype, codec and
    compression can carry: the reassembler's limit, so that a sender's claim never decides
    what a receiver allocates. FrameError as ``raw_size`` for a frame no codec decodes.

    With ``n = raw_size(h)`` (the quantized bytes), the compressors' worst cases are their
    documented bounds for incompressible input, which the encoders here stay within:

    - none: ``n`` exactly.
    - zlib: zlib's ``compressBound(n) = n + (n >> 12) + (n >> 14) + (n >> 25) + 13``. On
      incompressible data deflate emits stored blocks, 5 bytes of block header (3 bits padded
      to a byte, LEN, NLEN) per block; zlib at its default memLevel 8 (Python's ``zlib``,
      node's and Chromium's ``CompressionStream``) ends a block at least every 16 KiB of
      input, so 5 bytes per 16 KiB = ``n/4096 + n/16384``; 2 bytes of zlib header, 4 of
      Adler-32 and an empty final block fit in the 13, and ``n >> 25`` is slack for large
      inputs. Measured here on random bytes of 0-400,000 bytes, levels -1 to 9 (Python) and
      node's CompressionStream fed 7-byte writes: never closer than 2 bytes to the bound.
    - zstd: ``ZSTD_COMPRESSBOUND(n) = n + (n >> 8) + ((128 KiB - n) >> 11 if n < 128 KiB)``.
      Incompressible blocks are stored raw with a 3-byte header per block of at most 128 KiB;
      the frame header (at most 18 bytes) and checksum (4) fit in the ``n >> 8`` and in the
      margin for small inputs (64 bytes at n = 0). Measured: levels -5 to 22, with and
      without checksum: at least 54 bytes under.
    """
    n = raw_size(h)
    if h.compression == Compression.ZLIB:
        return n + (n >> 12) + (n >> 14) + (n >> 25) + 13
    if h.compression == Compression.ZSTD:
        return n + (n >> 8) + ((_ZSTD_BLOCK_MAX - n) >> 11 if n < _ZSTD_BLOCK_MAX else 0)
    return n


def check_params(h: Header) -> None:
    """Refuse codec parameters no encoder produces (``bad_params``): int8-tensor's scale must
    be finite and positive, clip4's lo finite and its step finite and positive. Decoding with
    them gives NaN or infinite latents (or all zeros), and a tail that answers garbage. The
    encoder never makes them: its scale is at least the smallest float32 subnormal, and
    ``parse`` refuses a clip range whose float32 lo or step would not be."""
    if h.codec == Codec.AFFINE_TENSOR:
        scale, _ = _AFFINE.unpack(h.params)
        if not (math.isfinite(scale) and scale > 0):
            raise FrameError("bad_params", f"int8-tensor scale {scale} must be finite and positive", h.seq)
    elif h.codec == Codec.CLIP4:
        lo, step = _CLIP.unpack(h.params)
        if not (math.isfinite(lo) and math.isfinite(step) and step > 0):
            raise FrameError("bad_params", f"clip4 lo {lo}, step {step}: lo must be finite, the step "
                             "finite and positive", h.seq)


def decode_tensor(h: Header, payload: memoryview | bytes, out: np.ndarray | None = None,
                  channels: ChannelCalibration | None = None) -> np.ndarray:
    """Float32 tensor of ``h.shape``, written into ``out`` when given (reused per frame).

    Checks, in this order (``static/js/wire/codecs.js`` keeps the same): dtype and params
    length (``raw_size``), params values (``check_params``), payload length and
    decompression bounded by the raw size (``too_large`` past it), the raw size itself."""
    size = raw_size(h)
    check_params(h)
    raw = _decompress(h, payload, size)
    if len(raw) != size:
        raise FrameError("bad_length", f"{h.codec.name}/{h.dtype.name}{list(h.shape)} needs {size} "
                         f"bytes, got {len(raw)} (payload_len {h.payload_len})", h.seq)
    values = _dequantize(h, raw, channels).reshape(h.shape)
    if out is None or out.shape != values.shape:
        return values.astype(np.float32, copy=False)
    np.copyto(out, values, casting="same_kind")
    return out


def _decompress(h: Header, payload: memoryview | bytes, size: int) -> memoryview | bytes:
    """The quantized bytes of a payload, never more than ``size + 1`` of them held: enough to
    tell a stream that inflates past ``size`` (``too_large``) from one that does not."""
    if len(payload) != h.payload_len:
        raise FrameError("bad_length", f"payload is {len(payload)} bytes, payload_len says {h.payload_len}", h.seq)
    if h.compression == Compression.NONE:
        return payload
    if h.compression == Compression.ZLIB:
        return _inflate(h, payload, size)
    return _unzstd(h, payload, size)


def _too_large(h: Header, what: str, size: int) -> FrameError:
    return FrameError("too_large", f"{h.compression.name.lower()} payload {what}; "
                      f"{h.codec.name.lower()}/{h.dtype.name.lower()}{list(h.shape)} is {size} bytes", h.seq)


def _inflate(h: Header, payload: memoryview | bytes, size: int) -> bytes:
    """zlib, bounded: ``max_length`` stops inflation at ``size + 1`` bytes whatever the
    stream holds, and zlib's own state is its fixed 32 KiB window."""
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, size + 1)
    except zlib.error as exc:
        raise FrameError("bad_compression", f"zlib payload does not inflate: {exc}", h.seq) from None
    if len(raw) > size:
        raise _too_large(h, "inflates past the expected size", size)
    if not d.eof or d.unused_data:  # browsers refuse trailing bytes too
        raise FrameError("bad_compression", "zlib stream is truncated or followed by other bytes", h.seq)
    return raw


def zstd_window_bound(size: int) -> int:
    """The largest zstd window a frame of ``size`` decompressed bytes may ask for: ``size``
    rounded up to a power of two, at least zstd's minimum of 1 KiB. Our encoder writes
    single-segment frames whose window is their content size; a streaming decoder allocates
    the window a frame asks for, so a larger one is refused before decoding."""
    return max(_ZSTD_MIN_WINDOW, 1 << (size - 1).bit_length())


_zstd_local = threading.local()


def _zstd_decompressor(window: int) -> zstandard.ZstdDecompressor:
    """One decompressor per thread and window cap, reused frame after frame (each use resets
    its session): a ZstdDecompressor is not thread-safe, and creating one per frame costs a
    96 KB context. At most one per power of two up to 64 MiB, so a few per thread."""
    import zstandard
    cache: dict[int, zstandard.ZstdDecompressor] = _zstd_local.__dict__.setdefault("by_window", {})
    d = cache.get(window)
    if d is None:
        d = cache[window] = zstandard.ZstdDecompressor(max_window_size=window)
    return d


def _unzstd(h: Header, payload: memoryview | bytes, size: int) -> bytes:
    """zstd, bounded by ``size`` before anything is allocated (python-zstandard's one-shot
    ``decompress`` allocates the content size a frame header declares, whatever
    ``max_output_size`` says): the first frame's declared content size and window are
    checked, then a streaming reader with the window capped reads at most ``size + 1``
    bytes, across frames, so neither frames without a declared size nor concatenated
    frames get further."""
    import zstandard
    window = zstd_window_bound(size)
    try:
        first = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError as exc:
        raise FrameError("bad_compression", f"zstd payload has no valid frame header: {exc}", h.seq) from None
    if first.content_size != zstandard.CONTENTSIZE_UNKNOWN and first.content_size > size:
        raise _too_large(h, f"declares {first.content_size} bytes", size)
    if first.window_size > window:
        raise _too_large(h, f"asks for a {first.window_size}-byte window (at most {window})", size)
    try:
        raw = _zstd_decompressor(window).stream_reader(payload, read_across_frames=True).read(size + 1)
    except zstandard.ZstdError as exc:
        # a later frame asking for a window past the cap: libzstd's frameParameter_windowTooLarge
        if "too much memory" in str(exc):
            raise _too_large(h, f"has a later frame that asks for a window past {window} bytes", size) from None
        raise FrameError("bad_compression", f"zstd payload does not decompress: {exc}", h.seq) from None
    if len(raw) > size:
        raise _too_large(h, "decompresses past the expected size", size)
    return raw


def _dequantize(h: Header, raw, channels: ChannelCalibration | None) -> np.ndarray:
    if h.codec == Codec.NONE:
        return np.frombuffer(raw, _F32 if h.dtype == DType.FLOAT32 else _F16)
    if h.codec == Codec.AFFINE_TENSOR:
        scale, zp = _AFFINE.unpack(h.params)
        q = np.frombuffer(raw, np.int8).astype(np.float32)
        return (q - np.float32(zp)) * np.float32(scale)
    if h.codec == Codec.AFFINE_CHANNEL:
        if channels is None or channels.fingerprint != bytes(h.params):
            raise FrameError("bad_params", "int8-channel frame calibrated differently from this "
                             "receiver's manifest (fingerprint mismatch)", h.seq)
        if len(raw) % len(channels.scale):
            raise FrameError("bad_shape", f"shape {h.shape} does not split into "
                             f"{len(channels.scale)} calibrated channels", h.seq)
        q = np.frombuffer(raw, np.int8).astype(np.float32).reshape(len(channels.scale), -1)
        return ((q - channels.zero_point[:, None].astype(np.float32)) * channels.scale[:, None]).ravel()
    lo, step = _CLIP.unpack(h.params)
    packed = np.frombuffer(raw, np.uint8)
    codes = np.empty(packed.size * 2, np.uint8)
    codes[0::2], codes[1::2] = packed & 0x0F, packed >> 4
    n = element_count(h.shape)
    return np.float32(lo) + codes[:n].astype(np.float32) * np.float32(step)


# ----------------------------------------------------------------------- codec-none helpers


def encode_tensor(x: np.ndarray, dtype: DType = DType.FLOAT32) -> memoryview:
    """A view of ``x`` as codec-none payload bytes; float32 input copies nothing."""
    want = _F32 if dtype == DType.FLOAT32 else _F16 if dtype == DType.FLOAT16 else None
    if want is None:
        raise ValueError(f"dtype {dtype!r} is not available with codec none")
    if x.dtype != want or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=want)
    return x.data.cast("B")
