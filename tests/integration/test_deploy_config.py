"""The deployment configuration pieces with their real consumers: ICE server lists through
aiortc's own parser, TURN credential lists, the local CA in a real TLS handshake, and the
terminal QR code read back by OpenCV's QR decoder."""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import io
import json
import socket
import ssl
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs
from cryptography import x509

from signaling import certs, qr, turn
from splitcore.rtc import ice
from splitcore.rtc.peer import new_peer_connection, security

TURN = {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"],
        "username": "turn-user", "credential": "turn-pass-9f3"}
STUN = {"urls": "stun:stun.example.org"}


# -- ICE servers ------------------------------------------------------------------------------------------
def test_a_valid_list_reaches_aiortc_as_given(tmp_path: Path) -> None:
    path = tmp_path / "ice.json"
    path.write_text(json.dumps([STUN, TURN]))
    cfg = ice.load(str(path), relay_only=True, environ={})
    assert cfg.to_json() == [STUN, TURN]
    rtc = cfg.rtc_configuration()
    assert rtc.iceTransportPolicy == RTCIceTransportPolicy.RELAY
    kwargs = connection_kwargs(rtc.iceServers or [])  # what aiortc hands aioice
    assert kwargs["stun_server"] == ("stun.example.org", 3478)
    assert kwargs["turn_server"] == ("turn.example.org", 3478) and kwargs["turn_transport"] == "udp"
    assert (kwargs["turn_username"], kwargs["turn_password"]) == ("turn-user", "turn-pass-9f3")
    assert cfg.aiortc_ignored == ["turns:turn.example.org:5349?transport=tcp"]
    assert "relay only" in cfg.describe() and "turn-pass-9f3" not in cfg.describe()


def test_env_inline_json_or_path_and_the_option_wins(tmp_path: Path) -> None:
    path = tmp_path / "ice.json"
    path.write_text(json.dumps([TURN]))
    assert ice.load(None, environ={ice.ENV: json.dumps([STUN])}).to_json() == [STUN]
    assert ice.load(None, environ={ice.ENV: str(path)}).to_json() == [TURN]
    assert ice.load(str(path), environ={ice.ENV: json.dumps([STUN])}).to_json() == [TURN]
    assert ice.load(None, environ={}).servers == ()
    p = argparse.ArgumentParser()
    ice.add_ice_options(p)
    args = p.parse_args(["--ice-servers", str(path), "--relay-only"])
    assert ice.from_args(args, environ={}).relay_only


@pytest.mark.parametrize(("data", "message"), [
    ({"urls": "stun:x"}, "expected a JSON list"),
    (["stun:x"], r"\[0\]: expected an object"),
    ([{"url": "stun:x"}], "unknown field"),
    ([{"urls": []}], "urls: expected"),
    ([{"urls": "http://x"}], "is not a STUN/TURN url"),
    ([{"urls": "stun:x:99999"}], "port must be"),
    ([{"urls": "stun:x?transport=udp"}], "takes no"),
    ([{"urls": "turn:x?transport=sctp"}], "is not a STUN/TURN url"),
    ([STUN, {"urls": "turn:x"}], r"\[1\]: a turn:/turns: url needs both"),
    ([{**TURN, "credentialType": "oauth"}], "only 'password'"),
    ([{**TURN, "username": 7}], "username: expected"),
    ([STUN] * (ice.MAX_SERVERS + 1), "at most"),
])
def test_invalid_lists_are_refused_naming_the_entry(data: object, message: str) -> None:
    with pytest.raises(ice.IceConfigError, match=message):
        ice.load(json.dumps(data), environ={})


def test_unreadable_sources_and_relay_only_without_turn(tmp_path: Path) -> None:
    with pytest.raises(ice.IceConfigError, match="cannot read"):
        ice.load(str(tmp_path / "missing.json"), environ={})
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ice.IceConfigError, match="not valid JSON"):
        ice.load(str(bad), environ={})
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (ice.MAX_FILE_BYTES + 1))
    with pytest.raises(ice.IceConfigError, match="at most"):
        ice.load(str(big), environ={})
    with pytest.raises(ice.IceConfigError, match="--relay-only needs a TURN server"):
        ice.load(json.dumps([STUN]), relay_only=True, environ={})
    with pytest.raises(ice.IceConfigError, match="--relay-only needs a TURN server"):
        ice.load(None, relay_only=True, environ={})


