"""What the attacker observes: latents from the exact ONNX head, through the exact wire codec.

The head is the shipped ONNX file (float32 or INT8, ``models/manifest.json``) run by ONNX
Runtime as the sender runs it (``splitcore.runtime.models.Runner``, batch 1); the latent is
then encoded, framed into data-channel messages, reassembled and decoded by the same
functions the benchmark study uses (``bench.study.frame_messages``/``decode_messages``, which
call ``splitcore.wire``): the attacker's training latents and its test latents are what a
receiver holds, so no codec is flattered by an attacker trained on other numbers.

The lossless compressors (``+zlib``, ``+zstd``) give back the quantizer's bytes exactly
(``bench.study`` checks it on every image), so the attacks run once per quantizer and every
codec of that quantizer shares the result.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.study import decode_messages, frame_messages, head_file
from splitcore.runtime.models import Manifest, Runner
from splitcore.runtime.preprocess import to_input
from splitcore.wire import codecs

Progress = Callable[[int], object] | None


def quantizer_of(codec: str) -> str:
    """``"clip4+zlib"`` -> ``"clip4"``: the part of a codec name that changes the numbers."""
    q = codec.partition("+")[0]
    if q not in codecs.QUANTIZERS:
        raise ValueError(f"unknown codec {codec!r}")
    return q


def head_latents(m: Manifest, split: str, head: str, images: np.ndarray, progress: Progress = None) -> np.ndarray:
    """[N, *latent shape without batch] float32: ``images`` (uint8 RGB [N,32,32,3]) through the
    split's ``head`` ("float32" or "int8") ONNX file, batch 1 as on the device."""
    point = m.split(split)
    runner = Runner(head_file(m, split, head), m.input_shape, threads=1)
    x = to_input(images)
    out = np.empty((len(x), *point.shape[1:]), np.float32)
    for i in range(len(x)):
        out[i] = runner.run(x[i:i + 1])[0]
        if progress and (i + 1) % 256 == 0:
            progress(256)
    if progress:
        progress(len(x) % 256)
    return out


def through_wire(latents: np.ndarray, spec: codecs.CodecSpec, split: str, progress: Progress = None) -> np.ndarray:
    """Each latent encoded, framed, reassembled and decoded as on the wire: [N, ...] float32."""
    out = np.empty_like(latents)
    for i in range(len(latents)):
        msgs = frame_messages(latents[i][None], spec, split, i)
        out[i] = decode_messages(msgs, spec.channels)[0]
        if progress and (i + 1) % 256 == 0:
            progress(256)
    if progress:
        progress(len(latents) % 256)
    return out


def wire_bytes(latent: np.ndarray, spec: codecs.CodecSpec, split: str) -> int:
    """Bytes of the data-channel messages of one latent (header included)."""
    return sum(map(len, frame_messages(latent[None], spec, split)))
