"""The Chromium sender page across the namespaces: the page (fake camera playing CIFAR-10 test
frames) in ``device`` -> ``python -m receiver`` in ``server``, relay-only through coturn in
``relay``, with room tokens on; once with the pages and Socket.IO over plain HTTP, once over
HTTPS (``signaling.certs``).

Chromium runs inside the device namespace: Playwright launches it through a script that
does ``ip netns exec <device> /usr/bin/chromium "$@"`` (``Testnet.launcher``) and drives it
over its pipe, so nothing is routed out of the namespaces. The page opens the server at the
relay's device-side address and takes the ICE servers from the join ack: the device-side
``turn:`` URL with TURN REST credentials the server minted for it, and
``iceTransportPolicy: relay`` (``?relay=1`` and ``--relay-only``).

Trust, per case (both flags only in the browser this test launches):

- HTTP: ``http://10.201.1.1`` is not a secure context, so a browser gives it no camera
  (which is why real deployments need HTTPS); the test marks that one origin secure with
  ``--unsafely-treat-insecure-origin-as-secure``.
- HTTPS: Chromium trusts the test's CA by its key, ``--ignore-certificate-errors-spki-list``
  with the base64 SHA-256 of the CA's SubjectPublicKeyInfo (the server sends the chain, CA
  included); every other certificate error is still an error.

Checks: the page's ledger balances and every label equals the full model run locally on the
page's own input tensors; the selected candidate pair in the page's getStats is ``relay``;
the DTLS bytes coturn carried for the device (counted in a capture of the relay's device-side
interface) are consistent with the page's transport bytesSent/bytesReceived, and what it
delivered on the server side with what it took in on the device side; no frame header in
clear anywhere, and no token or SDP in clear when the signaling is on HTTPS (over plain HTTP
the page's token is in the capture, in its GET request: the search does see the signaling). The browser's DTLS
version and cipher are printed (run with ``-s``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signaling import certs, token, turn
from splitcore.offline.datasets import DatasetError, load_cifar10
from splitcore.rtc.ice import IceServer
from splitcore.runtime.models import Manifest, full_runner
from splitcore.wire import frame
from tests.browser.chromium import ARTIFACTS, CHROMIUM, FLAGS, MISSING, write_y4m
from tests.browser.test_pairs import check_browser_sender, frame_bytes
from tests.netns import Testnet, TurnTally, tally_turn, unavailable_reason

IMAGES = 40          # CIFAR-10 test images the fake camera loops over
FRAMES = 90          # frames the page sends in each case
SPLIT, SHAPE = "stage1", (1, 32, 16, 16)
ROOM = "browser-relay"
SECRET = "browser-relay-secret-" + "k" * 24
TURN_SECRET = "browser-turn-secret-" + "t" * 24
PORTS = {"http": 8080, "https": 8443}
PAGE_TIMEOUT_MS = 60_000
# Bytes the transport counters and the relay may disagree by: what crosses after the page's
# final getStats (SCTP shutdown, DTLS close_notify) and the STUN consent checks, which the
# capture counts as ICE, not DTLS.
SLACK_BYTES = 8192
# After the page's final read, its SCTP stack may still retransmit chunks whose SACK came late
# (seen on a loaded 2-core machine: 29,941 B, one 32 KB frame, 0.9% of the stream): the
# page-vs-relay comparison allows that much more.
RETRANSMIT_SHARE = 0.02
DTLS_VERSIONS = {"FEFF": "DTLS 1.0", "FEFD": "DTLS 1.2", "FEFC": "DTLS 1.3"}  # RTCTransportStats.tlsVersion

_NETNS = unavailable_reason()
pytestmark = [pytest.mark.skipif(_NETNS is not None, reason=str(_NETNS)),
              pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

# Records the last full getStats() report the page itself asked for (its final one is read
# after the stream drained, for the summary and the last published stats). Observation only:
# the original getStats runs and its result is returned unchanged.
RECORD_STATS = """
(() => {
  const original = RTCPeerConnection.prototype.getStats;
  RTCPeerConnection.prototype.getStats = async function (...args) {
    const report = await original.apply(this, args);
    if (args.length === 0) window.__lastStats = Array.from(report.values());
    return report;
  };
})();
"""


def spki_hash(cert_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in ``cert_pem``: the
    form ``--ignore-certificate-errors-spki-list`` takes."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def security_of(stats: list[dict]) -> dict:
    """The selected candidate pair's types and the DTLS version/cipher in a getStats report
    (the fields of static/js/rtc/peer.js securityEntry, read independently here)."""
    by_id = {s["id"]: s for s in stats}
    (transport,) = [s for s in stats if s["type"] == "transport"]
    pair = by_id[transport["selectedCandidatePairId"]]
    local, remote = by_id[pair["localCandidateId"]], by_id[pair["remoteCandidateId"]]
    return {"tlsVersion": transport.get("tlsVersion"), "dtlsCipher": transport.get("dtlsCipher"),
            "local": local["candidateType"], "remote": remote["candidateType"],
            "localAddress": local.get("address"), "relayProtocol": local.get("relayProtocol"),
            "bytesSent": transport["bytesSent"], "bytesReceived": transport["bytesReceived"],
            "pairBytesSent": pair.get("bytesSent"), "pairBytesReceived": pair.get("bytesReceived")}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    if not os.environ.get("SPLITRTC_DATA"):
        pytest.skip("SPLITRTC_DATA is not set")
    try:
        test = load_cifar10(split="test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    picks = np.linspace(0, len(test.images) - 1, IMAGES).astype(int)
    return test.images[picks]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The namespaces, coturn, a CA and certificate for the relay's addresses."""
    work = tmp_path_factory.mktemp("browser-relay")
    with Testnet(work) as tn:
        coturn = tn.start_coturn(TURN_SECRET)
        made = certs.make(work / "certs", [tn.ip.relay_dev, tn.ip.relay_srv])
        yield {"net": tn, "coturn": coturn, "work": work, "certs": {k: Path(str(v)) for k, v in made.items()}}


