"""Running the app on a socket: in-process (tests, other programs) or until a signal (CLI).

Kept apart from `app.py` so building the app never binds a port, and so a clean shutdown
(disconnect clients, stop Socket.IO tasks, close the listener) is written once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from splitcore.process.cli import wait_for_signal

from .app import SIO_KEY, create_app
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

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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


async def start_server(host: str = "127.0.0.1", port: int = 0,
                       static_dir: Path | str | None = None,
                       repo_root: Path | str | None = None,
                       limits: Limits | None = None) -> RunningServer:
    """Start listening and return at once; port 0 picks a free port. OSError (e.g.
    EADDRINUSE) if the port cannot be had, with nothing left running."""
    app = create_app(static_dir=static_dir, repo_root=repo_root, limits=limits)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return RunningServer(runner=runner, host=host, port=bound)


async def serve_forever(host: str = "127.0.0.1", port: int = 8080,
                        static_dir: Path | str | None = None,
                        repo_root: Path | str | None = None,
                        limits: Limits | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly (clients told, in under 3 s)."""
    server = await start_server(host, port, static_dir, repo_root, limits)
    print(f"SplitRTC signaling server on {server.url}\n"
          f"  dashboard: {server.url}/dashboard\n"
          f"  sender:    {server.url}/sender\n"
          f"  receiver:  {server.url}/receiver", flush=True)
    try:
        signum = await wait_for_signal()
        log.info("signal %d: closing %d client connection(s) and stopping",
                 signum, len(server.app[SIO_KEY].eio.sockets))
    finally:
        await server.close()


def run(host: str = "127.0.0.1", port: int = 8080,
        static_dir: Path | str | None = None, repo_root: Path | str | None = None,
        limits: Limits | None = None) -> None:
    """Blocking entry point for programs without their own event loop."""
    asyncio.run(serve_forever(host, port, static_dir, repo_root, limits))
