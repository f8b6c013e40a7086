"""Socket.IO packets checked before their JSON is decoded.

python-socketio decodes a client's packet (``json.loads``) before any handler runs, so a
payload nested ~1000 deep dies there with a RecursionError that only reaches the server
log, and a 250 KB packet is fully parsed before `validate.payload_object` can refuse it.
``BoundedPacket`` checks size, nesting depth and shape on the raw text first. A packet that
fails is not dropped silently: it becomes the event ``REFUSED_EVENT`` (keeping its ack id),
whose handler answers the client with the usual ``error`` event and negative ack.
"""

from __future__ import annotations

import re
from typing import Any

from engineio import json as engineio_json
from socketio import packet

from .validate import MAX_EVENT_CHARS, MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, nesting_exceeds

# Event name of a refused packet. A client may send an event of that name too; it is
# refused all the same, so nothing is gained by it.
REFUSED_EVENT = "\x00refused"
# A packet is its type, ack id and [event, payload]: allow the payload limit plus framing.
MAX_PACKET_CHARS = MAX_PAYLOAD_BYTES + 256
# The protocol is JSON only; binary attachments are tolerated (and then refused by the
# payload check) but never more than a few, so a client cannot make us hold many.
MAX_ATTACHMENTS = 4
_EVENT_NAME = re.compile(r'\s*\[\s*"([^"\\]{1,' + str(MAX_EVENT_CHARS) + r'})"')


class PacketRefused(ValueError):
    """Raised by the JSON step for a payload refused unparsed; ``event`` if readable."""

    def __init__(self, error: str, event: str) -> None:
        super().__init__(error)
        self.event = event


def _event_name(text: str) -> str:
    match = _EVENT_NAME.match(text)
    return match.group(1) if match else "?"


class _CheckedJson:
    """The ``json`` module python-socketio's packets use, with checks before ``loads``."""

    dumps = staticmethod(engineio_json.dumps)

    @staticmethod
    def loads(text: str, **kwargs: Any) -> Any:
        if len(text) > MAX_PACKET_CHARS:
            raise PacketRefused(f"payload is about {len(text)} bytes, limit is {MAX_PAYLOAD_BYTES}",
                                _event_name(text))
        if nesting_exceeds(text, MAX_JSON_DEPTH):
            raise PacketRefused(f"payload is nested deeper than {MAX_JSON_DEPTH} levels", _event_name(text))
        return engineio_json.loads(text, **kwargs)


class BoundedPacket(packet.Packet):
    """python-socketio's Packet with `_CheckedJson`; what it cannot accept it turns into a
    `REFUSED_EVENT` event carrying {event, error}, so the handlers answer the client."""

    json = _CheckedJson

    def decode(self, encoded_packet: Any) -> int:
        if not isinstance(encoded_packet, str):
            # A binary message with no binary packet announced before it.
            return self._refuse("?", "unexpected binary message: the protocol is JSON only")
        try:
            attachments = int(super().decode(encoded_packet) or 0)
        except PacketRefused as err:
            return self._refuse(err.event, str(err))
        except (ValueError, TypeError, RecursionError) as err:
            # json.JSONDecodeError is a ValueError; so are python-socketio's header errors.
            return self._refuse(_event_name(encoded_packet[1:]), f"malformed packet: {err}")
        if attachments > MAX_ATTACHMENTS:
            return self._refuse(_event_name(encoded_packet.partition("-")[2]),
                                "payload is not plain JSON: binary attachments are not part of the protocol")
        if self.packet_type in (packet.EVENT, packet.BINARY_EVENT):
            data = self.data
            if not (isinstance(data, list) and data and isinstance(data[0], str)
                    and 0 < len(data[0]) <= MAX_EVENT_CHARS):
                return self._refuse("?", "malformed event: expected [name, payload] with a short name")
        return attachments

    def _refuse(self, event: str, error: str) -> int:
        """Become the `REFUSED_EVENT` event, keeping the namespace and ack id if parsed."""
        self.packet_type = packet.EVENT
        self.data = [REFUSED_EVENT, {"event": event, "error": error}]
        return 0
