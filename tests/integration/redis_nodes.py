"""Test set-up shared by the multi-node tests: a real ``redis-server`` (Debian's) on a free
loopback port, and ``server.py --redis`` nodes on it. Skips with a reason where the binary
is missing (``make system-packages`` installs it)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from splitcore.process.children import spawn, stop
from tests.harness import server

REDIS_BIN = "redis-server"


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A private, memory-only Redis on 127.0.0.1:``port``."""
    binary = shutil.which(REDIS_BIN)
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server: make system-packages)")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(tmp)]
    with open(tmp / f"redis-{port}.log", "w") as log:
        proc = spawn(args, log)
    try:
        deadline = time.monotonic() + 20
        while not redis_ping(port):
            assert proc.poll() is None, f"redis-server exited {proc.returncode}: {(tmp / f'redis-{port}.log').read_text()}"
            assert time.monotonic() < deadline, "redis-server did not answer within 20 s"
            time.sleep(0.05)
        yield proc
    finally:
        stop([proc])


@contextmanager
def nodes(tmp: Path, redis_port: int, n: int = 2) -> Iterator[list[str]]:
    """``n`` signaling nodes sharing the Redis on ``redis_port``; yields their URLs."""
    with ExitStack() as stack:
        urls = []
        for i in range(n):
            sub = tmp / f"node{i}"
            sub.mkdir(exist_ok=True)
            urls.append(stack.enter_context(server(sub, "--redis", f"redis://127.0.0.1:{redis_port}/0")))
        yield urls


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out
