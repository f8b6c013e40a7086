"""Writes the wire-format test vectors that the Python and the JavaScript tests both read.

    python tests/vectors/make_vectors.py

The output is committed. ``tests/unit/test_frame.py`` re-encodes every valid vector and checks
the bytes are identical, so a change to the encoder that alters the wire is caught even if
nobody regenerates the files.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from splitcore.wire import codecs  # noqa: E402
from splitcore.wire.codecs import encode_tensor  # noqa: E402
from splitcore.wire.frame import DType, Header, decode, encode, pack_header  # noqa: E402

OUT = Path(__file__).resolve().parent


def valid_cases() -> list[tuple[str, Header, np.ndarray, DType]]:
    small = (np.arange(8, dtype=np.float32) * 0.5 - 1.0).reshape(1, 2, 2, 2)
    big = ((np.arange(24 * 32 * 32) % 251) / 8.0 - 10.0).astype(np.float32).reshape(1, 24, 32, 32)
    latent = np.linspace(0, 3, 32 * 16 * 16, dtype=np.float32).reshape(1, 32, 16, 16)
    return [
        ("f32_small", Header(7, 1234.5, "stage1", small.shape), small, DType.FLOAT32),
        ("f16_small", Header(8, 1267.833, "stage2", small.shape, DType.FLOAT16), small, DType.FLOAT16),
        ("f32_latent_32x16x16", Header(4242, 98765.25, "stage1", latent.shape), latent, DType.FLOAT32),
        ("f32_fragmented", Header(65535, 0.0, "stem", big.shape), big, DType.FLOAT32),
    ]


CALIBRATION = {"clip": [0.0, 3.0],
               "int8_channel": {"scale": [0.01, 0.02, 0.015, 0.03], "zero_point": [-128, -128, -100, -128]}}


def codec_latent() -> np.ndarray:
    """ReLU-like: a third exact zeros, the rest spread past the calibrated ranges."""
    v = np.sin(np.arange(64) * 0.7) * 3.2 + 0.4
    return np.maximum(v, 0).astype(np.float32).reshape(1, 4, 4, 4)


def codec_cases() -> list[tuple[str, str]]:
    names = [q + c for q in codecs.QUANTIZERS for c in ("", "+zlib")]
    return [(f"codec_{n.replace('+', '_').replace('-', '_')}", n) for n in names]


def write_codec_vectors(index: dict) -> None:
    x = codec_latent()
    for i, (name, codec_name) in enumerate(codec_cases()):
        spec = codecs.parse(codec_name, CALIBRATION)
        dtype, codec, params, payload = codecs.encode(x, spec)
        raw = codecs._quantize(x, spec)[3]
        header = Header(100 + i, 50.0 + i, "stage2", x.shape, dtype, codec, spec.compression, params=params)
        (msg,) = encode(header, payload)
        files = [f"frames/{name}.0.bin"]
        (OUT / files[0]).write_bytes(msg)
        expected = codecs.decode_tensor(*decode(msg), channels=spec.channels)
        (OUT / f"frames/{name}.expected.f32").write_bytes(expected.astype("<f4").tobytes())
        (OUT / f"frames/{name}.raw.bin").write_bytes(bytes(raw))
        index["codecs"].append({
            "name": name, "codec_name": codec_name, "messages": files,
            "expected_f32": f"frames/{name}.expected.f32", "input_f32": "frames/codec_input.f32",
            "raw_payload": f"frames/{name}.raw.bin", "seq": header.seq, "split": header.split,
            "shape": list(x.shape), "dtype": dtype.name.lower(), "codec": int(codec),
            "compression": int(spec.compression), "params_hex": params.hex()})
    (OUT / "frames/codec_input.f32").write_bytes(x.astype("<f4").tobytes())


def invalid_cases(good: bytes) -> list[tuple[str, bytes, str]]:
    """Each case is one message and the error code a decoder must report for it."""
    def patch(off: int, value: bytes) -> bytes:
        return good[:off] + value + good[off + len(value):]
    no_frag = Header(1, 1.0, "stage1", (1, 2, 2, 2), payload_len=32)
    return [
        ("bad_magic", patch(0, b"XX"), "bad_magic"),
        ("bad_version", patch(2, b"\x02"), "bad_version"),
        ("bad_type", patch(3, b"\x09"), "bad_type"),
        ("short_header", good[:20], "truncated"),
        ("short_payload", good[:-4], "truncated"),
        ("header_len_not_aligned", patch(4, struct.pack("<H", 61)), "bad_header"),
        ("header_len_beyond_message", patch(4, struct.pack("<H", 4096)), "truncated"),
        ("unknown_dtype", patch(6, b"\x63"), "bad_dtype"),
        ("unknown_codec", patch(7, b"\x4d"), "bad_codec"),
        ("unknown_compression", patch(8, b"\x4d"), "bad_compression"),
        ("retired_lz4_compression", patch(8, b"\x03"), "bad_compression"),
        ("zero_dimension", patch(44, struct.pack("<I", 0)), "bad_shape"),
        ("fragment_index_past_count", patch(28, struct.pack("<H", 3)), "bad_fragment"),
        ("extra_payload_bytes", good + b"\0\0\0\0", "bad_length"),
        ("payload_len_disagrees_with_shape",
         pack_header(Header(**{**no_frag.__dict__, "payload_len": 28})) + bytes(28), "bad_length"),
        ("bad_split_chars", good.replace(b"stage1", b"st/ge1"), "bad_header"),
    ]


def codec_invalid_cases() -> list[tuple[str, bytes, str]]:
    x = codec_latent()
    out = []
    for codec_name, mutate, code in [
        ("int8-tensor", lambda h, p: (Header(**{**h.__dict__, "params": h.params[:4]}), p), "bad_params"),
        ("clip4", lambda h, p: (Header(**{**h.__dict__, "dtype": DType.INT8}), p), "bad_dtype"),
        ("int8-tensor+zlib", lambda h, p: (h, bytes(p)[:-5]), "bad_compression"),
        ("clip4", lambda h, p: (h, bytes(p)[:-2]), "bad_length"),
        ("int8-channel", lambda h, p: (Header(**{**h.__dict__, "params": b"\0\0\0\0"}), p), "bad_params"),
    ]:
        spec = codecs.parse(codec_name, CALIBRATION)
        dtype, codec, params, payload = codecs.encode(x, spec)
        h, p = mutate(Header(1, 0.0, "stage2", x.shape, dtype, codec, spec.compression, params=params), payload)
        (msg,) = encode(h, p)
        out.append((f"{codec_name.replace('+', '_')}_{code}", msg, code))
    return out


def main() -> None:
    index = {"spec": "docs/wire-format.md", "calibration": CALIBRATION, "valid": [], "invalid": [],
             "codecs": [], "note": "codecs: encoding input_f32 with codec_name and the calibration "
             "must give raw_payload (before compression) and params_hex exactly; compressed bytes "
             "may differ between zlib implementations, so compare after decompression"}
    frames_dir = OUT / "frames"
    frames_dir.mkdir(exist_ok=True)
    first = b""
    for name, header, tensor, dtype in valid_cases():
        messages = encode(header, encode_tensor(tensor, dtype))
        first = first or messages[0]
        files = []
        for i, msg in enumerate(messages):
            files.append(f"frames/{name}.{i}.bin")
            (OUT / files[-1]).write_bytes(msg)
        expect = np.asarray(tensor, dtype=np.float32)
        if dtype == DType.FLOAT16:
            expect = tensor.astype(np.float16).astype(np.float32)
        (OUT / f"frames/{name}.expected.f32").write_bytes(expect.astype("<f4").tobytes())
        index["valid"].append({
            "name": name, "messages": files, "expected_f32": f"frames/{name}.expected.f32",
            "seq": header.seq, "capture_ms": header.capture_ms, "split": header.split,
            "shape": list(header.shape), "dtype": dtype.name.lower(), "codec": 0,
            "compression": 0, "payload_len": sum(len(m) for m in messages) - len(messages) *
            header.header_len, "header_len": header.header_len})
    write_codec_vectors(index)
    for name, msg, code in invalid_cases(first) + codec_invalid_cases():
        path = f"frames/invalid_{name}.bin"
        (OUT / path).write_bytes(msg)
        index["invalid"].append({"name": name, "message": path, "error": code})
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index['valid'])} valid and {len(index['invalid'])} invalid vectors to {OUT}")


if __name__ == "__main__":
    main()
