"""ICE servers: the one way every SplitRTC peer is told which STUN/TURN servers to use.

The list has the W3C ``RTCIceServer`` form that browsers take as is
(``[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"}]``, where
``urls`` is a string or a list of strings), so one file configures ``server.py`` (which hands
it to the browser pages), ``sender.py`` and the receiver alike. It comes from
``--ice-servers FILE`` or, failing that, ``$SPLITRTC_ICE_SERVERS`` (a path or inline JSON).

It is validated here, at start, with errors that name the entry and the field: a typo in a
TURN URL otherwise shows up only as ICE stuck in "checking" minutes later, far from its cause.
``--relay-only`` sets ``iceTransportPolicy: relay``; it needs a TURN server, and is refused
without one instead of failing to connect.

aiortc 1.16 (through aioice) uses the first STUN and the first usable TURN url only, TURN over
``udp`` or ``tcp`` and TURNS over ``tcp``; ``IceConfig.aiortc_ignored`` lists what it will not
use, so the CLIs can say so rather than let a user believe a backup server is in play.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

ENV = "SPLITRTC_ICE_SERVERS"
MAX_FILE_BYTES = 64 * 1024   # a real list is a few hundred bytes; refuse to read a wrong file whole
MAX_SERVERS = 16
MAX_URLS = 16
MAX_FIELD = 512              # TURN REST usernames are ~20-80 chars, credentials 28

# RFC 7064 / RFC 7065: scheme:host[:port][?transport=udp|tcp]; host is a name, IPv4 or [IPv6].
_URL_RE = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?")
_KNOWN_KEYS = {"urls", "username", "credential", "credentialType"}


class IceConfigError(ValueError):
    """The ICE server list is unreadable or invalid; the message names where and why."""


@dataclass(frozen=True)
class IceServer:
    """One ``RTCIceServer``: its urls and, for TURN, the credentials."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return any(u.startswith("turn") for u in self.urls)

    def to_dict(self) -> dict[str, Any]:
        """The W3C form, as a browser's ``RTCPeerConnection`` takes it."""
        out: dict[str, Any] = {"urls": list(self.urls) if len(self.urls) != 1 else self.urls[0]}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class IceConfig:
    """The ICE servers and transport policy of one peer (empty: host candidates only)."""

    servers: tuple[IceServer, ...] = ()
    relay_only: bool = False
    source: str = "default"

    def __post_init__(self) -> None:
        if self.relay_only and not any(s.is_turn for s in self.servers):
            raise IceConfigError(
                f"--relay-only needs a TURN server, but the ICE servers ({self.source}) have no "
                f"turn: or turns: url; add one with --ice-servers FILE or ${ENV}")

    def rtc_configuration(self) -> RTCConfiguration:
        """The aiortc configuration: every server as given, RELAY policy when relay-only.
        (aiortc is imported here: parsing ICE options, as a ``--workers`` parent does, needs
        none of it.)"""
        from aiortc import RTCConfiguration, RTCIceServer
        from aiortc.rtcconfiguration import RTCIceTransportPolicy

        servers = [RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                   for s in self.servers]
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def to_json(self) -> list[dict[str, Any]]:
        """The list in W3C form, e.g. for a browser page or a JSON file."""
        return [s.to_dict() for s in self.servers]

    @property
    def aiortc_ignored(self) -> list[str]:
        """Urls aiortc will not use: every STUN url after the first, every TURN url after the
        first usable one, and TURN transports it lacks (``turns:...?transport=udp``)."""
        ignored: list[str] = []
        have_stun = have_turn = False
        for server in self.servers:
            for url in server.urls:
                m = _URL_RE.fullmatch(url)
                assert m is not None  # validated on construction
                if m["scheme"].startswith("stun"):
                    if have_stun or m["scheme"] == "stuns":
                        ignored.append(url)
                    have_stun = have_stun or m["scheme"] == "stun"
                elif have_turn or (m["scheme"] == "turns" and m["transport"] == "udp"):
                    ignored.append(url)
                else:
                    have_turn = True
        return ignored

    def describe(self) -> str:
        """One log line: what is configured, with credentials left out."""
        urls = [u for s in self.servers for u in s.urls]
        text = ", ".join(urls) if urls else "none (host candidates only)"
        policy = "relay only" if self.relay_only else "all candidates"
        return f"ICE servers from {self.source}: {text}; {policy}"


def parse_servers(data: object, source: str = "ICE servers",
                  turn_credentials: bool = True) -> tuple[IceServer, ...]:
    """Validate a decoded JSON list of ``RTCIceServer`` dictionaries. ``turn_credentials=False``
    lets a TURN entry come without them (``server.py --turn-secret`` mints them per peer)."""
    if not isinstance(data, list):
        raise IceConfigError(f"{source}: expected a JSON list of RTCIceServer objects, got {_json_type(data)}")
    if len(data) > MAX_SERVERS:
        raise IceConfigError(f"{source}: {len(data)} servers, at most {MAX_SERVERS} are accepted")
    return tuple(_server(entry, f"{source}[{i}]", turn_credentials) for i, entry in enumerate(data))


