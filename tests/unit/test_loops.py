"""Choosing the event loop: the standard one or uvloop, and a clear error otherwise."""
from __future__ import annotations

import asyncio

import pytest

from splitcore.process.loops import loop_factory, run_with_loop


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_both_loops_run_a_coroutine() -> None:
    assert run_with_loop(_loop_type(), "asyncio").startswith("asyncio")
    assert run_with_loop(_loop_type(), "uvloop").startswith("uvloop")


def test_unknown_loop_is_refused_and_the_coroutine_closed() -> None:
    coro = _loop_type()
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        run_with_loop(coro, "trio")
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    assert loop_factory("asyncio") is None


def test_uvloop_is_the_default_where_installed() -> None:
    import argparse

    from splitcore.process.loops import add_event_loop_option, default_loop
    assert default_loop() == "uvloop"  # requirements.txt installs it
    p = argparse.ArgumentParser()
    add_event_loop_option(p)
    assert p.parse_args([]).event_loop == "uvloop"
    assert p.parse_args(["--event-loop", "asyncio"]).event_loop == "asyncio"
