"""Latent codecs: property tests of every round trip, and bad input that must be refused."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from splitcore.wire import codecs
from splitcore.wire.frame import Codec, Compression, DType, FrameError, Header, Reassembler, decode, encode

COMPRESSIONS = ["", "+zlib", "+zstd"]
latents = arrays(np.float32, st.tuples(st.just(1), st.integers(1, 8), st.integers(1, 6), st.integers(1, 6)),
                 elements=st.floats(-4, 40, width=32, allow_nan=False))


def calibration(c: int) -> dict:
    scale = np.linspace(0.05, 0.2, c).astype(np.float32)
    return {"clip": [0.0, 6.0], "int8_channel": {"scale": scale.tolist(), "zero_point": [-100] * c}}


def round_trip(x: np.ndarray, name: str, cal: dict | None = None) -> tuple[np.ndarray, codecs.CodecSpec, int]:
    """Through the whole wire: codec, frame messages, reassembly, decode."""
    spec = codecs.parse(name, cal)
    dtype, codec, params, payload = codecs.encode(x, spec)
    h = Header(9, 1.5, "s", x.shape, dtype, codec, spec.compression, params=params)
    r, done = Reassembler(), None
    for m in encode(h, payload, max_message=1024):
        done, _ = r.push(*decode(m))
    return codecs.decode_tensor(*done, channels=spec.channels), spec, len(payload)


@settings(max_examples=40, deadline=None)
@given(x=latents, comp=st.sampled_from(COMPRESSIONS))
def test_float_codecs(x: np.ndarray, comp: str) -> None:
    y, _, _ = round_trip(x, "float32" + comp)
    assert np.array_equal(y.view(np.uint32), x.view(np.uint32))
    y, _, _ = round_trip(x, "float16" + comp)
    np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(x=latents, comp=st.sampled_from(COMPRESSIONS))
def test_int8_tensor_error_is_half_a_step(x: np.ndarray, comp: str) -> None:
    y, _, size = round_trip(x, "int8-tensor" + comp)
    lo, hi = min(x.min(), 0), max(x.max(), 0)
    step = (hi - lo) / 255 if hi > lo else 1.0
    assert np.abs(y - x).max() <= step / 2 * 1.001 + 1e-6
    assert np.all(y[x == 0] == 0)  # ReLU zeros stay exact zeros
    if not comp:
        assert size == x.size


@settings(max_examples=60, deadline=None)
@given(x=latents, comp=st.sampled_from(COMPRESSIONS))
def test_int8_channel_clips_to_the_calibrated_range(x: np.ndarray, comp: str) -> None:
    cal = calibration(x.shape[1])
    y, spec, _ = round_trip(x, "int8-channel" + comp, cal)
    s = spec.channels.scale[None, :, None, None]
    zp = spec.channels.zero_point[None, :, None, None]
    clipped = np.clip(x, (-128 - zp) * s, (127 - zp) * s)
    assert np.all(np.abs(y - clipped) <= s / 2 * 1.001 + 1e-6)


@settings(max_examples=60, deadline=None)
@given(x=latents, comp=st.sampled_from(COMPRESSIONS))
def test_clip4_packs_two_values_a_byte(x: np.ndarray, comp: str) -> None:
    y, _, size = round_trip(x, "clip4" + comp, calibration(x.shape[1]))
    step = np.float32(6.0 / 15)
    assert np.all(np.abs(y - np.clip(x, 0, 6)) <= step / 2 * 1.001 + 1e-6)
    assert len(np.unique(y)) <= 16
    if not comp:
        assert size == (x.size + 1) // 2


def test_pack4_nibble_order() -> None:
    assert codecs.pack4(np.array([1, 2, 3], np.uint8)) == bytes([0x21, 0x03])


def test_names_and_missing_calibration() -> None:
    assert codecs.parse("clip4+zlib", calibration(2)).name == "clip4+zlib"
    with pytest.raises(ValueError, match="unknown codec"):
        codecs.parse("int3")
    with pytest.raises(ValueError, match="unknown codec"):
        codecs.parse("float32+gzip")
    with pytest.raises(ValueError, match="clip range"):
        codecs.parse("clip4")
    with pytest.raises(ValueError, match="per-channel"):
        codecs.parse("int8-channel")


def _frame(name: str, x: np.ndarray, cal: dict | None = None) -> tuple[Header, bytes]:
    spec = codecs.parse(name, cal)
    dtype, codec, params, payload = codecs.encode(x, spec)
    payload = bytes(payload)
    return Header(1, 0.0, "s", x.shape, dtype, codec, spec.compression, len(payload), params=params), payload


X = np.abs(np.random.default_rng(0).standard_normal((1, 4, 4, 4))).astype(np.float32)


@pytest.mark.parametrize("name", ["float32", "int8-tensor", "clip4", "float16+zlib", "clip4+zstd", "int8-tensor+zstd"])
def test_truncated_payload_is_refused(name: str) -> None:
    h, payload = _frame(name, X, calibration(4))
    short = payload[:-3]
    with pytest.raises(FrameError) as err:
        codecs.decode_tensor(Header(**{**h.__dict__, "payload_len": len(short)}), short)
    assert err.value.code in ("bad_length", "bad_compression")


def test_wrong_parameter_length_and_dtype_are_refused() -> None:
    h, payload = _frame("int8-tensor", X)
    with pytest.raises(FrameError, match="bad_params"):
        codecs.decode_tensor(Header(**{**h.__dict__, "params": h.params[:4]}), payload)
    with pytest.raises(FrameError, match="bad_dtype"):
        codecs.decode_tensor(Header(**{**h.__dict__, "dtype": DType.FLOAT32}), payload)


def test_other_calibration_is_refused() -> None:
    h, payload = _frame("int8-channel", X, calibration(4))
    other = codecs.parse("int8-channel", {"int8_channel": {"scale": [0.1] * 4, "zero_point": [0] * 4}})
    with pytest.raises(FrameError, match="fingerprint"):
        codecs.decode_tensor(h, payload, channels=other.channels)
    with pytest.raises(FrameError, match="fingerprint"):
        codecs.decode_tensor(h, payload)


def test_decompression_bomb_is_bounded() -> None:
    bomb = zlib.compress(bytes(10_000_000))
    h = Header(1, 0.0, "s", (1, 4, 4, 4), DType.FLOAT32, Codec.NONE, Compression.ZLIB, len(bomb))
    with pytest.raises(FrameError) as err:
        codecs.decode_tensor(h, bomb)
    assert err.value.code in ("bad_length", "bad_compression")


VECTORS = __import__("pathlib").Path(__file__).resolve().parents[1] / "vectors"
INDEX = __import__("json").loads((VECTORS / "index.json").read_text())


@pytest.mark.parametrize("case", INDEX["codecs"], ids=lambda c: c["name"])
def test_codec_vectors_decode_and_reencode(case: dict) -> None:
    spec = codecs.parse(case["codec_name"], INDEX["calibration"])
    (msg,) = [(VECTORS / f).read_bytes() for f in case["messages"]]
    h, payload = decode(msg)
    got = codecs.decode_tensor(h, payload, channels=spec.channels)
    expected = np.frombuffer((VECTORS / case["expected_f32"]).read_bytes(), "<f4")
    assert np.array_equal(got.ravel().view(np.uint32), expected.view(np.uint32))
    x = np.frombuffer((VECTORS / case["input_f32"]).read_bytes(), "<f4").reshape(case["shape"])
    dtype, codec, params, _ = codecs.encode(x, spec)
    assert (dtype.name.lower(), int(codec), params.hex()) == (case["dtype"], case["codec"], case["params_hex"])
    assert bytes(codecs._quantize(x, spec)[3]) == (VECTORS / case["raw_payload"]).read_bytes()
