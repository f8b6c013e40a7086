"""Writes the wire-format test vectors that the Python and the JavaScript tests both read.

    python tests/vectors/make_vectors.py

The output is committed. ``tests/unit/test_frame.py`` re-encodes every valid vector and checks
the bytes are identical, so a change to the encoder that alters the wire is caught even if
nobody regenerates the files.

The invalid vectors about bounds (``bound_cases``) are attacks measured against a receiver:
decompression bombs, a first fragment announcing a huge payload, codec parameters that
would turn the tensor into NaN or infinities. Their ``about`` field says what each one is;
``index.json``'s ``invalid_fields`` says what the extra fields mean.
"""
from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from splitcore.wire import codecs  # noqa: E402
from splitcore.wire.codecs import encode_tensor  # noqa: E402
from splitcore.wire.frame import Codec, Compression, DType, Header, decode, encode, pack_header  # noqa: E402

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


# What a receiver serving the real models expects (models/manifest.json): the vectors marked
# needs_receiver fail only against this, through a Reassembler limit.
RECEIVER = {"stage1": [1, 32, 16, 16]}
STAGE1 = tuple(RECEIVER["stage1"])
ZSTD_MAGIC = 0xFD2FB528


def zstd_rle_frame(blocks: int, block_size: int, *, content_size: int | None = None, window_log: int = 0) -> bytes:
    """A zstd frame (RFC 8878) of ``blocks`` RLE blocks of ``block_size`` zero bytes each: 4
    bytes a block (3 of block header, 1 of content), so it inflates up to 32,768 times.

    With ``content_size``: Single_Segment_Flag set and an 8-byte Frame_Content_Size (the window
    is then the content size). Without: no content size, and a Window_Descriptor of
    ``2 ** window_log`` bytes, which is also the largest block allowed."""
    if content_size is not None:
        header = struct.pack("<IBQ", ZSTD_MAGIC, 0b1110_0000, content_size)  # FCS flag 3, single segment
    else:
        header = struct.pack("<IBB", ZSTD_MAGIC, 0, (window_log - 10) << 3)  # exponent, mantissa 0
    block = struct.pack("<I", (1 << 1) | (block_size << 3))[:3] + b"\0"  # Block_Type 1 (RLE)
    last = struct.pack("<I", 1 | (1 << 1) | (block_size << 3))[:3] + b"\0"  # and Last_Block
    return header + block * (blocks - 1) + last


def zstd_inflated_size(payload: bytes) -> int:
    """What a payload really decompresses to, counted 1 MiB at a time (the bombs are genuine)."""
    import zstandard
    reader = zstandard.ZstdDecompressor(max_window_size=1 << 30).stream_reader(payload, read_across_frames=True)
    total = 0
    while chunk := reader.read(1 << 20):
        total += len(chunk)
    return total


def _frame(seq: int, split: str, shape: tuple[int, ...], codec_name: str, payload: bytes,
           params: bytes = b"") -> bytes:
    spec = codecs.parse(codec_name, CALIBRATION)
    dtype = {"float32": DType.FLOAT32, "clip4": DType.UINT4, "int8-tensor": DType.INT8}[spec.quantizer]
    codec = {"float32": Codec.NONE, "clip4": Codec.CLIP4, "int8-tensor": Codec.AFFINE_TENSOR}[spec.quantizer]
    (msg,) = encode(Header(seq, 0.0, split, shape, dtype, codec, spec.compression, params=params), payload)
    return msg


