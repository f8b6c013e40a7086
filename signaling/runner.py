"""Running the app on a socket: in-process (tests, other programs) or until a signal (CLI).

Kept apart from `app.py` so building the app never binds a port, and so a clean shutdown
(disconnect clients, stop Socket.IO tasks, close the listener) is written once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from splitcore.process.cli import wait_for_signal

from .access import Access
from .app import SIO_KEY, create_app
from .iceplan import IcePlan
from .limits import Limits

log = logging.getLogger("splitrtc.signaling.runner")
# Shutdown budget: every client's close packet together (CLOSE_WAIT_S), then aiohttp's own
# clean-up (SHUTDOWN_TIMEOUT_S): one Ctrl-C ends the process in under 3 s.
CLOSE_WAIT_S = 1.0
SHUTDOWN_TIMEOUT_S = 0.5


@dataclass
class RunningServer:
    """A started server; `port` is the one actually bound (useful with port 0)."""

    runner: web.AppRunner
    host: str
    port: int
    https: bool = False

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    async def __aenter__(self) -> RunningServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening, then disconnect every client (open websockets would hold up the
        shutdown, and clients reconnecting meanwhile would be let in and held too)."""
        for site in list(self.runner.sites):
            await site.stop()
        sio = self.app[SIO_KEY]
        sockets = list(sio.eio.sockets.values())
        await asyncio.gather(*(_close_socket(sio, sock) for sock in sockets))
        await sio.shutdown()
        await self.runner.cleanup()


async def _close_socket(sio: socketio.AsyncServer, sock: Any) -> None:
    """Close one Engine.IO socket, waiting a bounded time for its close packet to go out.

    Not `eio.disconnect()`: it waits without limit for each client to drain its queue, which a
    polling client that went away never does, so shutdown would hang for ever. Without any
    wait, websocket handlers miss the close and aiohttp's cleanup stalls for seconds instead.
    """
    try:
        await asyncio.wait_for(sock.close(reason=sio.eio.reason.SERVER_DISCONNECT),
                               CLOSE_WAIT_S)
    except TimeoutError:
        log.debug("client %s did not take its close packet in time", sock.sid)


def tls_context(cert: Path | str, key: Path | str) -> ssl.SSLContext:
    """The server's TLS context from a PEM certificate (chain) and key (``signaling.certs``
    makes both); OSError or ssl.SSLError if they are unreadable or do not match."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


OPEN_WARNING = ("ACCESS CONTROL IS OFF and the server listens on %s: anyone who can reach it can join "
                "any room, read its latents and forge its replies. Start it with --secret "
                "(or $SPLITRTC_SECRET) and give peers tokens from python -m signaling.token")


async def start_server(host: str = "127.0.0.1", port: int = 0,
                       static_dir: Path | str | None = None,
                       repo_root: Path | str | None = None,
                       limits: Limits | None = None,
                       access: Access | None = None,
                       ice: IcePlan | None = None,
                       ssl_context: ssl.SSLContext | None = None,
                       redis_url: str | None = None) -> RunningServer:
    """Start listening and return at once; port 0 picks a free port. OSError (e.g.
    EADDRINUSE) if the port cannot be had, with nothing left running. With ``ssl_context``
    the pages and Socket.IO are served over TLS (``tls_context``). With ``redis_url`` the
    rooms are shared with every node using that Redis (``RedisUnavailable`` if it does not
    answer)."""
    app = create_app(static_dir=static_dir, repo_root=repo_root, limits=limits, access=access, ice=ice,
                     redis_url=redis_url)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False)
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()
        raise
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    if (access is None or not access.enabled) and not is_loopback(host):
        log.warning(OPEN_WARNING, host)
    return RunningServer(runner=runner, host=host, port=bound, https=ssl_context is not None)


async def serve_forever(host: str = "127.0.0.1", port: int = 8080,
                        static_dir: Path | str | None = None,
                        repo_root: Path | str | None = None,
                        limits: Limits | None = None,
                        access: Access | None = None,
                        ice: IcePlan | None = None,
                        ssl_context: ssl.SSLContext | None = None,
                        room: str = "demo", redis_url: str | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly (clients told, in under 3 s).

    When it serves other machines (not loopback), it also prints the sender page's LAN URL
    for ``room`` and its QR code, so a phone on the same network joins in one step."""
    server = await start_server(host, port, static_dir, repo_root, limits, access, ice, ssl_context, redis_url)
    print(f"SplitRTC signaling server on {server.url}\n"
          f"  dashboard: {server.url}/dashboard\n"
          f"  sender:    {server.url}/sender\n"
          f"  receiver:  {server.url}/receiver\n"
          f"  access:    {'tokens required (--secret)' if access and access.enabled else 'open (no --secret)'}",
          flush=True)
    if ice is not None:
        print(f"  ICE:       {ice.describe()}", flush=True)
    if redis_url is not None:
        from .redisdir import safe_url
        print(f"  Redis:     {safe_url(redis_url)} (rooms and pools shared with its other nodes)", flush=True)
    if not is_loopback(host):
        from .qr import print_sender_urls  # segno only where it is used
        print_sender_urls(server.port, server.https, room, host=host)
        if access is not None and access.enabled:
            print("  (add &token=... to the URL: mint one with python -m signaling.token --room "
                  f"{room} --role sender)")
        print(end="", flush=True)
    try:
        signum = await wait_for_signal()
        log.info("signal %d: closing %d client connection(s) and stopping",
                 signum, len(server.app[SIO_KEY].eio.sockets))
    finally:
        await server.close()


def run(host: str = "127.0.0.1", port: int = 8080,
        static_dir: Path | str | None = None, repo_root: Path | str | None = None,
        limits: Limits | None = None, access: Access | None = None, ice: IcePlan | None = None,
        ssl_context: ssl.SSLContext | None = None, room: str = "demo", redis_url: str | None = None) -> None:
    """Blocking entry point for programs without their own event loop."""
    asyncio.run(serve_forever(host, port, static_dir, repo_root, limits, access, ice, ssl_context, room, redis_url))
