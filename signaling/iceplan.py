"""The ICE servers the signaling server hands each peer in its join ack.

Browser pages hard-code no STUN or TURN host: ``server.py --ice-servers FILE`` (or
``$SPLITRTC_ICE_SERVERS``, parsed by ``splitcore.rtc.ice``) says which, and with
``--turn-secret`` every join gets a fresh TURN REST username/credential pair
(``signaling.turn``) naming that peer and valid ``--turn-ttl`` seconds, so no long-lived
TURN password ever reaches a page. ``--relay-only`` tells the pages to use only relayed
candidates (``iceTransportPolicy: "relay"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splitcore.rtc.ice import IceConfig

from . import turn


@dataclass(frozen=True)
class IcePlan:
    """ICE servers, the TURN REST secret (None: credentials passed on as configured) and the
    policy the pages are told to use."""

    config: IceConfig = IceConfig()
    turn_secret: str | None = None
    turn_ttl_s: float = turn.DEFAULT_TTL_S

    def __post_init__(self) -> None:
        if self.turn_secret is not None and not self.turn_secret:
            raise ValueError("the TURN secret is empty")
        if not 0 < self.turn_ttl_s <= turn.MAX_TTL_S:
            raise ValueError(f"--turn-ttl must be > 0 and at most {turn.MAX_TTL_S} s, got {self.turn_ttl_s}")

    def for_peer(self, name: str, peer_id: str) -> dict[str, Any]:
        """The join ack's ICE fields for one peer: ``iceServers`` and ``iceTransportPolicy``."""
        servers = turn.ice_servers_for(name or peer_id, self.config.servers, self.turn_secret, self.turn_ttl_s)
        return {"iceServers": servers, "iceTransportPolicy": "relay" if self.config.relay_only else "all"}

    def describe(self) -> str:
        """One line for the start-up banner, credentials left out."""
        creds = (f"TURN REST credentials minted per peer, valid {self.turn_ttl_s / 3600:g} h"
                 if self.turn_secret else "credentials as configured")
        return f"{self.config.describe()}; {creds}"
