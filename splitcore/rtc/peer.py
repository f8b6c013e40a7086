"""WebRTC set-up for the Python peers: the peer connection and what signaling carries into it.

aiortc puts all its ICE candidates in the SDP (it never trickles), but browsers do trickle,
so incoming ``candidate`` messages are applied with ``add_browser_candidate``.
"""
from __future__ import annotations

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


def new_peer_connection(ice_servers: list[str] | None = None) -> RTCPeerConnection:
    """No STUN by default: the project must work on closed networks and on loopback."""
    servers = [RTCIceServer(urls=u) for u in ice_servers or []]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


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
