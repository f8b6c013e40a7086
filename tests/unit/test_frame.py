"""The wire format against the shared vectors, plus round trips and reassembly edge cases."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitcore.wire.codecs import decode_tensor, encode_tensor
from splitcore.wire.frame import MAX_MESSAGE, DType, FrameError, Header, Reassembler, decode, encode

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())


def _decode_all(messages: list[bytes]) -> tuple[Header, np.ndarray]:
    r = Reassembler()
    done = None
    for m in messages:
        done, abandoned = r.push(*decode(m))
        assert abandoned is None
    assert done is not None
    return done[0], decode_tensor(*done)


@pytest.mark.parametrize("case", INDEX["valid"], ids=lambda c: c["name"])
def test_valid_vector_decodes_to_expected(case: dict) -> None:
    messages = [(VECTORS / f).read_bytes() for f in case["messages"]]
    assert all(len(m) <= MAX_MESSAGE for m in messages)
    h, x = _decode_all(messages)
    assert (h.seq, h.capture_ms, h.split) == (case["seq"], case["capture_ms"], case["split"])
    assert list(h.shape) == case["shape"] and h.dtype.name.lower() == case["dtype"]
    assert h.payload_len == case["payload_len"] and h.header_len == case["header_len"]
    expected = np.frombuffer((VECTORS / case["expected_f32"]).read_bytes(), "<f4")
    np.testing.assert_array_equal(x.ravel(), expected)


@pytest.mark.parametrize("case", INDEX["valid"], ids=lambda c: c["name"])
def test_encoder_reproduces_vector_bytes(case: dict) -> None:
    expected = np.frombuffer((VECTORS / case["expected_f32"]).read_bytes(), "<f4")
    dtype = DType[case["dtype"].upper()]
    h = Header(case["seq"], case["capture_ms"], case["split"], tuple(case["shape"]), dtype)
    got = encode(h, encode_tensor(expected.reshape(case["shape"]), dtype))
    assert got == [(VECTORS / f).read_bytes() for f in case["messages"]]


@pytest.mark.parametrize("case", INDEX["invalid"], ids=lambda c: c["name"])
def test_invalid_vector_gives_its_error(case: dict) -> None:
    msg = (VECTORS / case["message"]).read_bytes()
    with pytest.raises(FrameError) as err:
        decode_tensor(*decode(msg))
    assert err.value.code == case["error"]


def test_header_is_aligned_for_typed_array_views() -> None:
    for case in INDEX["valid"]:
        assert case["header_len"] % 8 == 0


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       max_message=st.integers(256, 4096), seq=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([DType.FLOAT32, DType.FLOAT16]))
def test_round_trip_any_shape_and_fragment_size(shape, max_message, seq, dtype) -> None:
    x = np.random.default_rng(seq).standard_normal(shape).astype(np.float32)
    msgs = encode(Header(seq, 3.25, "s-1.x", tuple(shape), dtype), encode_tensor(x, dtype),
                  max_message=max_message)
    assert all(len(m) <= max_message for m in msgs)
    h, y = _decode_all(msgs)
    assert h.seq == seq and h.frag_count == len(msgs)
    np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32) if dtype == DType.FLOAT16 else x)


def _fragments(seq: int) -> list[bytes]:
    x = np.ones((1, 4, 16, 16), np.float32) * seq
    return encode(Header(seq, 0.0, "stage1", x.shape), encode_tensor(x), max_message=1024)


def test_newer_frame_abandons_an_incomplete_one() -> None:
    r = Reassembler()
    old, new = _fragments(1), _fragments(2)
    assert r.push(*decode(old[0])) == (None, None)
    done, abandoned = None, None
    for i, m in enumerate(new):
        done, ab = r.push(*decode(m))
        abandoned = abandoned or ab
    assert abandoned.seq == 1 and done[0].seq == 2
    assert decode_tensor(*done).min() == 2


def test_fragment_without_its_start_is_refused() -> None:
    with pytest.raises(FrameError) as err:
        Reassembler().push(*decode(_fragments(5)[1]))
    assert err.value.code == "bad_fragment" and err.value.seq == 5


def test_encoder_refuses_bad_split_ids() -> None:
    with pytest.raises(ValueError):
        encode(Header(0, 0.0, "no spaces", (1,)), b"\0\0\0\0")
