"""getStats()-style reports for Python WebRTC peers.

aiortc's ``RTCPeerConnection.getStats()`` returns an empty report for a connection that
carries only data channels (it gathers RTP stats only). The dashboard must treat browser and
Python peers alike, so this module builds the entries a browser would report, with the W3C
field names and meanings:

- ``data-channel`` (RTCDataChannelStats): counted by a :class:`ChannelCounter` attached to
  each aiortc ``RTCDataChannel``;
- ``transport`` (RTCTransportStats): read from the DTLS transport's private ``_get_stats()``.

It also derives rates from two successive reports (:func:`rates`) and publishes the report
to the signaling server once a second (:class:`StatsPublisher`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stats publisher alone (a --workers parent) needs no aiortc
    from aiortc import RTCDataChannel, RTCPeerConnection

log = logging.getLogger("splitrtc.rtc.stats")

Report = list[dict[str, Any]]

_stats_ids = itertools.count(1)
_COUNTER_ATTR = "_splitrtc_counter"
_warned_private_api = False


def payload_size(data: bytes | str) -> int:
    """Size of one message as W3C counts it: bytes as-is, text as its UTF-8 encoding.

    ``len(str)`` counts code points, which under-counts any non-ASCII text.
    """
    if isinstance(data, str):
        return len(data.encode("utf-8"))
    return len(data)


class ChannelCounter:
    """Message and payload-byte counters for one aiortc data channel.

    Sending is counted by wrapping ``channel.send`` on the instance (not the class), so
    every caller is counted, including code that knows nothing about stats, and a send
    that raises (channel not open, wrong type) is not counted. Receiving is counted by a
    listener of its own on the channel's ``message`` event: the emitter calls every
    listener, so the application's listeners are untouched and see the same messages.
    Attach it as soon as the channel exists (for the answerer: inside its ``datachannel``
    handler), or early messages are missed.
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self.stats_id = f"DC{next(_stats_ids)}"
        self.messages_sent = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.bytes_received = 0
        self._original_send = channel.send
        channel.send = self._counted_send  # type: ignore[method-assign]
        channel.on("message", self._on_message)

    @classmethod
    def attach(cls, channel: RTCDataChannel) -> ChannelCounter:
        """Counter of ``channel``, created on first use.

        Idempotent so that two parts of a peer can ask for the counter without wrapping
        ``send`` twice (which would count every message twice).
        """
        counter = getattr(channel, _COUNTER_ATTR, None)
        if counter is None:
            counter = cls(channel)
            setattr(channel, _COUNTER_ATTR, counter)
        return counter

    def detach(self) -> None:
        """Restore the channel's own ``send`` and stop counting."""
        if self.channel.__dict__.get("send") == self._counted_send:
            del self.channel.__dict__["send"]
        self.channel.remove_listener("message", self._on_message)
        self.channel.__dict__.pop(_COUNTER_ATTR, None)

    def _counted_send(self, data: bytes | str) -> None:
        self._original_send(data)
        self.messages_sent += 1
        self.bytes_sent += payload_size(data)

    def _on_message(self, data: bytes | str) -> None:
        self.messages_received += 1
        self.bytes_received += payload_size(data)

    def entry(self, timestamp: float) -> dict[str, Any]:
        """This channel as an RTCDataChannelStats dictionary."""
        ch = self.channel
        return {
            "type": "data-channel",
            "id": self.stats_id,
            "timestamp": timestamp,
            "label": ch.label,
            "protocol": ch.protocol,
            "dataChannelIdentifier": ch.id,
            "state": ch.readyState,
            "messagesSent": self.messages_sent,
            "bytesSent": self.bytes_sent,
            "messagesReceived": self.messages_received,
            "bytesReceived": self.bytes_received,
        }


def _warn_private_api_once(reason: str) -> None:
    """Warn once per process: the condition is permanent, a warning a second is noise."""
    global _warned_private_api
    if not _warned_private_api:
        _warned_private_api = True
        log.warning("no transport stats: aiortc's private DTLS _get_stats() %s", reason)


def transport_entry(dtls: Any, timestamp: float) -> dict[str, Any] | None:
    """The DTLS transport's counters as an RTCTransportStats dictionary, or None.

    ``_get_stats()`` is private aiortc API: if it is gone or changes shape, the report
    loses its transport entry (and logs why, once) instead of taking the peer down.
    """
    get_stats = getattr(dtls, "_get_stats", None)
    if not callable(get_stats):
        _warn_private_api_once("is missing")
        return None
    try:
        stats = next(s for s in get_stats().values() if s.type == "transport")
        entry = {
            "type": "transport",
            "id": stats.id,
            "timestamp": timestamp,
            "bytesSent": int(stats.bytesSent),
            "bytesReceived": int(stats.bytesReceived),
            "packetsSent": int(stats.packetsSent),
            "packetsReceived": int(stats.packetsReceived),
            "dtlsState": str(stats.dtlsState),
        }
    except Exception as exc:  # noqa: BLE001 - private API, any failure means "no entry"
        _warn_private_api_once(f"failed: {exc!r}")
        return None
    ice_role = getattr(stats, "iceRole", None)
    if ice_role:
        entry["iceRole"] = str(ice_role)
    return entry