def _first_fragment(seq: int, split: str, shape: tuple[int, ...], dtype: DType, codec: Codec,
                    compression: Compression, payload_len: int, carry: int, params: bytes = b"") -> bytes:
    """Fragment 0 of a frame announcing ``payload_len`` bytes, carrying ``carry`` zero bytes
    of it (so ``ceil(payload_len / carry)`` fragments): decoding it alone is fine; it is the
    promise of the rest that a receiver must not pay for in advance."""
    h = Header(seq, 0.0, split, shape, dtype, codec, compression, payload_len, params=params)
    assert carry <= 65536 - h.header_len and carry < payload_len
    return pack_header(Header(**{**h.__dict__, "frag_count": -(-payload_len // carry)})) + bytes(carry)


def bound_cases() -> list[dict]:
    """Invalid vectors about bounds: each a dict with name, message, error, about, and the
    optional fields ``invalid_fields`` in index.json describes."""
    out: list[dict] = []
    # zstd bombs: a float32 stage1 latent is 32,768 bytes, its zstd bound 32,944.
    declared = zstd_rle_frame(8192, 128 << 10, content_size=1 << 30)
    out.append({"name": "zstd_bomb_declares_1gib", "message": _frame(200, "stage1", STAGE1, "float32+zstd", declared),
                "error": "too_large", "needs_zstd": True, "inflates_to": 1 << 30,
                "about": "float32+zstd stage1 frame (32,768 bytes raw) whose zstd frame header declares a content "
                         "size of 1 GiB and really holds it (8,192 RLE blocks of 128 KiB zeros, 32,781 bytes): "
                         "refused from the declared size, before anything is allocated"})
    undeclared = zstd_rle_frame(8000, 32 << 10, window_log=15)
    out.append({"name": "zstd_bomb_undeclared_size", "message": _frame(201, "stage1", STAGE1, "float32+zstd", undeclared),
                "error": "too_large", "needs_zstd": True, "inflates_to": 8000 << 15,
                "about": "float32+zstd stage1 frame whose zstd frame declares no content size and a 32 KiB window, "
                         "then inflates to 250 MiB of zeros (8,000 RLE blocks of 32 KiB): refused when "
                         "decompression passes 32,768 bytes"})
    rng = np.random.default_rng(5)
    legit = codecs._compress(np.round(rng.random(8192, np.float32), 1).astype("<f4").tobytes(), Compression.ZSTD)
    tail = zstd_rle_frame(1024, 32 << 10, window_log=15)
    out.append({"name": "zstd_bomb_second_frame", "message": _frame(202, "stage1", STAGE1, "float32+zstd", bytes(legit) + tail),
                "error": "too_large", "needs_zstd": True, "inflates_to": 32768 + (1024 << 15),
                "about": "float32+zstd stage1 payload: a well-formed zstd frame of exactly 32,768 bytes (declared), "
                         "followed by a second frame without a declared size that inflates to 32 MiB: refused "
                         "when decompression passes 32,768 bytes"})
    window = zstd_rle_frame(512, 128 << 10, content_size=64 << 20)
    out.append({"name": "zstd_bomb_second_frame_declares_64mib",
                "message": _frame(203, "stage1", STAGE1, "float32+zstd", bytes(legit) + window),
                "error": "too_large", "needs_zstd": True, "inflates_to": 32768 + (64 << 20),
                "about": "float32+zstd stage1 payload: a well-formed zstd frame of exactly 32,768 bytes (declared), "
                         "followed by a frame declaring 64 MiB as a single segment, and so a 64 MiB window: "
                         "refused at the second frame's header"})
    zbomb = zlib.compress(bytes(32 << 20), 9)
    out.append({"name": "zlib_bomb", "message": _frame(204, "stage1", STAGE1, "float32+zlib", zbomb),
                "error": "too_large", "inflates_to": 32 << 20,
                "about": f"float32+zlib stage1 frame (32,768 bytes raw, zlib bound 32,791) whose {len(zbomb):,}-byte "
                         "zlib stream inflates to 32 MiB of zeros: refused when inflation passes 32,768 bytes"})
    # Codec parameters no encoder produces. Same latent and split as the other codec vectors.
    x = codec_latent()
    for codec_name, fmt, values, what in [
        ("int8-tensor", "<fi", (float("nan"), -128), "scale_nan"),
        ("int8-tensor", "<fi", (float("inf"), -128), "scale_inf"),
        ("int8-tensor", "<fi", (0.0, -128), "scale_zero"),
        ("int8-tensor", "<fi", (-0.02, -128), "scale_negative"),
        ("clip4", "<ff", (float("nan"), 0.2), "lo_nan"),
        ("clip4", "<ff", (float("-inf"), 0.2), "lo_neg_inf"),
        ("clip4", "<ff", (0.0, float("nan")), "step_nan"),
        ("clip4", "<ff", (0.0, float("inf")), "step_inf"),
        ("clip4", "<ff", (0.0, 0.0), "step_zero"),
        ("clip4", "<ff", (0.0, -0.2), "step_negative"),
    ]:
        spec = codecs.parse(codec_name, CALIBRATION)
        dtype, codec, _, payload = codecs.encode(x, spec)
        params = struct.pack(fmt, *values)
        h = Header(205 + len(out), 0.0, "stage2", x.shape, dtype, codec, spec.compression, params=params)
        (msg,) = encode(h, payload)
        names = ("scale", "zero_point") if codec_name == "int8-tensor" else ("lo", "step")
        out.append({"name": f"{codec_name}_{what}", "message": msg, "error": "bad_params", "params_hex": params.hex(),
                    "about": f"{codec_name} frame with {names[0]} {values[0]}, {names[1]} {values[1]}: parameters "
                             "no encoder produces (the payload is the codec vector's)"})
    # First fragments that announce more than the receiver will ever take.
    out.append({"name": "oversized_first_fragment",
                "message": _first_fragment(230, "stage1", (1, 4096, 64, 64), DType.FLOAT32, Codec.NONE,
                                           Compression.NONE, 4 << 24, 65536 - 64),
                "error": "shape_mismatch", "needs_receiver": True, "payload_len": 4 << 24,
                "about": "fragment 0 of 1,026 of a stage1 float32 frame of shape [1,4096,64,64] (2^24 elements, "
                         "the frame-level maximum) announcing a 64 MiB payload: within the frame-level checks; "
                         "a receiver serving stage1 as [1,32,16,16] refuses it from its header (shape_mismatch), "
                         "before allocating anything for the payload"})
    clip_params = struct.pack("<ff", 0.0, 0.2)
    out.append({"name": "first_fragment_too_large",
                "message": _first_fragment(231, "stage1", STAGE1, DType.UINT4, Codec.CLIP4, Compression.ZLIB, 33920,
                                           33920 // 2, clip_params),
                "error": "too_large", "needs_receiver": True, "payload_len": 33920,
                "about": "fragment 0 of 2 of a clip4+zlib stage1 frame of the served shape announcing 33,920 bytes "
                         "(the frame-level maximum for 8,192 elements) where clip4+zlib needs at most 4,110 "
                         "(4,096 raw plus zlib's bound): too_large from the header"})
    out.append({"name": "unknown_split_first_fragment",
                "message": _first_fragment(232, "nosuch", (1, 24, 32, 32), DType.FLOAT32, Codec.NONE, Compression.NONE,
                                           98304, 98304 // 2),
                "error": "unknown_split", "needs_receiver": True, "payload_len": 98304,
                "about": "fragment 0 of 2 of a float32 [1,24,32,32] frame for a split the receiver does not "
                         "serve: unknown_split from the header"})
    return out


INVALID_FIELDS = {
    "error": "the code a decoder reports: decode the message, push it through a Reassembler, and "
             "decode_tensor the completed frame (the int8-channel vectors with index.calibration)",
    "about": "what the message is and why it must be refused (bound vectors only)",
    "needs_receiver": "true: the message is a valid first fragment; it fails only in a Reassembler whose "
                      "limit(h) raises unknown_split for a split not in receiver.splits, shape_mismatch for "
                      "another shape, and otherwise returns codecs.max_payload_len(h) (too_large beyond it). "
                      "Without a limit the push returns nothing and the frame waits for fragments that never come",
    "needs_zstd": "true: a zstd payload; a peer that does not decode zstd reports bad_compression instead",
    "inflates_to": "bytes the payload really decompresses to; a decoder must refuse it holding far less "
                   "(the Python test checks a child's peak RSS)",
    "payload_len": "the payload_len the fragment announces",
    "params_hex": "the codec parameters the frame carries",
}


def main() -> None:
    index: dict[str, Any] = {"spec": "docs/wire-format.md", "calibration": CALIBRATION, "valid": [], "invalid": [],
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
    index["invalid_fields"] = INVALID_FIELDS
    index["receiver"] = {"splits": RECEIVER, "about": "the splits (id -> shape) of a receiver serving "
                         "models/manifest.json, for the invalid vectors marked needs_receiver"}
    for case in bound_cases():
        path = f"frames/invalid_{case['name']}.bin"
        msg = case.pop("message")
        if "inflates_to" in case and case.get("needs_zstd"):
            assert zstd_inflated_size(decode(msg)[1].tobytes()) == case["inflates_to"], case["name"]
        (OUT / path).write_bytes(msg)
        index["invalid"].append({"name": case.pop("name"), "message": path, "error": case.pop("error"), **case})
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index['valid'])} valid and {len(index['invalid'])} invalid vectors to {OUT}")


if __name__ == "__main__":
    main()
