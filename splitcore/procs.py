"""The system's processes, started as a user would start them, for tests and benchmarks.

``python server.py``, ``python -m receiver`` and ``python sender.py`` run as real
processes on 127.0.0.1 and a free port; each is always stopped, and its output kept in a
log file for the error message when something goes wrong.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "w") as out:
        p = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=_env())
        try:
            yield p
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@contextmanager
def server(tmp: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PY, "server.py", "--port", str(port)], tmp / "server.log") as p:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{(tmp / 'server.log').read_text()}")
                time.sleep(0.1)
        yield url


def receiver_args(url: str, room: str, *extra: str) -> list[str]:
    return [PY, "-m", "receiver", "--server", url, "--room", room, *extra]


def run_sender(url: str, room: str, *extra: str, timeout: float = 120) -> tuple[dict, str]:
    """Run ``python sender.py ... --json`` to completion; returns (summary, stderr)."""
    p = subprocess.run([PY, "sender.py", "--server", url, "--room", room, "--json", *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env())
    if p.returncode != 0:
        raise AssertionError(f"sender exited {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr
