"""The text messages: the shared vectors (the JS suite reads the same file), the typed
values, and the round trip through ``dumps``."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from splitcore.wire import messages as m

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "messages.json").read_text())


def as_plain(msg: m.Message) -> dict:
    """The parsed value in the vectors' form: JSON field names, tuples as lists."""
    out = asdict(msg)
    if isinstance(msg, m.Reply):
        out["probs"] = list(msg.probs)
        if msg.logits is None:
            del out["logits"]
        else:
            out["logits"] = list(msg.logits)
    return out


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_parse_to_the_expected_value(vec: dict) -> None:
    msg = m.parse(vec["text"])
    assert as_plain(msg) == vec["expected"]
    assert m.parse(m.dumps(msg)) == msg  # what we write, we read back unchanged


@pytest.mark.parametrize("vec", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused_with_their_code(vec: dict) -> None:
    with pytest.raises(m.MessageError) as err:
        m.parse(vec["text"])
    assert err.value.code == vec["code"], err.value
    assert err.value.seq == vec["seq"]


def test_vectors_cover_every_type_and_both_codes() -> None:
    assert {v["expected"]["type"] for v in VECTORS["valid"]} == {"reply", "drop", "error", "ping", "pong"}
    assert {v["code"] for v in VECTORS["invalid"]} == {"bad_json", "bad_message"}


def test_reply_is_typed() -> None:
    reply = m.parse(next(v["text"] for v in VECTORS["valid"] if v["name"] == "reply"))
    assert isinstance(reply, m.Reply) and isinstance(reply.timing, m.Timing)
    assert reply.label == 3 and isinstance(reply.label, int) and reply.timing.tail_ms == 0.4
    assert reply.logits == (1.5, -0.25, 3.0)


def test_dumps_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ValueError):
        m.dumps(m.Ping(math.nan))
    timing = m.Timing(0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        m.dumps(m.Reply(1, 0.0, "stage1", 0, "cat", (math.inf,), timing))


def test_float32_logits_round_trip_bit_for_bit() -> None:
    import numpy as np
    logits = np.random.default_rng(0).standard_normal(10).astype(np.float32)
    reply = m.Reply(7, 1.0, "features", 2, "bird", (0.1,) * 10, m.Timing(1, 2, 3, 4),
                    tuple(float(v) for v in logits))
    back = m.parse(m.dumps(reply))
    assert isinstance(back, m.Reply) and back.logits is not None
    assert np.array_equal(np.asarray(back.logits, np.float32).view(np.uint32), logits.view(np.uint32))
