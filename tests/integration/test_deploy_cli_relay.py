"""The real commands across the namespaces: ``python sender.py`` in ``device`` ->
``python -m receiver`` in ``server``, relay-only through coturn, with tokens on and with
the signaling server on HTTPS (``--cert/--key`` from ``signaling.certs``, clients ``--ca``).

The two peers cannot reach each other (tests/netns.py); the TURN credentials are minted with
coturn's secret (TURN REST). Checks: every frame accounted and every reply bit-exact with the
full model run on the device (``--verify``); the relayed DTLS bytes on the relay's device-side
interface consistent with the sender's transport stats; relayed candidates and the DTLS
version/cipher in the sender's summary; no frame header, no token and no SDP in clear on the
wire (signaling is inside TLS, the data channel inside DTLS).

Run with ``-s`` to see the figures.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from signaling import certs, token, turn
from splitcore.rtc.ice import IceServer
from splitcore.wire import frame
from tests.netns import Testnet, tally_turn, unavailable_reason

FRAMES = 300
SECRET = "cli-relay-secret-" + "y" * 24
TURN_SECRET = "cli-turn-secret-" + "w" * 24
PORT = 8443
SLACK_BYTES = 8192   # SCTP/DTLS shutdown and a last ping after the sender's final stats read

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _summary(log: Path) -> dict:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"frames_sent"' in line:
            return json.loads(line)
    raise AssertionError(f"no JSON summary in {log}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not os.environ.get("SPLITRTC_DATA"):
        pytest.skip("SPLITRTC_DATA is not set")
    work = tmp_path_factory.mktemp("cli-relay")
    with Testnet(work) as net:
        coturn = net.start_coturn(TURN_SECRET)
        made = certs.make(work / "certs", [net.ip.relay_dev, net.ip.relay_srv])
        ca = Path(str(made["ca"]))
        server_ice = json.dumps([{"urls": coturn.url("server")}])
        device_url, server_url = net.start_signaling(PORT, [
            "--secret", SECRET, "--cert", str(made["cert"]), "--key", str(made["key"]),
            "--ice-servers", server_ice, "--turn-secret", TURN_SECRET, "--relay-only"], ca=ca)
        caps = {i: net.capture(net.relay, i, f"{i}.pcap") for i in (net.relay_if_dev, net.relay_if_srv)}

        def ice(side: str, name: str) -> str:
            return json.dumps(turn.ice_servers_for(name, [IceServer((coturn.url(side),))], TURN_SECRET, 600))

        rx_token = token.mint(SECRET, "cli", ["receiver"], 600, "rx-cli")
        tx_token = token.mint(SECRET, "cli", ["sender"], 600, "tx-cli")
        common = ["--room", "cli", "--relay-only", "--ca", str(ca)]
        # the receiver brings no ICE list of its own: it takes the server's from its join ack
        # (the relay's server-side url, TURN REST credentials minted by server.py, relay policy)
        rx = net.python(net.server, ["-m", "receiver", "--server", server_url, "--room", "cli", "--workers", "1", "--ca", str(ca),
                                     "--token", rx_token], work / "rx.log")
        tx = net.python(net.device, ["sender.py", "--server", device_url, *common, "--token", tx_token,
                                     "--ice-servers", ice("device", "tx-cli"), "--frames", str(FRAMES),
                                     "--split", "stage1", "--verify", "--json", "--quiet"], work / "tx.log")
        try:
            tx_rc = tx.wait(150)
            rx_rc = net.stop(rx)
        finally:
            for c in caps.values():
                c.stop()
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (work / "tx.log", work / "rx.log",
                                                                            work / "server.log"))
        assert tx_rc == 0, f"sender exited {tx_rc} (receiver {rx_rc})\n{logs}\n{coturn.log_text()[-2000:]}"
        yield {"net": net, "tx": _summary(work / "tx.log"), "tokens": (rx_token, tx_token), "logs": logs,
               "pcaps": {i: c.path for i, c in caps.items()},
               "tally": {net.relay_if_dev: tally_turn(caps[net.relay_if_dev].path, net.ip.device),
                         net.relay_if_srv: tally_turn(caps[net.relay_if_srv].path, net.ip.server)}}


def test_every_frame_accounted_and_bit_exact(session: dict) -> None:
    tx = session["tx"]
    assert tx["accounted"] and tx["frames_sent"] == FRAMES
    assert tx["frames_captured"] == tx["frames_sent"] + sum(tx["dropped_by_sender"].values())
    assert tx["replies"] + sum(tx["dropped_by_receiver"].values()) == tx["frames_sent"]
    assert tx["in_flight_at_exit"] == 0 and not tx["errors"] and tx["replies"] > 0
    assert tx["fidelity"]["bit_exact"] == tx["fidelity"]["verified"] == tx["replies"]
    print(f"\n{tx['frames_sent']} frames sent, {tx['replies']} replies, all bit-exact with the local full model; "
          f"dropped by sender {tx['dropped_by_sender']}, by receiver {tx['dropped_by_receiver']}")


def test_the_receiver_took_the_servers_ice_list(session: dict) -> None:
    assert "ICE servers from the signaling server" in session["logs"] and "relay only" in session["logs"], \
        session["logs"]


def test_relayed_pair_and_dtls(session: dict) -> None:
    sec = session["tx"]["security"]
    assert sec["candidatePairType"] == "relay" and sec["localCandidateType"] == "relay"
    assert sec["tlsVersion"].startswith("DTLS") and sec["dtlsCipher"]
    print(f"\nsender (aiortc) pair {sec['candidatePairType']}, {sec['tlsVersion']} {sec['dtlsCipher']}")


def test_relay_bytes_consistent_with_transport_stats(session: dict) -> None:
    net, tx = session["net"], session["tx"]
    dev, srv = session["tally"][net.relay_if_dev], session["tally"][net.relay_if_srv]
    seen = dev["up"].dtls_bytes
    assert 0 <= seen - tx["wire_bytes"] <= SLACK_BYTES, (seen, tx["wire_bytes"])
    assert 0 <= dev["up"].dtls_bytes - srv["down"].dtls_bytes <= SLACK_BYTES
    print(f"\nsender transport bytesSent {tx['wire_bytes']} B; relay saw {seen} B of DTLS from the device "
          f"({dev['up'].dtls_packets} packets), delivered {srv['down'].dtls_bytes} B to the server side")


def test_nothing_in_clear(session: dict) -> None:
    raw = {i: p.read_bytes() for i, p in session["pcaps"].items()}
    blob = b"".join(raw.values())
    net = session["net"]
    # the search works: TURN usernames travel in clear in the Allocate requests
    assert b":tx-cli" in raw[net.relay_if_dev] and b":rx-cli" in raw[net.relay_if_srv]
    shape = (1, 32, 16, 16)
    header = frame.encode(frame.Header(seq=0, capture_ms=0.0, split="stage1", shape=shape),
                          np.zeros(shape, np.float32))[0][:6]
    for needle, what in [(header, "frame header"), *((t.encode(), "token") for t in session["tokens"]),
                         (b"a=fingerprint", "SDP"), (b"a=ice-ufrag", "SDP"), (b"/socket.io/", "HTTP")]:
        assert needle not in blob, f"{what} in clear"
    print(f"\nsearched {len(blob)} captured bytes: no frame header, token, SDP or HTTP in clear")
