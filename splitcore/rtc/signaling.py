"""The Python peers' side of signaling (docs/signaling.md): one Socket.IO connection, one
room, one role. The browser's twin is ``static/js/rtc/signaling.js``.

Both the sender and the receiver join a room through ``SignalingClient`` and exchange SDP
with it; ``splitcore.rtc.peer`` turns what arrives into aiortc objects.

Signaling is only needed to *set up* a peer connection: once a data channel is open it runs
peer to peer. So when the signaling server goes away (restarted, network blip) the client
reconnects by itself, with backoff, and joins the same room with the same role and name
again, while its owner's data channels keep streaming. The server gives every connection a
new id, so peer ids change across a reconnect: match peers by role and name, not by id.
Only after ``give_up_after`` seconds without a server does the client give up, which its
owner sees as state ``"lost"``, a ``("lost", ...)`` peer event, ``until_lost()`` raising,
and ``wait_for_peer``/``wait_joined``/``signal`` raising ``SignalingError``.

A server started with ``--secret`` needs a room token in the join (``token``: the CLIs'
``--token`` or ``$SPLITRTC_TOKEN``); an ``https://`` server with a private CA is trusted
with ``ca`` (``--ca FILE``), or the standard ``$SSL_CERT_FILE``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import socketio

log = logging.getLogger("splitrtc.rtc.signaling")
SignalHandler = Callable[[dict], Awaitable[None]]
RejoinHandler = Callable[[str], Awaitable[None]]

# Client states (``SignalingClient.state``).
NEW, JOINED, RECONNECTING, LOST, CLOSED = "new", "joined", "reconnecting", "lost", "closed"


ENV_TOKEN = "SPLITRTC_TOKEN"
ASSIGN_EVERY_S = 1.0  # pool senders ask for another receiver at most this often


class SignalingError(RuntimeError):
    """The signaling server refused us, could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class Credentials:
    """What a peer shows the server: a room token (None on an open server) and the CA file
    that vouches for an ``https://`` server's certificate (None: the system's, or
    ``$SSL_CERT_FILE``)."""

    token: str | None = None
    ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context trusting ``ca`` (verification stays on); None: aiohttp's default."""
        if self.ca is None:
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise SignalingError(f"cannot use --ca {self.ca}: {exc}") from None


def add_access_options(parser: argparse.ArgumentParser) -> None:
    """``--token`` and ``--ca``, the same on every peer command."""
    group = parser.add_argument_group("access (servers started with --secret, https:// servers)")
    group.add_argument("--token", default=None,
                       help=f"room token for the join (python -m signaling.token); default: ${ENV_TOKEN} "
                            "(prefer it: a command line is visible to every user of the machine)")
    group.add_argument("--ca", type=Path, default=None, metavar="FILE",
                       help="PEM CA certificate that signed the server's (python -m signaling.certs makes "
                            "build/certs/ca.pem); default: the system's, or $SSL_CERT_FILE")