def run_case(env: dict, images: np.ndarray, scheme: str) -> dict:
    tn: Testnet = env["net"]
    coturn, work, crt = env["coturn"], env["work"], env["certs"]
    case = work / scheme
    case.mkdir()
    port = PORTS[scheme]
    # the pages get the device-side TURN address from the join ack (with credentials minted
    # per peer); the Python receiver on the other side is given the server-side one
    server_ice = json.dumps([{"urls": coturn.url("device")}])
    tls = ["--cert", str(crt["cert"]), "--key", str(crt["key"])] if scheme == "https" else []
    device_url, server_url = tn.start_signaling(port, [
        "--secret", SECRET, "--ice-servers", server_ice, "--turn-secret", TURN_SECRET, "--relay-only", *tls],
        ca=crt["ca"] if scheme == "https" else None, log_name=f"server-{scheme}.log")
    name_rx, name_tx = f"py-recv-{scheme}", f"br-send-{scheme}"
    rx_token = token.mint(SECRET, ROOM + scheme, ["receiver"], 600, name_rx)
    tx_token = token.mint(SECRET, ROOM + scheme, ["sender"], 600, name_tx)
    rx_ice = json.dumps(turn.ice_servers_for(name_rx, [IceServer((coturn.url("server"),))], TURN_SECRET, 600))
    rx = tn.python(tn.server, ["-m", "receiver", "--server", server_url, "--room", ROOM + scheme, "--name", name_rx,
                               "--workers", "1", "--token", rx_token, "--relay-only", "--ice-servers", rx_ice,
                               *(["--ca", str(crt["ca"])] if scheme == "https" else [])], case / "rx.log")

    big = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_NEAREST) for im in images])
    y4m = write_y4m(big, case / "camera.y4m")
    flags = [*FLAGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    if scheme == "https":
        flags.append(f"--ignore-certificate-errors-spki-list={spki_hash(crt['ca'])}")
    else:
        flags.append(f"--unsafely-treat-insecure-origin-as-secure={device_url}")
    caps = {i: tn.capture(tn.relay, i, f"{scheme}-{i}.pcap") for i in (tn.relay_if_dev, tn.relay_if_srv)}
    errors: list[str] = []
    started = time.monotonic()
    from playwright.sync_api import sync_playwright
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(tn.launcher(tn.device, CHROMIUM, "chromium-in-device")),
                                         headless=True, args=flags)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.add_init_script(RECORD_STATS)
                query = (f"room={ROOM + scheme}&name={name_tx}&receiver={name_rx}&split={SPLIT}&frames={FRAMES}"
                         f"&token={tx_token}&relay=1&debug=1&autostart=1")
                page.goto(f"{device_url}/sender?{query}")
                page.wait_for_function("window.splitrtc && ['done', 'error'].includes(window.splitrtc.state.phase)",
                                       timeout=PAGE_TIMEOUT_MS)
                snap = page.evaluate("window.splitrtc.snapshot()")
                stats = page.evaluate("window.__lastStats || []")
                page.screenshot(path=str(case / "sender.png"), full_page=True)
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"sender-relay-{scheme}.png"), full_page=True)
            finally:
                browser.close()
    finally:
        page_s = time.monotonic() - started
        for c in caps.values():
            c.stop()
        rx_rc = tn.stop(rx)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in (case / "rx.log", work / f"server-{scheme}.log") if p.exists())
    assert snap["phase"] == "done", (snap["phase"], snap["error"], errors, logs, coturn.log_text()[-2000:])
    return {"snap": snap, "stats": stats, "errors": errors, "logs": logs, "rx_rc": rx_rc, "page_s": page_s,
            "tokens": (rx_token, tx_token), "names": (name_rx, name_tx),
            "pcaps": {i: c.path for i, c in caps.items()},
            "tally": {tn.relay_if_dev: tally_turn(caps[tn.relay_if_dev].path, tn.ip.device),
                      tn.relay_if_srv: tally_turn(caps[tn.relay_if_srv].path, tn.ip.server)}}


