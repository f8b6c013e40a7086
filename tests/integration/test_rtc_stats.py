"""splitcore.rtc.stats against two real aiortc peers over loopback (no signaling server)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import socketio
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection
from aiortc.exceptions import InvalidStateError
from hypothesis import given
from hypothesis import strategies as st

from splitcore.rtc import stats as rtcstats
from splitcore.rtc.stats import ChannelCounter, StatsPublisher, collect, payload_size, rates

Msg = bytes | str
TIMEOUT_S = 10.0

# Both kinds of message, empty ones, multi-byte UTF-8 and the 64 KiB maximum.
OFFER_TO_ANSWER: list[Msg] = [
    b"", b"\x00", bytes(range(256)) * 40, "", "hello", "héllo wörld ✓" * 100, b"\xff" * 65536,
]
ANSWER_TO_OFFER: list[Msg] = ["{}", "ünïcödé " * 500, b"\x01\x02\x03", b"z" * 30000, ""]


class Side:
    """One peer: its connection, its channel, the counter and what the app listener saw."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.channel: RTCDataChannel | None = None
        self.counter: ChannelCounter | None = None
        self.received: list[Msg] = []
        self.expected = 0
        self.all_received = asyncio.Event()

    def bind(self, channel: RTCDataChannel) -> None:
        """Counter first, then an app listener, as a peer's datachannel handler would."""
        self.channel = channel
        self.counter = ChannelCounter.attach(channel)

        @channel.on("message")
        def on_message(data: Msg) -> None:
            self.received.append(data)
            if len(self.received) >= self.expected:
                self.all_received.set()


async def connected_pair() -> tuple[Side, Side]:
    """Offerer and answerer with an open `latent` channel; SDP exchanged directly."""
    config = RTCConfiguration(iceServers=[])  # loopback only: no STUN round trip
    offer, answer = Side(RTCPeerConnection(config)), Side(RTCPeerConnection(config))
    answer_ready = asyncio.Event()

    @answer.pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        answer.bind(channel)
        answer_ready.set()

    offer.bind(offer.pc.createDataChannel("latent"))
    opened = asyncio.Event()
    offer.channel.on("open", opened.set)
    await offer.pc.setLocalDescription(await offer.pc.createOffer())
    await answer.pc.setRemoteDescription(offer.pc.localDescription)
    await answer.pc.setLocalDescription(await answer.pc.createAnswer())
    await offer.pc.setRemoteDescription(answer.pc.localDescription)
    await asyncio.wait_for(asyncio.gather(opened.wait(), answer_ready.wait()), TIMEOUT_S)
    return offer, answer


def entry(report: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [e for e in report if e["type"] == kind]
    assert len(found) == 1, report
    return found[0]


def assert_counts(sent: dict[str, Any], received: dict[str, Any], msgs: list[Msg]) -> None:
    """Both sides agree, and agree with the W3C definition (UTF-8 bytes for text)."""
    total = sum(len(m.encode("utf-8")) if isinstance(m, str) else len(m) for m in msgs)
    assert sent["messagesSent"] == received["messagesReceived"] == len(msgs)
    assert sent["bytesSent"] == received["bytesReceived"] == total


async def exchange_and_check() -> None:
    offer, answer = await connected_pair()
    try:
        assert ChannelCounter.attach(offer.channel) is offer.counter  # no double wrap
        before = await collect(offer.pc, [offer.counter])
        offer.expected, answer.expected = len(ANSWER_TO_OFFER), len(OFFER_TO_ANSWER)
        for m in OFFER_TO_ANSWER:
            offer.channel.send(m)
        for m in ANSWER_TO_OFFER:
            answer.channel.send(m)
        await asyncio.wait_for(
            asyncio.gather(offer.all_received.wait(), answer.all_received.wait()), TIMEOUT_S
        )
        # The counter's listener did not disturb the application's.
        assert answer.received == OFFER_TO_ANSWER
        assert offer.received == ANSWER_TO_OFFER

        r_offer = await collect(offer.pc, [offer.counter])
        r_answer = await collect(answer.pc, [answer.counter])
        dc_o, dc_a = entry(r_offer, "data-channel"), entry(r_answer, "data-channel")
        assert_counts(dc_o, dc_a, OFFER_TO_ANSWER)
        assert_counts(dc_a, dc_o, ANSWER_TO_OFFER)
        check_fields(dc_o, dc_a)
        for report, dc in ((r_offer, dc_o), (r_answer, dc_a)):
            check_transport(entry(report, "transport"), dc)

        r = rates(before, r_offer)
        assert r.interval_s > 0
        assert r.payload_bytes_sent_ps * r.interval_s == pytest.approx(dc_o["bytesSent"])
        assert r.messages_sent_ps * r.interval_s == pytest.approx(len(OFFER_TO_ANSWER))
        assert r.wire_bytes_sent_ps >= r.payload_bytes_sent_ps
        check_send_failures_not_counted(offer)
    finally:
        await offer.pc.close()
        await answer.pc.close()


def check_fields(dc_o: dict[str, Any], dc_a: dict[str, Any]) -> None:
    now = time.time() * 1000.0
    for dc in (dc_o, dc_a):
        assert dc["label"] == "latent" and dc["protocol"] == "" and dc["state"] == "open"
        assert isinstance(dc["timestamp"], float) and abs(dc["timestamp"] - now) < 5000
    # Same SCTP stream on both ends; distinct stats object ids.
    assert dc_o["dataChannelIdentifier"] == dc_a["dataChannelIdentifier"] is not None
    assert dc_o["id"] != dc_a["id"]


def check_transport(tr: dict[str, Any], dc: dict[str, Any]) -> None:
    assert tr["dtlsState"] == "connected"
    assert tr["bytesSent"] >= dc["bytesSent"] and tr["bytesReceived"] >= dc["bytesReceived"]
    assert tr["packetsSent"] > 0 and tr["packetsReceived"] > 0
    assert tr["timestamp"] == dc["timestamp"]


def check_send_failures_not_counted(side: Side) -> None:
    """A send that raises is not a message sent; after detach nothing is counted."""
    counter = side.counter
    sent = counter.messages_sent
    with pytest.raises(ValueError):
        side.channel.send(12345)  # type: ignore[arg-type]
    assert counter.messages_sent == sent
    counter.detach()
    side.channel.send(b"uncounted")
    assert counter.messages_sent == sent
    assert ChannelCounter.attach(side.channel) is not counter


def test_counts_match_both_ways_over_loopback() -> None:
    asyncio.run(exchange_and_check())


async def closed_channel_send() -> None:
    offer, answer = await connected_pair()
    await offer.pc.close()
    await answer.pc.close()
    assert offer.channel.readyState == "closed"
    with pytest.raises(InvalidStateError):
        offer.channel.send(b"late")
    assert offer.counter.messages_sent == 0 and offer.counter.bytes_sent == 0
    report = await collect(offer.pc, [offer.counter])
    assert entry(report, "data-channel")["state"] == "closed"


def test_send_on_closed_channel_is_not_counted() -> None:
    asyncio.run(closed_channel_send())


async def report_without_channels() -> list[dict[str, Any]]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        return await collect(pc, [])
    finally:
        await pc.close()


def test_no_transport_entry_before_sctp_exists() -> None:
    assert asyncio.run(report_without_channels()) == []


def test_missing_private_api_omits_entry_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rtcstats, "_warned_private_api", False)
    with caplog.at_level(logging.WARNING, logger=rtcstats.log.name):
        assert rtcstats.transport_entry(object(), 1.0) is None
        assert rtcstats.transport_entry(object(), 2.0) is None
    assert len([r for r in caplog.records if "_get_stats" in r.getMessage()]) == 1


def test_payload_size_counts_utf8_bytes() -> None:
    assert payload_size("é✓") == 5 and payload_size(b"\x00\x01") == 2 and payload_size("") == 0


def dc(ts: float, sent: int, recv: int, msent: int, mrecv: int, id_: str = "DC1") -> dict:
    return {"type": "data-channel", "id": id_, "timestamp": ts, "bytesSent": sent,
            "bytesReceived": recv, "messagesSent": msent, "messagesReceived": mrecv}


def tr(ts: float, sent: int, recv: int, psent: int, precv: int) -> dict:
    return {"type": "transport", "id": "T1", "timestamp": ts, "bytesSent": sent,
            "bytesReceived": recv, "packetsSent": psent, "packetsReceived": precv}


def test_rates_math() -> None:
    prev = [dc(1000.0, 100, 0, 1, 0), dc(1000.0, 0, 0, 0, 0, "DC2"), tr(1000.0, 500, 50, 5, 1)]
    cur = [dc(3000.0, 2100, 400, 21, 4), dc(3000.0, 1000, 0, 10, 0, "DC2"),
           tr(3000.0, 6500, 850, 45, 9), dc(3000.0, 9999, 0, 9, 0, "DC-new")]
    r = rates(prev, cur)
    assert r.interval_s == 2.0
    assert r.payload_bytes_sent_ps == 1500.0  # (2000 + 1000) / 2; DC-new has no baseline
    assert r.payload_bytes_received_ps == 200.0
    assert (r.messages_sent_ps, r.messages_received_ps) == (15.0, 2.0)
    assert (r.wire_bytes_sent_ps, r.wire_bytes_received_ps) == (3000.0, 400.0)
    assert (r.packets_sent_ps, r.packets_received_ps) == (20.0, 4.0)
    assert "1.5 kB/s" in r.describe()


def test_rates_skip_reset_and_zero_interval() -> None:
    assert rates([dc(1000.0, 500, 0, 5, 0)], [dc(2000.0, 10, 0, 1, 0)]).payload_bytes_sent_ps == 0
    assert rates([dc(1000.0, 0, 0, 0, 0)], [dc(1000.0, 10, 0, 1, 0)]).interval_s == 0
    assert rates([], []).interval_s == 0


@given(
    st.integers(0, 10**12), st.integers(0, 10**9), st.floats(1.0, 1e7), st.floats(1.0, 1e9)
)
def test_rate_times_interval_is_delta(base: int, delta: int, dt_ms: float, t0: float) -> None:
    r = rates([dc(t0, base, 0, 0, 0)], [dc(t0 + dt_ms, base + delta, 0, 0, 0)])
    assert r.payload_bytes_sent_ps * r.interval_s == pytest.approx(delta, rel=1e-6, abs=1e-6)


async def publish_through_real_server() -> None:
    """StatsPublisher against a real python-socketio server: emits, survives a bad round."""
    server = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    server.attach(app)
    got: list[dict[str, Any]] = []
    two = asyncio.Event()

    @server.on("stats")
    async def on_stats(sid: str, data: dict[str, Any]) -> None:
        got.append(data)
        if len(got) >= 2:
            two.set()

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    client = socketio.AsyncClient()
    calls = {"n": 0}

    def app_dict() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first round fails")
        return {"split": "stage1", "frames": calls["n"]}

    async def report() -> list[dict[str, Any]]:
        return [dc(time.time() * 1000.0, calls["n"], 0, 1, 0)]

    publisher = StatsPublisher(client, report, app_dict, interval_s=0.05)
    try:
        await client.connect(f"http://{host}:{port}", transports=["websocket"])
        publisher.start()
        await asyncio.wait_for(two.wait(), TIMEOUT_S)
        await publisher.stop()
        assert got[0]["app"] == {"split": "stage1", "frames": 2}
        assert got[0]["report"][0]["type"] == "data-channel"
        assert publisher.emitted >= 2 and publisher.last_rates is not None
        await client.disconnect()
        assert await publisher.publish_once() is False  # not connected: no raise
    finally:
        await publisher.stop()
        await client.disconnect()
        await runner.cleanup()


def test_stats_publisher_emits_and_survives_errors() -> None:
    asyncio.run(publish_through_real_server())