def credentials_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials of a command parsed with :func:`add_access_options`; SignalingError if
    ``--ca`` is not a readable file (said at start, not at the first connection)."""
    env = os.environ if environ is None else environ
    creds = Credentials(getattr(args, "token", None) or env.get(ENV_TOKEN) or None, getattr(args, "ca", None))
    creds.ssl_context()  # fail now on a bad CA file
    return creds


def _root_cause(exc: BaseException) -> str:
    """The most specific message in an exception chain: python-engineio reports every
    failure as 'Connection error' and keeps the reason (refused, DNS, ...) in the chain."""
    best, seen = exc, 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, (OSError, aiohttp.ClientError)):
            best = cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return str(best) or type(best).__name__


class SignalingClient:
    """One Socket.IO connection, one room, one role; rejoins by itself after a drop.

    ``peer_events`` (bounded; the oldest is dropped when nobody reads it) gets
    ``(kind, peer)`` tuples:

    - ``("joined", peer)`` / ``("left", peer)``: the server announced it (a peer's signaling
      leaving says nothing about its data channel, which may well still be open);
    - ``("gone", peer)``: after a reconnect the peer is no longer in the room under that id
      (it left during the outage, or it is back under a new id: see the ``joined`` events);
    - ``("rejoined", {"id": new_id, "previous": old_id})``: joined again after a drop;
    - ``("lost", {"error": message})``: gave up reconnecting; nothing more will come.
    """

    def __init__(self, url: str, room: str, role: str, name: str = "", *,
                 give_up_after: float = 60.0, backoff: tuple[float, float] = (0.25, 5.0),
                 call_timeout: float = 10.0, credentials: Credentials | None = None,
                 pool: bool = False) -> None:
        """``pool``: ``room`` names a receiver pool (docs/signaling.md, "Pools"): a sender
        is shown only the receiver the server assigned it (``request_assignment`` asks for
        another), a receiver only the senders it serves;
        ``give_up_after``: seconds of failed reconnection before the client is lost;
        ``backoff``: (first, longest) wait between attempts, doubled each time, +-25% jitter;
        ``call_timeout``: the longest wait for the server's answer to a ``signal``;
        ``credentials``: token and CA (default: none, for an open ``http://`` server)."""
        self.url, self.room, self.role, self.name = url, room, role, name
        self.pool = pool
        self._asked_at = -ASSIGN_EVERY_S  # loop time of the last ``assign`` request
        self.credentials = credentials or Credentials()
        self._ssl = self.credentials.ssl_context()
        # What the last join ack said: the name the server shows (a token's, when it has
        # one) and the ICE servers it hands out (None when it hands out none).
        self.granted_name = name
        self.ice_servers: list[dict[str, Any]] | None = None  # the join ack's list (server.py --ice-servers)
        self.ice_policy: str | None = None                    # and its iceTransportPolicy
        self.give_up_after, self.backoff, self.call_timeout = give_up_after, backoff, call_timeout
        # handle_sigint=False: python-engineio would otherwise install a SIGINT handler that
        # cancels every task of the program. Reconnection is ours (rejoin, give-up deadline).
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False,
                                        http_session=self._new_http_session)
        self.id = ""
        self.peers: dict[str, dict] = {}
        self.peer_events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(maxsize=256)
        self.rejoined = asyncio.Event()  # set at every rejoin; the owner clears it if it wants
        self.rejoins = 0
        self.error: SignalingError | None = None  # why the client is lost, once it is
        self._state = NEW
        self._on_signal: SignalHandler | None = None
        self._on_rejoined: RejoinHandler | None = None
        self._http: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()   # replaced at every change: wakes the waiters
        self._dropped = asyncio.Event()   # set when the current connection drops
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False
        self.sio.on("signal", self._signal)
        self.sio.on("peer-joined", self._joined)
        self.sio.on("peer-left", self._left)
        self.sio.on("error", self._error)
        self.sio.on("disconnect", self._disconnected)

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``new``, ``joined``, ``reconnecting``, ``lost`` (gave up) or ``closed``."""
        return self._state

    @property
    def joined(self) -> bool:
        return self._state == JOINED

    def on_signal(self, handler: SignalHandler) -> None:
        self._on_signal = handler

    def on_rejoined(self, handler: RejoinHandler | None) -> None:
        """``await handler(new_id)`` after each rejoin, once the peer list is refreshed."""
        self._on_rejoined = handler

    # -- connecting --------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and join; SignalingError (one line, no traceback worth showing) if the
        server cannot be reached, refuses the join, or does not answer within ``timeout``."""
        if self._state != NEW:
            raise SignalingError(f"connect() on a signaling client that is {self._state}")
        if not self.url.startswith(("http://", "https://")):
            raise SignalingError(f"the signaling server URL must start with http:// or https://, got {self.url!r}")
        ack = await self._connect_and_join(timeout)
        self._accept_join(ack)
        log.info("joined room %s as %s %s (%d peers)", self.room, self.role, self.id, len(self.peers))

    async def _connect_and_join(self, timeout: float) -> dict:
        """One attempt: connect the transport, then join; on any failure the transport is
        closed again and SignalingError says why."""
        self._dropped = asyncio.Event()
        try:
            await asyncio.wait_for(self.sio.connect(self.url, transports=["websocket"], wait_timeout=timeout),
                                   timeout + 1.0)
        except (socketio.exceptions.ConnectionError, aiohttp.ClientError, OSError, ValueError,
                TimeoutError) as exc:
            await self._drop_transport()
            why = f"no answer within {timeout:.0f}s" if isinstance(exc, TimeoutError) else _root_cause(exc)
            raise SignalingError(f"cannot reach the signaling server at {self.url}: {why}") from None
        except BaseException:
            await self._drop_transport()
            raise
        try:
            join: dict[str, Any] = {"room": self.room, "role": self.role, "name": self.name}
            if self.pool:
                join["pool"] = True
            if self.credentials.token:
                join["token"] = self.credentials.token
            ack = await self._call("join", join, timeout)
            if not isinstance(ack, dict) or not ack.get("ok") or not isinstance(ack.get("id"), str):
                raise SignalingError(f"join refused by {self.url}: "
                                     f"{ack.get('error') if isinstance(ack, dict) else ack}")
        except BaseException:
            await self._drop_transport()
            raise
        return ack

    def _accept_join(self, ack: dict) -> None:
        self.id = ack["id"]
        self.peers = {p["id"]: p for p in ack.get("peers", []) if isinstance(p, dict) and "id" in p}
        name, servers = ack.get("name"), ack.get("iceServers")
        self.granted_name = name if isinstance(name, str) else self.name
        self.ice_servers = servers if isinstance(servers, list) else None
        self.ice_policy = ack.get("iceTransportPolicy") if isinstance(ack.get("iceTransportPolicy"), str) else None
        self._set_state(JOINED)

    async def _drop_transport(self) -> None:
        """Close whatever a failed or abandoned attempt left open, so nothing leaks (no
        aiohttp 'Unclosed client session' at exit)."""
        with contextlib.suppress(Exception):
            if self.sio.connected:
                await self.sio.disconnect()
            elif self.sio.eio.state != "disconnected":
                await self.sio.eio.disconnect(abort=True)
        http, self._http = self._http, None
        if http is not None and not http.closed:
            await http.close()

    def _new_http_session(self) -> aiohttp.ClientSession:
        """python-engineio's factory for its HTTP session: ours, so a failed attempt's
        session can be closed (engineio closes it after a connection, not after a failure)."""
        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
        self._http = aiohttp.ClientSession(connector=connector)
        return self._http

    # -- using it ----------------------------------------------------------------------

    async def signal(self, to: str, kind: str, **fields: Any) -> None:
        """Relay one offer/answer/candidate; SignalingError if refused, if not joined (during
        a reconnect: at once, not after a timeout) or if the connection drops meanwhile."""
        if self._state != JOINED:
            raise SignalingError(f"cannot send {kind} to {to}: signaling is {self._state}")
        ack = await self._call("signal", {"to": to, "type": kind, **fields}, self.call_timeout)
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise SignalingError(f"{kind} to {to} refused: {ack.get('error') if isinstance(ack, dict) else ack}")

    async def request_assignment(self, exclude: set[str] | frozenset[str] = frozenset()) -> dict | None:
        """Pool senders: ask the server for the least-loaded receiver not in ``exclude`` (those
        this sender could not connect to); it replaces the receiver in ``peers`` and is
        returned (None: none free now; the server announces one when it joins). Asks at most
        once per ``ASSIGN_EVERY_S`` (returns None at once otherwise): callers may poll."""
        loop = asyncio.get_running_loop()
        if not self.pool or self.role != "sender" or self._state != JOINED or \
                loop.time() - self._asked_at < ASSIGN_EVERY_S:
            return None
        self._asked_at = loop.time()
        ack = await self._call("assign", {"exclude": sorted(exclude)[:64]}, self.call_timeout)
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise SignalingError(f"assign refused: {ack.get('error') if isinstance(ack, dict) else ack}")
        receiver = ack.get("receiver")
        if not isinstance(receiver, dict) or not isinstance(receiver.get("id"), str):
            return None
        for pid in [pid for pid, p in self.peers.items() if p.get("role") == "receiver" and pid != receiver["id"]]:
            self.peers.pop(pid)
        if receiver["id"] not in self.peers:
            self.peers[receiver["id"]] = receiver
            self._event("joined", receiver)
        log.info("pool %s: assigned receiver %s (%s)", self.room, receiver["id"], receiver.get("name", ""))
        return receiver

    async def wait_for_peer(self, role: str, name: str | None = None, timeout: float = 30.0) -> dict:
        """The first peer of ``role`` in the room (already there, or joining within
        ``timeout``); across a reconnect it waits for the refreshed list."""
        def match(p: dict) -> bool:
            return p.get("role") == role and (not name or p.get("name") == name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._raise_if_over()
            if self._state == JOINED:
                found = [p for p in self.peers.values() if match(p)]
                if found:
                    return found[0]
            left = deadline - loop.time()
            if left <= 0:
                raise SignalingError(f"no {role}{f' named {name}' if name else ''} joined room "
                                     f"{self.room} within {timeout:.0f}s")
            await self._wait_change(left)

    async def wait_joined(self, timeout: float | None = None) -> str:
        """The current id once joined (at once if joined now); SignalingError if the client
        is lost or closed, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._state != JOINED:
            self._raise_if_over()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise SignalingError(f"not joined to room {self.room} within {timeout:.0f}s ({self._state})")
            await self._wait_change(left)
        return self.id

    async def until_lost(self) -> NoReturn:
        """Wait until the client gives up (or is closed), then raise that SignalingError:
        race it against the owner's work to stop when signaling is gone for good."""
        while True:
            self._raise_if_over()
            await self._wait_change(None)

    async def close(self) -> None:
        """Leave: stop reconnecting, disconnect, release the HTTP session. Idempotent."""
        self._closing = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_transport()
        if self._state != LOST:
            self._set_state(CLOSED)

    # -- internals ---------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self._state = state
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _raise_if_over(self) -> None:
        if self._state == LOST:
            raise self.error or SignalingError(f"signaling server at {self.url} lost")
        if self._state == CLOSED:
            raise SignalingError("signaling client closed")

    async def _call(self, event: str, data: dict, timeout: float) -> Any:
        """``sio.call`` that fails at once when the connection drops (python-socketio's own
        waits out its timeout) and raises SignalingError, never a socketio exception."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def ack(*args: Any) -> None:
            if not answer.done():
                answer.set_result(args[0] if len(args) == 1 else (list(args) or None))
        dropped = self._dropped
        try:
            await self.sio.emit(event, data, callback=ack)
        except socketio.exceptions.SocketIOError as exc:
            raise SignalingError(f"cannot send {event}: not connected to {self.url} ({exc})") from None
        waiter = asyncio.ensure_future(dropped.wait())
        try:
            await asyncio.wait({answer, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if answer.done():
            return answer.result()
        answer.cancel()
        if dropped.is_set():
            raise SignalingError(f"connection to {self.url} dropped before {event} was answered")
        raise SignalingError(f"{self.url} did not answer {event} within {timeout:.0f}s (server busy?)")

    async def _disconnected(self, reason: Any = None) -> None:
        self._dropped.set()
        if self._closing or self._state != JOINED:
            return  # our own close, or a failed attempt inside connect()/_reconnect()
        log.warning("signaling connection to %s dropped (%s); reconnecting (giving up after %.0fs)",
                    self.url, reason, self.give_up_after)
        self._set_state(RECONNECTING)
        self._reconnect_task = asyncio.create_task(self._reconnect(), name="signaling-reconnect")

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.give_up_after
        delay, longest = self.backoff
        attempts = 0
        last = SignalingError("no attempt made")
        while not self._closing:
            # the dropped connection finishes tearing itself down after our handler ran
            while self.sio.eio.state != "disconnected" and loop.time() < deadline:
                await asyncio.sleep(0.01)
            attempts += 1
            try:
                ack = await self._connect_and_join(max(0.5, min(10.0, deadline - loop.time())))
            except SignalingError as exc:
                last = exc
                log.debug("reconnect attempt %d failed: %s", attempts, exc)
            else:
                self._rejoined(ack, loop.time() - started, attempts)
                self._reconnect_task = None
                return
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(left, delay * random.uniform(0.75, 1.25)))
            delay = min(delay * 2, longest)
        if self._closing:
            return
        self._reconnect_task = None
        self.error = SignalingError(f"signaling server at {self.url} unreachable for {self.give_up_after:.0f}s "
                                    f"({attempts} attempts), giving up: {last}")
        log.error("%s", self.error)
        self._event("lost", {"error": str(self.error)})
        self._set_state(LOST)

    def _rejoined(self, ack: dict, took: float, attempts: int) -> None:
        previous, before = self.id, self.peers
        self._accept_join(ack)
        self.rejoins += 1
        for pid, p in before.items():
            if pid not in self.peers:
                self._event("gone", p)
        for pid, p in self.peers.items():
            if pid not in before:
                self._event("joined", p)
        self._event("rejoined", {"id": self.id, "previous": previous})
        self.rejoined.set()
        log.info("rejoined room %s as %s %s after %.2fs (%d attempts, %d peers)",
                 self.room, self.role, self.id, took, attempts, len(self.peers))
        if self._on_rejoined is not None:
            asyncio.create_task(self._call_rejoined(self._on_rejoined, self.id))

    async def _call_rejoined(self, handler: RejoinHandler, new_id: str) -> None:
        try:
            await handler(new_id)
        except Exception:  # the owner's bug must not stop signaling
            log.exception("rejoin handler failed")

    async def _signal(self, msg: dict) -> None:
        if self._on_signal is None:
            log.warning("signal %s from %s with no handler", msg.get("type"), msg.get("from"))
            return
        try:
            await self._on_signal(msg)
        except Exception:  # one bad offer must not end the peer's other sessions
            log.exception("handling %s from %s failed", msg.get("type"), msg.get("from"))

    async def _joined(self, peer: dict) -> None:
        if isinstance(peer, dict) and "id" in peer:
            self.peers[peer["id"]] = peer
            self._event("joined", peer)

    async def _left(self, peer: dict) -> None:
        if isinstance(peer, dict):
            self.peers.pop(peer.get("id", ""), None)
            self._event("left", peer)

    def _event(self, kind: str, peer: dict) -> None:
        if kind in ("joined", "left", "gone"):
            log.info("peer %s %s (%s %s)", peer.get("id"), kind, peer.get("role"), peer.get("name", ""))
        if self.peer_events.full():  # nobody is reading: keep the newest
            self.peer_events.get_nowait()
        self.peer_events.put_nowait((kind, peer))
        self._notify()

    async def _error(self, msg: dict) -> None:
        log.error("signaling server refused %s: %s", msg.get("event"), msg.get("error"))
