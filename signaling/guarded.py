"""The Socket.IO server with its guards: bounded packets and a per-client rate limit.

python-socketio hands every Engine.IO message of a client, in order, to
``_handle_eio_message``; checking the client's token bucket there drops a flood before its
packets are even decoded. (python-socketio has no public hook at that point; requirements.txt
pins the version this was written against.)
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from .counters import Counters
from .flood import DISCONNECT, PASS, WARN, FloodGuard
from .limits import Limits
from .logsummary import SummaryLog
from .packets import BoundedPacket
from .remote import remote_address

log = logging.getLogger("splitrtc.signaling.flood")


class GuardedServer(socketio.AsyncServer):
    def __init__(self, limits: Limits, counters: Counters, **kwargs: Any) -> None:
        super().__init__(serializer=BoundedPacket, **kwargs)
        self.limits, self.counters = limits, counters
        self.flood = FloodGuard(limits.events_per_s, limits.burst)
        self._flood_log = SummaryLog(log, "rate-limit events")

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        verdict = self.flood.check(eio_sid)
        if verdict == PASS:
            await super()._handle_eio_message(eio_sid, data)
            return
        self.counters.rate_limited += 1
        if verdict == WARN:
            sid = self.manager.sid_from_eio_sid(eio_sid, "/")
            if sid is not None:
                await self.emit("error", {"event": "*", "error": (
                    f"rate limit: over {self.limits.events_per_s:g} events/s; events are dropped, and the "
                    f"connection is closed after {self.limits.burst} more")}, to=sid)
        elif verdict == DISCONNECT:
            self.counters.flood_disconnects += 1
            self.flood.forget(eio_sid)
            self._flood_log.warning("disconnect", "disconnecting client %s (%s): over %.0f events/s after %d "
                                    "dropped events", eio_sid, remote_address(self.environ.get(eio_sid, {})),
                                    self.limits.events_per_s, self.limits.burst)
            await self.eio.disconnect(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        self.flood.forget(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)