def test_new_peer_connection_keeps_the_old_form_and_reports_security() -> None:
    async def run() -> None:
        old = new_peer_connection(["stun:stun.example.org"])
        new = new_peer_connection(ice.load(json.dumps([TURN]), relay_only=True, environ={}))
        bare = new_peer_connection()
        assert security(bare).entry() == {}  # nothing negotiated yet: nothing claimed
        for pc in (old, new, bare):
            await pc.close()
        with pytest.raises(ice.IceConfigError):
            new_peer_connection(["turn:x"])  # TURN needs credentials: say so at once
    asyncio.run(run())


# -- TURN credential lists ----------------------------------------------------------------------------
def test_ice_servers_for_mints_per_peer_and_keeps_stun_apart() -> None:
    servers = ice.parse_servers([{"urls": ["stun:s", "turn:t"], "username": "static", "credential": "static"}])
    out = turn.ice_servers_for("cam:1", servers, "secret", ttl=3600, now=1000)
    assert out[0] == {"urls": "stun:s"}
    username = "4600:cam_1"
    expected = base64.b64encode(hmac.new(b"secret", username.encode(), hashlib.sha1).digest()).decode()
    assert out[1] == {"urls": "turn:t", "username": username, "credential": expected}
    assert turn.ice_servers_for("cam", servers, None) == [servers[0].to_dict()]  # no secret: as configured
    with pytest.raises(ValueError, match="ttl"):
        turn.mint("secret", "cam", ttl_s=0)


# -- certificates ---------------------------------------------------------------------------------------
def _handshake(out: Path, host: str) -> str:
    """A real TLS handshake on loopback: server with server.pem/key, client trusting ca.pem."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(out / "server.pem", out / "server.key")
    client_ctx = ssl.create_default_context(cafile=str(out / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except ssl.SSLError:  # the client refused our certificate: the client side reports it
                conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=host) as tls:
            data = tls.recv(2)
        t.join(10)
    return data.decode()


def test_certs_pass_a_real_tls_handshake_and_keep_the_ca(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    first = certs.make(out, ["cam.lan"])
    assert first["new_ca"]
    for host in ("localhost", "127.0.0.1", "cam.lan"):
        assert _handshake(out, host) == "ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(out, "elsewhere.example")
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    ca_before = (out / "ca.pem").read_bytes()
    leaf_before = (out / "server.pem").read_bytes()
    again = certs.make(out)
    assert not again["new_ca"] and (out / "ca.pem").read_bytes() == ca_before
    assert (out / "server.pem").read_bytes() != leaf_before
    leaf = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert days <= 398
    assert _handshake(out, "localhost") == "ok"


# -- QR code -------------------------------------------------------------------------------------------------
def _terminal_to_image(text: str, scale: int = 8) -> np.ndarray:
    """The half-block drawing back to pixels: block = light, space = dark, upper/lower halves."""
    halves = {"█": (255, 255), " ": (0, 0), "▀": (255, 0), "▄": (0, 255)}
    rows = [line for line in text.splitlines() if line]
    grid = np.array([[halves[ch] for ch in line] for line in rows], np.uint8)  # [row, col, 2]
    modules = grid.transpose(0, 2, 1).reshape(-1, grid.shape[1])
    padded = np.pad(modules, 4, constant_values=255)
    return np.kron(padded, np.ones((scale, scale), np.uint8))


def test_terminal_qr_decodes_to_the_sender_url() -> None:
    (url,) = qr.sender_urls(8443, True, "lab", token="eyJ.abc.def", host="192.168.1.20")
    assert url == "https://192.168.1.20:8443/sender?room=lab&token=eyJ.abc.def"
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(_terminal_to_image(qr.render(url)))
    assert decoded == url
    assert qr.sender_urls(443, True, "lab", host="::1") == ["https://[::1]/sender?room=lab"]
    buf = io.StringIO()
    printed = qr.print_sender_urls(8080, False, "demo", out=buf)
    assert printed[0].startswith("http://") and "HTTPS" in buf.getvalue()