async def collect(pc: RTCPeerConnection, counters: Iterable[ChannelCounter]) -> Report:
    """A getStats()-like report for one peer connection and its counted channels.

    Async to match ``getStats()``, so callers can switch to aiortc's own if it ever
    reports data channels. All entries share one timestamp (ms since the Unix epoch, as
    in W3C stats) so rates computed per entry use the same interval.
    """
    now = time.time() * 1000.0
    report: Report = [c.entry(now) for c in counters]
    sctp = pc.sctp
    if sctp is not None:  # None until a data channel has been negotiated
        entry = transport_entry(sctp.transport, now)
        if entry is not None:
            report.append(entry)
    return report


@dataclass(frozen=True)
class Rates:
    """Per-second rates between two reports, summed over their data channels/transports.

    ``payload_*`` are application bytes (data-channel stats), ``wire_*`` are bytes on the
    wire (transport stats: DTLS, SCTP headers, retransmissions); both are needed because
    their ratio shows retransmission and framing overhead.
    """

    interval_s: float = 0.0
    payload_bytes_sent_ps: float = 0.0
    payload_bytes_received_ps: float = 0.0
    messages_sent_ps: float = 0.0
    messages_received_ps: float = 0.0
    wire_bytes_sent_ps: float = 0.0
    wire_bytes_received_ps: float = 0.0
    packets_sent_ps: float = 0.0
    packets_received_ps: float = 0.0

    def describe(self) -> str:
        """One short line for a peer's console status."""
        return (
            f"payload out {_human(self.payload_bytes_sent_ps)}/s"
            f" in {_human(self.payload_bytes_received_ps)}/s,"
            f" wire out {_human(self.wire_bytes_sent_ps)}/s"
            f" in {_human(self.wire_bytes_received_ps)}/s,"
            f" msgs out {self.messages_sent_ps:.0f}/s in {self.messages_received_ps:.0f}/s"
        )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if abs(n) < 1000.0:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


_RATE_FIELDS = {
    "data-channel": {
        "payload_bytes_sent_ps": "bytesSent",
        "payload_bytes_received_ps": "bytesReceived",
        "messages_sent_ps": "messagesSent",
        "messages_received_ps": "messagesReceived",
    },
    "transport": {
        "wire_bytes_sent_ps": "bytesSent",
        "wire_bytes_received_ps": "bytesReceived",
        "packets_sent_ps": "packetsSent",
        "packets_received_ps": "packetsReceived",
    },
}


def rates(previous: Report, current: Report) -> Rates:
    """Rates from two successive reports of the same peer.

    Entries are matched by ``id``: one only in ``current`` (a new connection or channel)
    has no baseline and is skipped, as is one whose counters went backwards, rather than
    reporting a bogus spike. The interval is the largest one among matched entries.
    """
    before = {e.get("id"): e for e in previous}
    totals = dict.fromkeys(Rates.__dataclass_fields__, 0.0)
    interval = 0.0
    for cur in current:
        fields = _RATE_FIELDS.get(cur.get("type", ""))
        prev = before.get(cur.get("id"))
        if fields is None or prev is None or prev.get("type") != cur.get("type"):
            continue
        dt = (cur["timestamp"] - prev["timestamp"]) / 1000.0
        deltas = {k: cur.get(f, 0) - prev.get(f, 0) for k, f in fields.items()}
        if dt <= 0 or min(deltas.values()) < 0:
            continue
        interval = max(interval, dt)
        for key, delta in deltas.items():
            totals[key] += delta / dt
    totals["interval_s"] = interval
    return Rates(**totals)


class StatsPublisher:
    """Emits ``stats`` {report, app} to the signaling server at a fixed interval.

    Runs as its own asyncio task so that a slow or failing emit never stalls inference,
    and catches every error of a round (log, then try again next round): losing one
    dashboard update is harmless, losing the peer is not. Keeps the latest report and
    the rates since the previous one for the peer's console status line.
    """

    def __init__(
        self,
        sio: Any,
        report: Callable[[], Awaitable[Report]],
        app: Callable[[], dict[str, Any]],
        interval_s: float = 1.0,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """``sio`` is a python-socketio AsyncClient; ``report`` returns the current
        report (e.g. ``lambda: collect(pc, counters)``) so that a peer that replaces its
        connection, or serves several, decides what it covers. ``ready`` says whether the
        server will take stats now (``SignalingClient.joined``): between reconnecting and
        rejoining its room a peer is connected but not yet in a room, and a round would be
        refused."""
        self.sio = sio
        self.ready = ready
        self.report = report
        self.app = app
        self.interval_s = interval_s
        self.last_report: Report = []
        self.last_rates: Rates | None = None
        self.emitted = 0
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None

    def start(self) -> None:
        """Start publishing (no-op if already running)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stats-publisher")

    async def stop(self) -> None:
        """Stop publishing and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self.publish_once()
            await asyncio.sleep(self.interval_s)

    async def publish_once(self) -> bool:
        """One round; True if a stats event went out. Never raises (except cancellation)."""
        try:
            report = await self.report()
            payload = {"report": report, "app": self.app()}
            if self.last_report:
                self.last_rates = rates(self.last_report, report)
            self.last_report = report
            if not self.sio.connected or (self.ready is not None and not self.ready()):
                log.debug("stats not sent: signaling not connected or not in the room")
                return False
            await self.sio.emit("stats", payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed round must not end the task
            self._log_failure(exc)
            return False
        self.emitted += 1
        self._last_error = None
        return True

    def _log_failure(self, exc: Exception) -> None:
        """Full traceback when a failure starts or changes, then quiet while it repeats."""
        text = repr(exc)
        if text != self._last_error:
            log.warning("stats round failed (will retry): %s", text, exc_info=exc)
        else:
            log.debug("stats round failed again: %s", text)
        self._last_error = text