def _server(entry: object, where: str, turn_credentials: bool = True) -> IceServer:
    if not isinstance(entry, dict):
        raise IceConfigError(f"{where}: expected an object with 'urls', got {_json_type(entry)}")
    unknown = set(entry) - _KNOWN_KEYS
    if unknown:
        raise IceConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                             f"(RTCIceServer has {', '.join(sorted(_KNOWN_KEYS))})")
    urls = entry.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise IceConfigError(f"{where}.urls: expected a url string or a non-empty list of them")
    if len(urls) > MAX_URLS:
        raise IceConfigError(f"{where}.urls: {len(urls)} urls, at most {MAX_URLS} are accepted")
    for url in urls:
        _check_url(url, where)
    if entry.get("credentialType", "password") != "password":
        raise IceConfigError(f"{where}.credentialType: only 'password' is supported, "
                             f"got {entry.get('credentialType')!r}")
    username = _optional_text(entry, "username", where)
    credential = _optional_text(entry, "credential", where)
    if turn_credentials and any(u.startswith("turn") for u in urls) and (username is None or credential is None):
        raise IceConfigError(f"{where}: a turn:/turns: url needs both 'username' and 'credential' "
                             "(or let server.py --turn-secret mint them)")
    return IceServer(tuple(urls), username, credential)


def _check_url(url: str, where: str) -> None:
    m = _URL_RE.fullmatch(url)
    if m is None:
        raise IceConfigError(
            f"{where}.urls: {url!r} is not a STUN/TURN url; expected stun:HOST[:PORT], "
            "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp]")
    if m["scheme"].startswith("stun") and m["transport"]:
        raise IceConfigError(f"{where}.urls: {url!r}: a stun url takes no ?transport")
    if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
        raise IceConfigError(f"{where}.urls: {url!r}: port must be 1..65535")


def _optional_text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise IceConfigError(f"{where}.{key}: expected a non-empty string of at most {MAX_FIELD} characters")
    return value


def load_servers(spec: str, source: str | None = None, turn_credentials: bool = True) -> tuple[IceServer, ...]:
    """Servers from ``spec``: inline JSON if it starts with ``[`` (or ``{``, to refuse a lone
    object clearly), else a file path."""
    text = spec.strip()
    if text.startswith(("[", "{")):
        where = source or "inline ICE server JSON"
    else:
        path = Path(spec)
        where = source or str(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise IceConfigError(f"{where}: {size} bytes; an ICE server list is at most {MAX_FILE_BYTES}")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise IceConfigError(f"cannot read the ICE server list {where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise IceConfigError(f"{where}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IceConfigError(f"{where}: not valid JSON: {exc}") from None
    return parse_servers(data, where, turn_credentials)


def load(ice_servers: str | None = None, relay_only: bool = False,
         environ: Mapping[str, str] | None = None, turn_credentials: bool = True) -> IceConfig:
    """The configuration from an ``--ice-servers`` value, else ``$SPLITRTC_ICE_SERVERS``,
    else none (host candidates only: the project works on loopback and closed networks).
    ``turn_credentials=False``: TURN entries may lack them (the server mints them)."""
    env = os.environ if environ is None else environ
    if ice_servers:
        # inline JSON holds credentials: the source, which goes into logs, names only the option
        inline = ice_servers.strip().startswith(("[", "{"))
        where = "--ice-servers (inline JSON)" if inline else f"--ice-servers {ice_servers}"
        return IceConfig(load_servers(ice_servers, where if inline else None, turn_credentials), relay_only, where)
    if env.get(ENV, "").strip():
        spec = env[ENV]
        where = f"${ENV}" if spec.strip().startswith(("[", "{")) else f"${ENV} ({spec})"
        return IceConfig(load_servers(spec, where, turn_credentials), relay_only, where)
    return IceConfig((), relay_only, "default")


def add_ice_options(parser: argparse.ArgumentParser) -> None:
    """``--ice-servers FILE`` and ``--relay-only``, the same on every command."""
    group = parser.add_argument_group("ICE (NAT traversal)")
    group.add_argument("--ice-servers", metavar="FILE", default=None,
                       help="JSON list of RTCIceServer objects ({\"urls\", \"username\", \"credential\"}); "
                            f"default: ${ENV} (a path or inline JSON), else none (host candidates only)")
    group.add_argument("--relay-only", action="store_true",
                       help="use only relayed (TURN) candidates (iceTransportPolicy: relay); needs a TURN server")


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> IceConfig:
    """The configuration for a command parsed with :func:`add_ice_options`."""
    return load(getattr(args, "ice_servers", None), bool(getattr(args, "relay_only", False)), environ)


def from_urls(urls: Sequence[str] | None) -> IceConfig:
    """A configuration from bare STUN urls (the old ``new_peer_connection(list[str])`` form)."""
    servers = tuple(IceServer((u,)) for u in urls or [])
    for s in servers:
        _check_url(s.urls[0], "ice_servers")
        if s.is_turn:
            raise IceConfigError(f"{s.urls[0]!r}: a TURN url needs credentials; pass an IceConfig")
    return IceConfig(servers, False, "urls")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def with_server_list(own: IceConfig | Sequence[str] | None, offered: object,
                     policy: str | None = None) -> IceConfig | Sequence[str] | None:
    """The configuration a Python peer uses for its next connection: its own when it has any
    servers (``--ice-servers``, the environment), else the list the signaling server gave it
    at join (``server.py --ice-servers``, with per-peer TURN REST credentials from
    ``--turn-secret``), with the server's relay policy; the peer's own ``--relay-only`` holds
    either way. An invalid offered list is ignored (the peer keeps host candidates) rather
    than trusted: it came over the network."""
    if not isinstance(own, IceConfig) or own.servers or not offered:
        return own
    try:
        servers = parse_servers(offered, "the signaling server's ICE list")
        return IceConfig(servers, own.relay_only or policy == "relay", "the signaling server")
    except IceConfigError:
        return own