@pytest.fixture(scope="module")
def full():
    return full_runner(Manifest.load())


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_browser_sender_through_turn(scheme: str, net: dict, images: np.ndarray, full) -> None:
    r = run_case(net, images, scheme)
    tn: Testnet = net["net"]
    snap, s = r["snap"], r["snap"]["summary"]

    # every frame accounted, every label the full model's on the page's own input tensor
    labels = check_browser_sender(snap, full, FRAMES)
    assert s["frame_bytes"] == FRAMES * frame_bytes(SPLIT, SHAPE), s
    assert not r["errors"], r["errors"]
    assert r["rx_rc"] == 0, r["logs"]

    # the pair the page selected is relayed at both ends, over UDP to coturn
    sec = security_of(r["stats"])
    assert sec["local"] == "relay" and sec["remote"] == "relay", json.dumps(sec)
    # a relayed address is one of coturn's relay-ip addresses (it has one on each side)
    assert sec["localAddress"] in (tn.ip.relay_dev, tn.ip.relay_srv) and sec["relayProtocol"] == "udp", json.dumps(sec)
    assert sec["tlsVersion"] in ("FEFD", "FEFC"), sec  # DTLS 1.2 or 1.3
    assert sec["dtlsCipher"], sec
    assert s["wire_bytes"] <= sec["bytesSent"] <= s["wire_bytes"] + SLACK_BYTES, (s["wire_bytes"], sec)
    slack = max(SLACK_BYTES, int(RETRANSMIT_SHARE * sec["bytesSent"]))

    # what coturn carried for the device, against the page's transport counters
    dev: dict[str, TurnTally] = r["tally"][tn.relay_if_dev]
    srv: dict[str, TurnTally] = r["tally"][tn.relay_if_srv]
    up, down = dev["up"].dtls_bytes, dev["down"].dtls_bytes
    assert 0 <= up - sec["bytesSent"] <= slack, (up, sec["bytesSent"])
    assert 0 <= down - sec["bytesReceived"] <= slack, (down, sec["bytesReceived"])
    # and it delivered no more than it took in, either way. Less is UDP loss in the relay: none
    # on a quiet machine, but a loaded one (load average 6 on 2 cores) lost 17% in one run,
    # which SCTP then retransmitted; the page's own bytes above are the exact check.
    delivered, returned = srv["down"].dtls_bytes, srv["up"].dtls_bytes
    assert delivered <= up + SLACK_BYTES and down <= returned + SLACK_BYTES, (up, delivered, returned, down)
    print(f"relay: took {up:,} B from the device, delivered {delivered:,} B to the server side "
          f"({(up - delivered) / max(1, up):.1%} lost in the relay); back {returned:,} B -> {down:,} B")
    assert dev["up"].other_bytes == dev["down"].other_bytes == 0

    # nothing of the stream in clear; the signaling in clear only without TLS
    raw = {i: p.read_bytes() for i, p in r["pcaps"].items()}
    blob = b"".join(raw.values())
    name_rx, name_tx = r["names"]
    assert f":{name_tx}".encode() in raw[tn.relay_if_dev] and f":{name_rx}".encode() in raw[tn.relay_if_srv], \
        "the TURN usernames (in clear in Allocate) are not in the capture: it saw nothing"
    header = frame.encode(frame.Header(seq=0, capture_ms=0.0, split=SPLIT, shape=SHAPE),
                          np.zeros(SHAPE, np.float32).tobytes())[0][:6]
    assert header not in blob, "a frame header in clear"
    signaling_needles = [t.encode() for t in r["tokens"]] + [b"a=fingerprint", b"a=ice-ufrag"]
    if scheme == "https":
        for needle in signaling_needles:
            assert needle not in blob, f"{needle[:20]!r} in clear over HTTPS"
    else:
        # the page's own URL (?token=) went out in clear; the SDP did too, but inside
        # permessage-deflate WebSocket frames, so it is not searchable as text
        assert r["tokens"][1].encode() in raw[tn.relay_if_dev], "the page's token is not in the HTTP capture"

    dtls = f"{DTLS_VERSIONS.get(sec['tlsVersion'], sec['tlsVersion'])} ({sec['tlsVersion']}) {sec['dtlsCipher']}"
    print(f"\n[{scheme}] {s['frames_sent']} frames sent by the page, {s['replies']} replies "
          f"({len(labels)} labels equal to local inference), dropped by sender {s['dropped_by_sender']}, "
          f"by receiver {s['dropped_by_receiver']}; page run {r['page_s']:.1f} s\n"
          f"[{scheme}] Chromium pair {sec['local']}/{sec['remote']} via {sec['localAddress']} "
          f"({sec['relayProtocol']}), {dtls}\n"
          f"[{scheme}] page transport bytesSent {sec['bytesSent']} B (summary {s['wire_bytes']} B, payload "
          f"{s['payload_bytes']} B), bytesReceived {sec['bytesReceived']} B; relay saw {up} B DTLS up "
          f"from the device (+{up - sec['bytesSent']} B) "
          f"({dev['up'].dtls_packets} packets), {down} B down; delivered {srv['down'].dtls_bytes} B to the server side, "
          f"took {srv['up'].dtls_bytes} B from it; searched {len(blob)} captured bytes")
