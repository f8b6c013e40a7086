"""Latent codecs: property tests of every round trip, and bad input that must be refused,
decompression bombs included (with the peak memory of a child process decoding each one)."""
from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

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
    assert err.value.code == "too_large"


VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
assert _spec is not None and _spec.loader is not None
make_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_vectors)


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


# ------------------------------------------------------------------------ payload bounds


def _header(n: int, dtype: DType, codec: Codec, comp: Compression) -> Header:
    params = {Codec.NONE: b"", Codec.AFFINE_TENSOR: struct.pack("<fi", 0.1, 0),
              Codec.AFFINE_CHANNEL: b"\0" * 4, Codec.CLIP4: struct.pack("<ff", 0.0, 0.2)}[codec]
    return Header(1, 0.0, "s", (n,), dtype, codec, comp, params=params)


KINDS = [(DType.FLOAT32, Codec.NONE), (DType.FLOAT16, Codec.NONE), (DType.INT8, Codec.AFFINE_TENSOR),
         (DType.INT8, Codec.AFFINE_CHANNEL), (DType.UINT4, Codec.CLIP4)]
SIZES = [1, 2, 3, 7, 255, 1000, 4095, 4097, 8192, 16385, 32769, 98304]


@pytest.mark.parametrize("n", SIZES)
def test_max_payload_len_holds_what_the_compressors_make_of_random_bytes(n: int) -> None:
    """Incompressible input is the compressors' worst case: every level of zlib (as Python
    and browsers run it) and zstd stays within the bound, and the bound is not loose."""
    rng = np.random.default_rng(n)
    for dtype, codec in KINDS:
        raw = rng.bytes(codecs.raw_size(_header(n, dtype, codec, Compression.NONE)))
        assert codecs.max_payload_len(_header(n, dtype, codec, Compression.NONE)) == len(raw)
        zbound = codecs.max_payload_len(_header(n, dtype, codec, Compression.ZLIB))
        made = [len(zlib.compress(raw, level)) for level in range(-1, 10)]
        assert max(made) <= zbound <= max(made) + 16 + len(raw) // 1000
        import zstandard
        sbound = codecs.max_payload_len(_header(n, dtype, codec, Compression.ZSTD))
        made = [len(zstandard.ZstdCompressor(level=level, write_checksum=checksum).compress(raw))
                for level in (-5, 1, 3, 19) for checksum in (False, True)]
        assert max(made) <= sbound <= max(made) + 80 + len(raw) // 200


@settings(max_examples=40, deadline=None)
@given(x=latents, name=st.sampled_from(codecs.QUANTIZERS), comp=st.sampled_from(COMPRESSIONS))
def test_max_payload_len_holds_every_encoded_latent(x: np.ndarray, name: str, comp: str) -> None:
    h, payload = _frame(name + comp, x, calibration(x.shape[1]))
    assert len(payload) <= codecs.max_payload_len(h)


def test_max_payload_len_refuses_what_no_codec_decodes() -> None:
    with pytest.raises(FrameError) as err:
        codecs.max_payload_len(_header(8, DType.FLOAT32, Codec.CLIP4, Compression.ZLIB))
    assert err.value.code == "bad_dtype"


# ----------------------------------------------------------------- decompression bounds

ZSTD_HEADER = Header(1, 0.0, "s", (1, 32, 16, 16), DType.FLOAT32, Codec.NONE, Compression.ZSTD)  # 32,768 bytes raw


def _zstd_error(payload: bytes) -> str:
    with pytest.raises(FrameError) as err:
        codecs.decode_tensor(Header(**{**ZSTD_HEADER.__dict__, "payload_len": len(payload)}), payload)
    return err.value.code


def test_zstd_is_bounded_by_the_expected_size() -> None:
    import zstandard
    rle = make_vectors.zstd_rle_frame
    raw = np.arange(8192, dtype="<f4").tobytes()
    good = zstandard.ZstdCompressor(level=3).compress(raw)
    # declared larger than expected, or a window larger than the content could need
    assert _zstd_error(rle(2, 128 << 10, content_size=256 << 10)) == "too_large"
    assert _zstd_error(rle(1, 1024, window_log=20)) == "too_large"
    # no declared size: refused when it passes the expected size, whatever it would give
    assert _zstd_error(rle(64, 32 << 10, window_log=15)) == "too_large"
    # concatenated frames: the second inflates past, or asks for a window past the cap
    assert _zstd_error(good + rle(4, 32 << 10, window_log=15)) == "too_large"
    assert _zstd_error(good + rle(2, 128 << 10, content_size=256 << 10)) == "too_large"
    # and what is not zstd, or has bytes after the frame
    assert _zstd_error(b"\x28\xb5\x2f") == "bad_compression"
    assert _zstd_error(good + b"\0\0\0\0") == "bad_compression"
    # frames exactly of the expected size decode: one, without a declared size, or two halves
    undeclared = zstandard.ZstdCompressor(level=3, write_content_size=False)
    halves = zstandard.ZstdCompressor(level=3).compress(raw[:16384]) + zstandard.ZstdCompressor(level=3).compress(raw[16384:])
    for payload in (good, undeclared.compress(raw), halves):
        h = Header(**{**ZSTD_HEADER.__dict__, "payload_len": len(payload)})
        assert codecs.decode_tensor(h, payload).ravel().tobytes() == raw
        # the reused decompressor starts afresh after a frame it gave up half-way through
        assert _zstd_error(good + rle(4, 32 << 10, window_log=15)) == "too_large"
        assert codecs.decode_tensor(h, payload).ravel().tobytes() == raw


