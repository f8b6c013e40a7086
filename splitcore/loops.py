"""Which asyncio event loop runs a program: the standard one, or uvloop where installed.

aiortc's SCTP and DTLS are pure Python on top of asyncio's UDP transport, so the event
loop's own cost per datagram is part of every frame's latency; uvloop (libuv) lowers it.
It is optional: the standard loop is the default and always works.
"""
from __future__ import annotations

import argparse
import asyncio
from typing import Any, Callable, Coroutine, TypeVar

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")


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
    p.add_argument("--event-loop", type=_loop_name, default="asyncio", metavar="{asyncio,uvloop}",
                   help="event loop: asyncio (default) or uvloop, whose cheaper UDP path cut aiortc's "
                        "32 KB round trip by about 10%% here (python -m bench.transport_floor)")
