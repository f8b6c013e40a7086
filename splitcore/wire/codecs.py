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
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from splitcore.wire.frame import Codec, Compression, DType, FrameError, Header, element_count

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
        return DType.FLOAT32, Codec.NONE, b"", memoryview(x).cast("B")
    if q == "float16":
        return DType.FLOAT16, Codec.NONE, b"", x.astype(_F16).tobytes()
    if q == "int8-tensor":
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)  # keep 0 exact
        scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
        zp = int(np.clip(np.rint(-128.0 - lo / float(scale)), -128, 127))
        return DType.INT8, Codec.AFFINE_TENSOR, _AFFINE.pack(scale, zp), _affine(x.ravel(), scale, zp)
    if q == "int8-channel":
        cal = spec.channels
        if x.size % len(cal.scale):
            raise ValueError(f"{x.size} values do not split into {len(cal.scale)} channels")
        blocks = x.reshape(len(cal.scale), -1)
        out = np.clip(np.rint(blocks.astype(np.float64) / cal.scale[:, None].astype(np.float64))
                      + cal.zero_point[:, None], -128, 127).astype(np.int8)
        return DType.INT8, Codec.AFFINE_CHANNEL, cal.fingerprint, out.tobytes()
    lo, hi = spec.clip
    step = np.float32((hi - lo) / 15.0)
    codes = np.clip(np.rint((x.ravel().astype(np.float64) - np.float32(lo)) / float(step)), 0, 15).astype(np.uint8)
    return DType.UINT4, Codec.CLIP4, _CLIP.pack(lo, step), pack4(codes)


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


def raw_size(h: Header) -> int:
    """Bytes of the quantized payload before compression, or FrameError if undecodable."""
    n = element_count(h.shape)
    sizes = {(Codec.NONE, DType.FLOAT32): 4 * n, (Codec.NONE, DType.FLOAT16): 2 * n,
             (Codec.AFFINE_TENSOR, DType.INT8): n, (Codec.AFFINE_CHANNEL, DType.INT8): n,
             (Codec.CLIP4, DType.UINT4): (n + 1) // 2}
    size = sizes.get((h.codec, h.dtype))
    if size is None:
        raise FrameError("bad_dtype", f"dtype {h.dtype.name} does not go with codec {h.codec.name}", h.seq)
    want = {Codec.NONE: 0, Codec.AFFINE_TENSOR: 8, Codec.AFFINE_CHANNEL: 4, Codec.CLIP4: 8}[h.codec]
    if len(h.params) != want:
        raise FrameError("bad_params", f"codec {h.codec.name} takes {want} parameter bytes, got {len(h.params)}", h.seq)
    return size



def decode_tensor(h: Header, payload: memoryview | bytes, out: np.ndarray | None = None,
                  channels: ChannelCalibration | None = None) -> np.ndarray:
    """Float32 tensor of ``h.shape``, written into ``out`` when given (reused per frame)."""
    size = raw_size(h)
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
    if len(payload) != h.payload_len:
        raise FrameError("bad_length", f"payload is {len(payload)} bytes, payload_len says {h.payload_len}", h.seq)
    try:
        if h.compression == Compression.NONE:
            return payload
        if h.compression == Compression.ZLIB:
            d = zlib.decompressobj()
            raw = d.decompress(payload, size + 1)  # bounded: a bomb cannot inflate past size
            if not d.eof or d.unused_data:  # browsers refuse trailing bytes too
                raise ValueError("truncated, oversized or trailing-garbage zlib stream")
            return raw
        import zstandard
        return zstandard.ZstdDecompressor().decompress(bytes(payload), max_output_size=size + 1)
    except Exception as exc:  # each library raises its own error type
        raise FrameError("bad_compression", f"{h.compression.name} payload does not decompress: {exc}", h.seq) from None


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
    want = {DType.FLOAT32: _F32, DType.FLOAT16: _F16}.get(dtype)
    if want is None:
        raise ValueError(f"dtype {dtype!r} is not available with codec none")
    if x.dtype != want or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=want)
    return memoryview(x).cast("B")