def test_zlib_is_bounded_by_the_expected_size() -> None:
    raw = np.arange(8192, dtype="<f4").tobytes()
    h = Header(1, 0.0, "s", (1, 32, 16, 16), DType.FLOAT32, Codec.NONE, Compression.ZLIB)
    for payload, code in [(zlib.compress(raw + b"\0"), "too_large"), (zlib.compress(raw)[:-1], "bad_compression"),
                          (zlib.compress(raw) + b"\0", "bad_compression"), (zlib.compress(raw[:-4]), "bad_length")]:
        with pytest.raises(FrameError) as err:
            codecs.decode_tensor(Header(**{**h.__dict__, "payload_len": len(payload)}), payload)
        assert err.value.code == code


# A child process handles one message and reports how much its peak RSS grew meanwhile: it
# resets the peak (VmHWM) to its current RSS first (/proc/self/clear_refs, Linux >= 4.0).
# Not getrusage's ru_maxrss: for an exec'd child it also holds the peak of the forked copy of
# its parent before exec (53 MB measured here), which would hide anything smaller.
_PROBE = r"""
import json, sys, zlib
import numpy, zstandard
from splitcore.wire import codecs, frame
mode, path, receiver = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
h, part = frame.decode(open(path, "rb").read())

def limit(h):
    if list(h.shape) != receiver.get(h.split):
        raise frame.FrameError("shape_mismatch", "not served", h.seq)
    return codecs.max_payload_len(h)

def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

code, keep = None, None
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = peak_kib()
try:
    if mode == "decode":
        keep = codecs.decode_tensor(h, part)
    elif mode == "old-zstd":  # what decoded zstd before issue 11
        keep = zstandard.ZstdDecompressor().decompress(bytes(part), max_output_size=codecs.raw_size(h) + 1)
    elif mode == "reassemble":
        r = frame.Reassembler(limit)
        keep = r.push(h, part)
    elif mode == "reassemble-without-limit":
        r = frame.Reassembler()
        keep = r.push(h, part)
except (frame.FrameError, zstandard.ZstdError) as err:
    code = getattr(err, "code", type(err).__name__)
print(json.dumps({"grew_kib": peak_kib() - before, "code": code}))
"""


def peak_rss_growth(mode: str, path: Path) -> tuple[int, str | None]:
    """(bytes a child's peak RSS grew while handling the message at ``path``, error code)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(path), json.dumps(INDEX["receiver"]["splits"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    return report["grew_kib"] * 1024, report["code"]


RSS_BOUND = 8 << 20  # what decoding any bomb may add to a process's peak memory
BOMBS = [c for c in INDEX["invalid"] if "inflates_to" in c]


@pytest.mark.parametrize("case", BOMBS, ids=lambda c: c["name"])
def test_decoding_a_bomb_stays_far_below_its_size(case: dict) -> None:
    grew, code = peak_rss_growth("decode", VECTORS / case["message"])
    assert code == case["error"]
    assert case["inflates_to"] >= 4 * RSS_BOUND
    assert grew < RSS_BOUND, f"peak RSS grew {grew:,} bytes decoding a bomb of {case['inflates_to']:,}"


def test_the_memory_probe_sees_the_old_zstd_decoder_allocate(tmp_path: Path) -> None:
    """The probe is not blind: the one-shot decoder used before allocates what a frame declares."""
    payload = make_vectors.zstd_rle_frame(512, 128 << 10, content_size=64 << 20)
    (msg,) = encode(Header(**{**ZSTD_HEADER.__dict__, "payload_len": len(payload)}), payload)
    (tmp_path / "bomb.bin").write_bytes(msg)
    assert peak_rss_growth("decode", tmp_path / "bomb.bin")[0] < RSS_BOUND
    grew, _ = peak_rss_growth("old-zstd", tmp_path / "bomb.bin")
    assert grew >= 64 << 20, f"the old decoder grew the peak RSS by only {grew:,} bytes"


# ------------------------------------------------------------------------ codec parameters


def test_encoder_parameters_are_always_decodable() -> None:
    """What the decoder refuses (bad_params), the encoder never makes: int8-tensor of a range
    of a few subnormals (its scale underflowed to 0 before), and clip ranges beyond float32."""
    tiny = np.array([0.0, 1e-45, 3e-45, 0.0], np.float32).reshape(1, 4)
    h, payload = _frame("int8-tensor", tiny)
    assert struct.unpack("<f", h.params[:4])[0] > 0
    np.testing.assert_allclose(codecs.decode_tensor(h, payload), tiny, atol=2e-45)
    for clip in ([0.0, 1e39], [-1e39, 0.0], [0.0, 1e-45], [-3.0e38, 3.0e38]):
        with pytest.raises(ValueError, match="float32"):
            codecs.parse("clip4", {"clip": clip})
    h, payload = _frame("clip4", X * 1e38, {"clip": [-1.5e38, 1.5e38]})
    assert np.isfinite(codecs.decode_tensor(h, payload)).all()


@pytest.mark.parametrize("case", [c for c in INDEX["invalid"] if c["error"] == "bad_params" and "params_hex" in c],
                         ids=lambda c: c["name"])
def test_impossible_parameters_are_refused_before_decompressing(case: dict) -> None:
    h, payload = decode((VECTORS / case["message"]).read_bytes())
    assert h.params.hex() == case["params_hex"]
    with pytest.raises(FrameError) as err:
        codecs.decode_tensor(Header(**{**h.__dict__, "compression": Compression.ZLIB}), payload)
    assert err.value.code == "bad_params"  # not bad_compression: parameters are checked first
