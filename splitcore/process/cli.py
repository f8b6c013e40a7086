"""What every SplitRTC command shares: its parser, its options, its logging, its exit.

``server.py``, ``python -m receiver`` and ``python sender.py`` (and ``demo.py``) are built
on these so their ``--help`` reads alike, their logs have one format and one naming scheme
(``splitrtc.<module>``), and a user error is one line on stderr with exit code 2, never a
traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    """Something the user can fix (a bad option, a missing file, an unreachable server):
    printed as one line, exit code 2."""


def logger(module: str) -> logging.Logger:
    """The logger of a module: ``splitrtc.`` + its dotted name (``__main__`` becomes the
    program's package), so ``--log-level`` and log filters treat every module alike."""
    return logging.getLogger(f"splitrtc.{module}")


def parser(prog: str, doc: str | None, epilog: str | None = None) -> argparse.ArgumentParser:
    """A parser whose description is the module docstring, laid out as written."""
    return argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_peer_options(p: argparse.ArgumentParser, name: str) -> None:
    """--server, --room, --name: where a peer joins and how the dashboard shows it."""
    p.add_argument("--server", default="http://127.0.0.1:8080", help="signaling server URL (default: %(default)s)")
    p.add_argument("--room", default="demo", help="room to join (default: %(default)s)")
    p.add_argument("--name", default=name, help="name shown on the dashboard (default: %(default)s)")


def add_log_level(p: argparse.ArgumentParser, default: str = "info") -> None:
    p.add_argument("--log-level", default=default, choices=LOG_LEVELS,
                   help="logging verbosity (default: %(default)s)")


def positive(kind: type[int] | type[float], what: str, zero_ok: bool = False) -> Callable[[str], int | float]:
    """An argparse ``type`` that refuses values below 1 (or below 0 with ``zero_ok``) at parse
    time, with the option's meaning in the message."""
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({what})") from None
        if value < 0 or (value == 0 and not zero_ok) or value != value:
            raise argparse.ArgumentTypeError(f"{text} must be {'>= 0' if zero_ok else '> 0'} ({what})")
        return value
    return convert


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def fail(prog: str, message: object) -> int:
    """One line on stderr, the usage exit code."""
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_USAGE


def port(text: str) -> int:
    """An argparse ``type`` for a TCP port: 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, bad address), or None if it can.

    Binds a throw-away socket the way the server will (SO_REUSEADDR, as aiohttp does), so a
    launcher can say so in one line before starting anything. Port 0 is always free."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as exc:
                return describe_bind_error(host, port, exc)
    return None


def describe_bind_error(host: str, port: int, exc: OSError) -> str:
    """One line for a failed listen, with what to do about the usual causes."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another SplitRTC server or demo still running?): "
                "stop it or choose another with --port")
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {host}:{port} (ports below 1024 need privileges): choose another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: choose another --host"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def wait_for_signal(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> int:
    """Until one of ``signals`` arrives; returns its number.

    The handlers stay installed afterwards, so a second Ctrl-C while the program shuts down
    (which every caller bounds in time) is logged, not a KeyboardInterrupt traceback in the
    middle of the clean-up. Where the loop cannot take signal handlers (Windows), Ctrl-C
    arrives as KeyboardInterrupt instead."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if got.done():
            logging.getLogger("splitrtc.process.cli").warning("already stopping (signal %d ignored)", signum)
        else:
            got.set_result(signum)
    with contextlib.suppress(NotImplementedError):
        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
    return await got
