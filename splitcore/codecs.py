"""Latent codecs: how a float32 tensor becomes payload bytes and back.

Version 1 of the wire format carries codec 0 ("none"): the elements are the values, as
little-endian float32 or float16. The frame container (``splitcore.frame``) is codec-blind;
everything about element types and sizes is checked here, so a frame whose length does not
match its shape is refused with ``bad_length`` instead of becoming a wrong tensor.
"""
from __future__ import annotations

import numpy as np

from splitcore.frame import Codec, Compression, DType, FrameError, Header, element_count

_NUMPY = {DType.FLOAT32: np.dtype("<f4"), DType.FLOAT16: np.dtype("<f2")}
NAMES = {"float32": DType.FLOAT32, "float16": DType.FLOAT16}


def payload_size(h: Header) -> int:
    """Bytes the payload of ``h`` must have, or FrameError for a combination we cannot decode."""
    if h.codec != Codec.NONE or h.compression != Compression.NONE:
        raise FrameError("bad_codec", f"codec {int(h.codec)} / compression {int(h.compression)} "
                         "is not supported by this peer", h.seq)
    if h.dtype not in _NUMPY:
        raise FrameError("bad_dtype", f"dtype {h.dtype.name} needs a quantizing codec", h.seq)
    return element_count(h.shape) * _NUMPY[h.dtype].itemsize


def encode_tensor(x: np.ndarray, dtype: DType = DType.FLOAT32) -> memoryview:
    """A view of ``x`` as payload bytes; float32 input with float32 output copies nothing."""
    want = _NUMPY.get(dtype)
    if want is None:
        raise ValueError(f"dtype {dtype!r} is not available with codec none")
    if x.dtype != want or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=want)
    return memoryview(x).cast("B")


def decode_tensor(h: Header, payload: memoryview | bytes, out: np.ndarray | None = None) -> np.ndarray:
    """Float32 tensor of ``h.shape``; written into ``out`` when given (reused per frame)."""
    size = payload_size(h)
    if len(payload) != size or h.payload_len != size:
        raise FrameError("bad_length", f"{h.dtype.name}{list(h.shape)} needs {size} bytes, "
                         f"got {len(payload)} (payload_len {h.payload_len})", h.seq)
    src = np.frombuffer(payload, dtype=_NUMPY[h.dtype]).reshape(h.shape)
    if out is None or out.shape != src.shape:
        return src.astype(np.float32)
    np.copyto(out, src, casting="same_kind")
    return out
