"""The system's processes started as a user starts them, and always stopped.

``python server.py``, ``python -m receiver`` and ``python sender.py`` run as real child
processes: ``demo.py`` launches the whole system with them, the benchmarks and the tests
measure it. Every child is stopped the same way (SIGINT or SIGTERM, a grace period, then
SIGKILL), so no launcher leaves an orphan holding a port.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


class ChildError(RuntimeError):
    """A child process failed to start or exited with an error; the message has its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the launcher dies, however it dies
    (even SIGKILL), so no child outlives it holding a port. A no-op elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(args: list[str], out: IO[str] | None = None, *, die_with_parent: bool = False) -> subprocess.Popen[bytes]:
    """Start one child in ROOT; ``out`` takes its stdout and stderr (None: inherit ours).
    ``die_with_parent``: the child gets SIGTERM if this process dies (Linux), for launchers."""
    preexec = _die_with_parent if die_with_parent and sys.platform.startswith("linux") else None
    return subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None,
                            env=child_env(), preexec_fn=preexec)


def stop(procs: Iterable[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal every child still running (in the order given), then wait for all of them
    together for ``grace`` seconds; whatever is left is killed."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child whose output goes to ``log``; stopped on exit from the block."""
    with open(log, "w") as out:
        p = spawn(args, out)
        try:
            yield p
        finally:
            stop([p])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll ``url`` until it answers; ChildError if ``proc`` exits or time runs out first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise ChildError(f"exited with code {proc.returncode} before {url} answered") from None
            if time.monotonic() > deadline:
                raise ChildError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


@contextmanager
def server(tmp: Path, *extra: str) -> Iterator[str]:
    """``python server.py`` on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "server.py", "--port", str(port), *extra], tmp / "server.log") as p:
        try:
            wait_http(f"{url}/healthz", p)
        except ChildError as exc:
            raise ChildError(f"server: {exc}:\n{(tmp / 'server.log').read_text()}") from None
        yield url


def receiver_args(url: str, room: str, *extra: str, workers: str = "1") -> list[str]:
    """``python -m receiver``; one process unless ``workers`` says otherwise (tests and
    benchmarks measure one receiver process; ``extra`` may name ``--workers`` again)."""
    return [PY, "-m", "receiver", "--server", url, "--room", room, "--workers", workers, *extra]


def sender_args(url: str, room: str, *extra: str) -> list[str]:
    return [PY, "sender.py", "--server", url, "--room", room, *extra]


def run_sender(url: str, room: str, *extra: str, timeout: float = 120) -> tuple[dict, str]:
    """Run ``python sender.py ... --json`` to completion; returns (summary, stderr)."""
    p = subprocess.run(sender_args(url, room, "--json", *extra), cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, env=child_env())
    if p.returncode != 0:
        raise ChildError(f"sender exited {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr
