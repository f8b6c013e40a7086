"""Two aiortc peers that cannot reach each other, relay-only through a real coturn.

The device namespace runs the head on 300 CIFAR-10 test images and sends the latents
(``stage1``, float32, 32 KiB a frame) to a receiver in the server namespace, which runs the
tail and replies; the only path is coturn in the relay namespace (tests/netns.py). Checks:
every frame answered with the label local inference gives; only relayed candidates offered
and selected; the DTLS bytes counted in the captures on the relay's two interfaces equal the
peers' transport stats (splitcore.rtc.stats); the captures account for every frame the
kernel counted on those interfaces; no frame header and no latent bytes appear in clear.

Run with ``-s`` to see the figures.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from signaling import turn
from splitcore.rtc.ice import IceServer
from tests.netns import Testnet, read_pcap, tally_turn, unavailable_reason

FRAMES = 300
SECRET = "relay-test-secret-" + "x" * 24
SLACK_BYTES = 2048   # packets after a peer's final stats read (SCTP/DTLS shutdown, the summary)

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One relay-only session; everything the tests check, measured once."""
    if not os.environ.get("SPLITRTC_DATA"):
        pytest.skip("SPLITRTC_DATA is not set (the CIFAR-10 tarball)")
    work = tmp_path_factory.mktemp("relay")
    with Testnet(work) as net:
        coturn = net.start_coturn(SECRET)
        device_url, server_url = net.start_signaling(8080)
        links = {i: net.link_stats(net.relay, i) for i in (net.relay_if_dev, net.relay_if_srv)}
        caps = {net.relay_if_dev: net.capture(net.relay, net.relay_if_dev, "device-side.pcap"),
                net.relay_if_srv: net.capture(net.relay, net.relay_if_srv, "server-side.pcap")}

        def ice(side: str, name: str) -> str:
            return json.dumps(turn.ice_servers_for(name, [IceServer((coturn.url(side),))], SECRET, 600))

        peer = ["tests/netns_peer.py", "--relay-only", "--room", "relay", "--split", "stage1"]
        rx = net.python(net.server, [*peer, "receiver", "--out", str(work / "rx.json"), "--server", server_url,
                                     "--ice-servers", ice("server", "ns-receiver")], work / "rx.log")
        tx = net.python(net.device, [*peer, "sender", "--out", str(work / "tx.json"), "--server", device_url,
                                     "--ice-servers", ice("device", "ns-sender"), "--frames", str(FRAMES)],
                        work / "tx.log")
        try:
            tx_rc, rx_rc = tx.wait(120), rx.wait(30)
        finally:
            counts = {i: c.stop() for i, c in caps.items()}
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (work / "tx.log", work / "rx.log"))
        assert tx_rc == 0 and rx_rc == 0, f"peers exited {tx_rc}/{rx_rc}\n{logs}\n{coturn.log_text()[-2000:]}"
        after = {i: net.link_stats(net.relay, i) for i in links}
        yield {
            "net": net, "tx": json.loads((work / "tx.json").read_text()), "work": work,
            "pcaps": {i: c.path for i, c in caps.items()}, "counts": counts,
            "link_delta": {i: {k: after[i][k] - links[i][k] for k in after[i]} for i in links},
            "tally": {net.relay_if_dev: tally_turn(caps[net.relay_if_dev].path, net.ip.device),
                      net.relay_if_srv: tally_turn(caps[net.relay_if_srv].path, net.ip.server)},
        }


def test_device_and_server_have_no_route_between_them(session: dict) -> None:
    net: Testnet = session["net"]
    assert net.can_reach(net.device, net.ip.relay_dev)
    assert net.can_reach(net.server, net.ip.relay_srv)
    assert not net.can_reach(net.device, net.ip.server)
    assert not net.can_reach(net.server, net.ip.device)
    assert not net.can_reach(net.device, net.ip.relay_srv)


def test_every_frame_answered_with_the_local_label(session: dict) -> None:
    tx = session["tx"]
    assert tx["replies"] == FRAMES and tx["mismatches"] == []
    assert tx["receiver"]["frames"] == FRAMES and tx["receiver"]["errors"] == []
    assert tx["channel"]["messagesSent"] == FRAMES + 1  # the frames and "done"
    print(f"\n{FRAMES} frames of {tx['latent_bytes']} B relayed and answered in {tx['send_s']:.2f} s")


def test_relay_only_offers_and_selects_relayed_candidates(session: dict) -> None:
    tx = session["tx"]
    assert tx["offer_candidate_types"] == ["relay"]
    for side in (tx["security"], tx["receiver"]["security"]):
        assert side["candidatePairType"] == "relay"
        assert side["localCandidateType"] == side["remoteCandidateType"] == "relay"
        assert side["tlsVersion"].startswith("DTLS")
        assert side["dtlsCipher"]
    print(f"\nsender: {tx['security']}\nreceiver: {tx['receiver']['security']}")


def test_captures_are_complete(session: dict) -> None:
    """Every Ethernet frame the kernel counted on the relay's interfaces is in the captures."""
    for iface, path in session["pcaps"].items():
        count, delta = session["counts"][iface], session["link_delta"][iface]
        # A frame arriving while tcpdump stops (ARP, neighbour discovery: the peers have
        # exited by then) is counted as received and not written: allow two.
        assert count["dropped"] == 0 and 0 <= count["received"] - count["captured"] <= 2, count
        captured = sum(orig for orig, _ in read_pcap(path))
        # The counters were read before the capture started and after it stopped: they may
        # include a few frames more, never fewer.
        assert 0 <= delta["rx_bytes"] + delta["tx_bytes"] - captured <= 1024, (iface, delta, captured)
        print(f"\n{iface}: kernel rx+tx {delta['rx_bytes'] + delta['tx_bytes']} B, captured {captured} B")


def test_relay_bytes_match_transport_stats(session: dict) -> None:
    """The DTLS datagrams inside the TURN messages are exactly what the peers' transport
    stats count (plus the few packets sent after their last read)."""
    net, tx = session["net"], session["tx"]
    sides = {net.relay_if_dev: tx["transport"], net.relay_if_srv: tx["receiver"]["transport"]}
    for iface, stats in sides.items():
        t = session["tally"][iface]
        assert t["up"].other_bytes == t["down"].other_bytes == 0
        for direction, field in (("up", "bytesSent"), ("down", "bytesReceived")):
            seen = t[direction].dtls_bytes
            assert 0 <= seen - stats[field] <= SLACK_BYTES, (iface, direction, seen, stats[field])
        up = t["up"]
        print(f"\n{iface}: peer sent {stats['bytesSent']} B DTLS in {stats['packetsSent']} packets; relay saw "
              f"{up.dtls_bytes} B DTLS in {up.dtls_packets} packets, {up.wire_bytes} B on the wire "
              f"(x{up.wire_bytes / max(1, up.dtls_bytes):.4f}), TURN control {up.control_bytes} B, ICE {up.ice_bytes} B")
    # What one side sent is what coturn delivered to the other, but for the last packets of
    # the shutdown: one peer may still send after the other side's allocation is gone.
    dev, srv = session["tally"][net.relay_if_dev], session["tally"][net.relay_if_srv]
    assert 0 <= dev["up"].dtls_bytes - srv["down"].dtls_bytes <= SLACK_BYTES
    assert 0 <= srv["up"].dtls_bytes - dev["down"].dtls_bytes <= SLACK_BYTES


def test_no_frame_header_or_latent_bytes_in_clear(session: dict) -> None:
    raw = {iface: path.read_bytes() for iface, path in session["pcaps"].items()}
    needles = session["tx"]["needles"]
    assert len(needles) == FRAMES
    # The search works: the TURN username travels in clear in the Allocate requests.
    net = session["net"]
    assert b":ns-sender" in raw[net.relay_if_dev] and b":ns-receiver" in raw[net.relay_if_srv]
    found = [(i, kind, iface) for i, n in enumerate(needles) for kind in ("header", "latent")
             for iface, blob in raw.items() if bytes.fromhex(n[kind]) in blob]
    assert found == [], f"{len(found)} cleartext hits, first {found[:5]}"
    total = sum(len(b) for b in raw.values())
    print(f"\nsearched {total} captured bytes for {2 * FRAMES} needles (24-byte frame headers, 32-byte "
          "latent slices): none found")
