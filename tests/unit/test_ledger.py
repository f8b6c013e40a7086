"""The sender's ledger: latency split into stages, from its own clock and the receiver's reply."""
from __future__ import annotations

import io
import json

import numpy as np

from sender.ledger import STAGES, Ledger, Reservoir


def _reply(seq: int, total_ms: float | None) -> dict:
    msg = {"type": "reply", "seq": seq, "label": 3, "logits": [0.0] * 10}
    if total_ms is not None:
        msg["timing"] = {"decode_ms": 0.1, "queue_ms": 0.2, "tail_ms": 0.5, "total_ms": total_ms}
    return msg


def test_latency_stages_add_up_to_the_frame_latency() -> None:
    log = io.StringIO()
    led = Ledger(classes=tuple("abcdefghij"), log_file=log)
    led.on_captured()
    led.on_sent(0, capture_ms=1000.0, reference=None, frame=0, head_done_ms=1001.5)
    entry = led.in_flight[0]
    entry.sent_ms = 1002.0  # pin the send time the ledger took from the clock
    led.on_message(_reply(0, total_ms=1.25), now_ms=1007.0)
    s = led.summary()
    assert s["latency_p50_ms"] == 7.0
    assert s["latency_stages_p50_ms"] == {"capture_to_head_ms": 1.5, "encode_send_ms": 0.5,
                                          "network_ms": 3.75, "receiver_ms": 1.25}
    assert sum(s["latency_stages_p50_ms"].values()) == 7.0 and tuple(s["latency_stages_p50_ms"]) == STAGES
    assert json.loads(log.getvalue())["receiver"]["total_ms"] == 1.25  # the per-frame log keeps it


def test_a_reply_without_timing_counts_but_splits_nothing() -> None:
    led = Ledger(classes=tuple("abcdefghij"))
    led.on_captured()
    led.on_sent(0, capture_ms=0.0, reference=None, frame=0)
    led.on_message(_reply(0, total_ms=None), now_ms=5.0)
    s = led.summary()
    assert s["replies"] == 1 and s["accounted"] and "latency_stages_p50_ms" not in s


def test_reservoir_is_exact_until_full_then_bounded_and_uniform() -> None:
    r = Reservoir(size=1000)
    for v in range(1000):
        r.append(float(v))
    assert sorted(r) == [float(v) for v in range(1000)]
    for v in range(1000, 100_000):
        r.append(float(v))
    assert len(r) == 1000 and r.seen == 100_000
    # a uniform sample of 0..99,999: its median is near 50,000 (sd about 1,600), and the
    # first 1,000 values keep only their share (about 10 of them), not all of them
    assert 45_000 < float(np.median(r.values)) < 55_000
    assert sum(v < 1000 for v in r) < 40
