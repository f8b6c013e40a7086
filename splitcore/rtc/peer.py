"""WebRTC set-up for the Python peers: the peer connection and what signaling carries into it.

aiortc puts all its ICE candidates in the SDP (it never trickles), but browsers do trickle,
so incoming ``candidate`` messages are applied with ``add_browser_candidate``.

``new_peer_connection`` takes its ICE servers and transport policy from
``splitcore.rtc.ice`` (one configuration for every command); ``security`` reports what a
connection ended up using (the selected candidate pair's types, the DTLS version and cipher),
which aiortc's ``getStats()`` does not, so the dashboard can show it beside a browser's.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from splitcore.rtc.ice import IceConfig, from_urls


def new_peer_connection(ice_servers: IceConfig | Sequence[str] | None = None) -> RTCPeerConnection:
    """A connection configured by ``ice_servers``: an :class:`IceConfig` (``ice.from_args``),
    or the older list of bare STUN urls. No STUN by default: the project must work on closed
    networks and on loopback."""
    config = ice_servers if isinstance(ice_servers, IceConfig) else from_urls(ice_servers)
    return RTCPeerConnection(config.rtc_configuration())


async def add_browser_candidate(pc: RTCPeerConnection, init: dict | None) -> None:
    """Apply a trickled ``RTCIceCandidateInit`` from a browser; empty means end-of-candidates."""
    text = (init or {}).get("candidate") or ""
    if not text or init is None:
        return
    cand = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
    cand.sdpMid = init.get("sdpMid")
    cand.sdpMLineIndex = init.get("sdpMLineIndex")
    await pc.addIceCandidate(cand)


def description(msg: dict) -> RTCSessionDescription:
    sdp = msg.get("sdp")
    if not isinstance(sdp, str) or msg.get("type") not in ("offer", "answer"):
        raise ValueError(f"signal {msg.get('type')!r} carries no SDP string")
    return RTCSessionDescription(sdp=sdp, type=msg["type"])


_PAIR_RANK = {"host": 0, "prflx": 1, "srflx": 1, "relay": 2}


@dataclass(frozen=True)
class Security:
    """What a connection uses, with the field names of W3C stats where they exist.

    ``candidatePairType`` is the "furthest" of the two ends (relay if either end is
    relayed, then srflx/prflx, then host): that is what tells a user whether TURN carries
    the stream. ``None`` means not known yet (not connected) or not readable.
    """

    candidatePairType: str | None = None
    localCandidateType: str | None = None
    remoteCandidateType: str | None = None
    localAddress: str | None = None
    remoteAddress: str | None = None
    protocol: str | None = None
    tlsVersion: str | None = None
    dtlsCipher: str | None = None
    dtlsState: str | None = None

    def entry(self) -> dict[str, Any]:
        """The non-empty fields, for a stats report or the dashboard."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def security(pc: RTCPeerConnection) -> Security:
    """The selected candidate pair and the DTLS version/cipher of ``pc``'s data transport.

    Reads aiortc/aioice internals (the nominated pair, the pyOpenSSL connection): if they
    are missing or change shape, the fields stay ``None`` rather than raise, because this
    feeds a dashboard, never a decision.
    """
    sctp = pc.sctp
    dtls = getattr(sctp, "transport", None)
    if dtls is None:
        return Security()
    fields: dict[str, Any] = {"dtlsState": str(getattr(dtls, "state", "")) or None}
    ssl = getattr(dtls, "_ssl", None)
    if ssl is not None:
        try:
            fields["tlsVersion"] = ssl.get_protocol_version_name() or None
            fields["dtlsCipher"] = ssl.get_cipher_name() or None
        except Exception:  # noqa: BLE001 - pyOpenSSL internals: unknown beats a crash
            pass
    pair = _nominated_pair(dtls)
    if pair is not None:
        try:
            local, remote = pair.local_candidate, pair.remote_candidate
            fields.update(
                localCandidateType=local.type, remoteCandidateType=remote.type,
                localAddress=f"{local.host}:{local.port}", remoteAddress=f"{remote.host}:{remote.port}",
                protocol=local.transport,
                candidatePairType=max((local.type, remote.type), key=lambda t: _PAIR_RANK.get(t, 0)))
        except AttributeError:
            pass
    return Security(**fields)


SECURITY_TYPE = "security"


def security_entry(pc: RTCPeerConnection, entry_id: str = SECURITY_TYPE,
                   now: float | None = None) -> dict[str, Any] | None:
    """``security(pc)`` as a stats-report entry (``type: "security"``, the same fields a
    browser page reports from its getStats), or None before the connection has any.

    A report carries one per connection, so the dashboard shows each peer's candidate pair
    type and DTLS cipher whatever it runs on."""
    fields = security(pc).entry()
    if not fields:
        return None
    return {"type": SECURITY_TYPE, "id": entry_id, "timestamp": time.time() * 1000.0 if now is None else now,
            **fields}


def _nominated_pair(dtls: Any) -> Any:
    """aioice's nominated pair for component 1 (the only one a data channel uses), or None."""
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict) or not nominated:
        return None
    return nominated.get(1) or next(iter(nominated.values()))
