"""Which asyncio event loop runs a program: the standard one, or uvloop where installed.

aiortc's SCTP and DTLS are pure Python on top of asyncio's UDP transport, so the event
loop's own cost per datagram is part of every frame's latency; uvloop (libuv) lowers it
(stage1 p50/p99 7.15/10.45 ms against 8.15/12.64 with asyncio, peers pinned, in
``python -m bench.loopback``). So it is the default where installed (it is in
requirements.txt; there is none for Windows), and the standard loop otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")


def default_loop() -> str:
    """uvloop where it can be imported, else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner`` (None: the standard loop), or ValueError saying why
    not, so command lines can refuse the option before anything starts."""
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ValueError(f"unknown event loop {name!r}: use one of {', '.join(LOOPS)}")
    try:
        import uvloop
    except ImportError:
        raise ValueError("--event-loop uvloop needs the uvloop package (pip install uvloop)") from None
    return uvloop.new_event_loop


def run_with_loop(coro: Coroutine[Any, Any, T], name: str = "asyncio") -> T:
    """``asyncio.run`` on the named loop."""
    try:
        factory = loop_factory(name)
    except ValueError:
        coro.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _loop_name(name: str) -> str:
    try:
        loop_factory(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def add_event_loop_option(p: argparse.ArgumentParser) -> None:
    """``--event-loop`` for the programs that run aiortc, refused at parse time if unusable."""
    p.add_argument("--event-loop", type=_loop_name, default=default_loop(), metavar="{asyncio,uvloop}",
                   help=f"event loop (default here: {default_loop()}, i.e. uvloop where installed): uvloop's "
                        "cheaper UDP path cut stage1's p50/p99 latency by 1-2 ms (python -m bench.loopback)")
