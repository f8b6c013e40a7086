"""The wire format against the shared vectors, plus round trips and reassembly edge cases,
and the reassembler's limit: checked on every new frame's header before anything is allocated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitcore.wire.codecs import decode_tensor, encode_tensor, max_payload_len
from splitcore.wire.frame import MAX_MESSAGE, DType, FrameError, Header, Reassembler, decode, encode

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
SERVED = INDEX["receiver"]["splits"]


def receiver_limit(h: Header) -> int:
    """The limit of a receiver serving ``index.json``'s receiver splits, as receiver/ builds it."""
    if h.split not in SERVED:
        raise FrameError("unknown_split", f"split {h.split!r} is not served", h.seq)
    if list(h.shape) != SERVED[h.split]:
        raise FrameError("shape_mismatch", f"split {h.split} takes {SERVED[h.split]}, frame has {list(h.shape)}", h.seq)
    return max_payload_len(h)


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
    r = Reassembler(receiver_limit if case.get("needs_receiver") else None)
    with pytest.raises(FrameError) as err:
        done, _ = r.push(*decode(msg))
        assert done is not None, "waits for more fragments instead of failing"
        decode_tensor(*done)
    assert err.value.code == case["error"]
    assert r.capacity == 0  # refused before anything was allocated for the payload


@pytest.mark.parametrize("case", [c for c in INDEX["invalid"] if c.get("needs_receiver")], ids=lambda c: c["name"])
def test_receiver_vectors_are_valid_first_fragments_without_a_limit(case: dict) -> None:
    """What makes them invalid is only the receiver's expectation (index.json's receiver)."""
    h, part = decode((VECTORS / case["message"]).read_bytes())
    assert h.frag_index == 0 and h.frag_count > 1 and h.payload_len == case["payload_len"]
    if h.payload_len <= 1 << 20:  # the 64 MiB one is measured in a child (test_codecs' probe)
        assert Reassembler().push(h, part) == (None, None)


def test_a_limit_stops_the_oversized_fragment_allocation() -> None:
    """Peak RSS of a child pushing the 64 MiB first fragment: without the limit it allocates
    the announced payload; with it, nothing."""
    from tests.unit.test_codecs import RSS_BOUND, peak_rss_growth
    path = VECTORS / "frames/invalid_oversized_first_fragment.bin"
    grew, code = peak_rss_growth("reassemble", path)
    assert code == "shape_mismatch" and grew < RSS_BOUND
    grew, code = peak_rss_growth("reassemble-without-limit", path)
    assert code is None and grew >= 64 << 20


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
    for m in new:
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


# ----------------------------------------------------------------------------- the limit


def _frames(seq: int, n: int, max_message: int = 1024) -> list[bytes]:
    x = np.full(n, seq, np.float32)
    return encode(Header(seq, 0.0, "stage1", x.shape), encode_tensor(x), max_message=max_message)


class Recorder:
    """A limit that records what it was asked, and what the reassembler held at the time."""

    def __init__(self, allow: int = 1 << 20) -> None:
        self.r: Reassembler | None = None
        self.allow = allow
        self.calls: list[tuple[int, int, int | None]] = []

    def __call__(self, h: Header) -> int:
        self.calls.append((h.seq, h.frag_index, self.r.capacity if self.r else None))
        return self.allow


def test_limit_sees_every_new_frame_before_anything_is_allocated() -> None:
    rec = Recorder()
    r = rec.r = Reassembler(rec)
    for m in _frames(1, 1000) + _frames(2, 8, max_message=4096) + _frames(3, 1000):
        r.push(*decode(m))
    # one call per frame (single message or first fragment), never for later fragments;
    # the buffer was empty when the first fragmented frame was checked, and reused after
    assert rec.calls == [(1, 0, 0), (2, 0, 4000), (3, 0, 4000)]


def test_a_frame_declaring_more_than_the_limit_is_too_large() -> None:
    r = Reassembler(lambda h: 3999)
    for seq, max_message in ((4, 1024), (5, 8192)):  # fragmented, then in one message
        with pytest.raises(FrameError) as err:
            r.push(*decode(_frames(seq, 1000, max_message)[0]))
        assert (err.value.code, err.value.seq) == ("too_large", seq)
        assert "4000" in err.value.detail and "3999" in err.value.detail
    assert r.capacity == 0


def test_limit_errors_keep_their_code_and_report_the_frame_they_end() -> None:
    def limit(h: Header) -> int:
        if h.seq == 7:
            raise FrameError("shape_mismatch", "no seq given")
        return max_payload_len(h)
    r = Reassembler(limit)
    old = _frames(6, 1000)
    assert r.push(*decode(old[0])) == (None, None)
    with pytest.raises(FrameError) as err:
        r.push(*decode(_frames(7, 1000)[0]))
    assert (err.value.code, err.value.seq) == ("shape_mismatch", 7)  # the frame's seq is filled in
    assert err.value.abandoned is not None and err.value.abandoned.seq == 6
    with pytest.raises(FrameError) as err:  # the abandoned frame's next fragment: no longer expected
        r.push(*decode(old[1]))
    assert err.value.code == "bad_fragment" and err.value.abandoned is None


def test_buffer_is_reused_and_never_larger_than_allowed() -> None:
    allowed: dict[int, int] = {}

    def limit(h: Header) -> int:
        allowed[h.seq] = h.payload_len + 100
        return allowed[h.seq]
    r, views = Reassembler(limit), []
    for seq, n in enumerate([500, 400, 520, 300, 2000, 500]):
        done = None
        for m in _frames(seq, n, max_message=512):
            done, _ = r.push(*decode(m))
        assert done is not None and len(done[1]) == 4 * n
        assert decode_tensor(*done).min() == seq
        views.append(done[1].obj)
        assert r.capacity <= max(allowed.values())
    # grew at 500 (to 2,000 bytes), at 520 (to the 2,180 that frame was allowed: never past
    # it), at 2000 (to 8,000); reused in between
    assert [len(v) for v in views] == [2000, 2000, 2180, 2180, 8000, 8000]
    assert views[0] is views[1] and views[2] is views[3] and views[4] is views[5]


def test_without_a_limit_buffers_follow_payload_len() -> None:
    r = Reassembler()
    for seq, n in enumerate([500, 400, 600]):
        for m in _frames(seq, n, max_message=512):
            r.push(*decode(m))
    assert r.capacity == 2400
