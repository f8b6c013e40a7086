"""Signaling across nodes (``server.py --redis``) with real parts: redis-server, two
``server.py`` processes, Socket.IO clients speaking the protocol (docs/signaling.md).

A sender on node A and a receiver on node B of one room find each other and relay to each
other; a node that dies is swept and its peers announced gone; Redis down at start is one
clear line and exit 1; Redis lost at run time leaves each node serving its own peers.
"""
from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import socketio

from splitcore.process.children import PY, ROOT, child_env, free_port, spawn, stop, wait_http
from tests.integration.redis_nodes import healthz, nodes, redis_server

DEADLINE = 30.0


class Client:
    """One protocol client that records every event it is sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.arrived = asyncio.Event()
        self.sio.on("*", self._any)
        self.ack: dict[str, Any] = {}

    async def _any(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self.arrived.set()

    async def join(self, room: str, role: str, name: str, **extra: Any) -> dict[str, Any]:
        await self.sio.connect(self.url, transports=["websocket"])
        self.ack = await self.sio.call("join", {"room": room, "role": role, "name": name, **extra}, timeout=10)
        assert self.ack.get("ok"), self.ack
        return self.ack

    @property
    def id(self) -> str:
        return str(self.ack["id"])

    async def wait_event(self, event: str, pred: Any = lambda d: True, timeout: float = DEADLINE) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for ev, data in self.events:
                if ev == event and pred(data):
                    self.events.remove((ev, data))
                    return data
            left = deadline - time.monotonic()
            assert left > 0, f"no {event} within {timeout:.0f}s; got {self.events}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.sio.disconnect()


def test_room_across_nodes_join_relay_leave(tmp_path: Path) -> None:
    rport = free_port()
    with redis_server(tmp_path, rport), nodes(tmp_path, rport) as (a, b):
        async def scenario() -> None:
            receiver, sender, dash = Client(b), Client(a), Client(b)
            await receiver.join("r", "receiver", "rx")
            await dash.join("r", "dashboard", "d")
            t0 = time.perf_counter()
            ack = await sender.join("r", "sender", "tx")
            assert [p["id"] for p in ack["peers"]] == [receiver.id], ack   # receiver on B seen from A
            joined = await receiver.wait_event("peer-joined", lambda d: d["id"] == sender.id)
            join_ms = (time.perf_counter() - t0) * 1000
            assert joined == {"id": sender.id, "role": "sender", "name": "tx"}
            await dash.wait_event("peer-joined", lambda d: d["id"] == sender.id)
            # relay both ways across nodes, timed
            relay = []
            for i in range(20):
                t0 = time.perf_counter()
                assert (await sender.sio.call("signal", {"to": receiver.id, "type": "offer", "sdp": f"v=0 {i}"}))["ok"]
                got = await receiver.wait_event("signal", lambda d, i=i: d.get("sdp") == f"v=0 {i}")
                relay.append((time.perf_counter() - t0) * 1000)
                assert got["from"] == sender.id
            assert (await receiver.sio.call("signal", {"to": sender.id, "type": "answer", "sdp": "v=0 a"}))["ok"]
            assert (await sender.wait_event("signal"))["sdp"] == "v=0 a"
            # stats reach a dashboard on the other node; a late dashboard on A gets the last ones
            await sender.sio.emit("stats", {"report": [], "app": {"frames": 7}})
            assert (await dash.wait_event("stats"))["app"] == {"frames": 7}
            late = Client(a)
            await late.join("r", "dashboard", "late")
            assert (await late.wait_event("stats", lambda d: d["from"] == sender.id))["app"] == {"frames": 7}
            # rules still hold across nodes: no relay sender->sender, none into another room
            other = Client(b)
            await other.join("elsewhere", "receiver", "o")
            refused = await sender.sio.call("signal", {"to": other.id, "type": "offer", "sdp": "x"})
            assert not refused["ok"] and "no peer" in refused["error"]
            assert healthz(a)["by_room"]["r"] == {"sender": 1, "receiver": 1, "dashboard": 2}
            await sender.close()
            assert (await receiver.wait_event("peer-left"))["id"] == sender.id
            for c in (receiver, dash, late, other):
                await c.close()
            print(f"\ncross-node join announced in {join_ms:.1f} ms; signal relay A->B p50 "
                  f"{statistics.median(relay):.2f} ms, max {max(relay):.2f} ms (20 relays)")
        asyncio.run(scenario())


def test_dead_node_swept(tmp_path: Path) -> None:
    """A node killed with SIGKILL says nothing: another node removes its peers and tells the room."""
    rport = free_port()
    with redis_server(tmp_path, rport), nodes(tmp_path, rport, n=1) as (a,):
        port = free_port()
        log = open(tmp_path / "doomed.log", "w")
        doomed = spawn([PY, "server.py", "--port", str(port), "--redis", f"redis://127.0.0.1:{rport}/0"], log)
        try:
            b = f"http://127.0.0.1:{port}"
            wait_http(f"{b}/healthz", doomed)

            async def scenario() -> None:
                sender, receiver = Client(a), Client(b)
                await sender.join("d", "sender", "tx")
                await receiver.join("d", "receiver", "rx")
                await sender.wait_event("peer-joined", lambda d: d["id"] == receiver.id)
                doomed.send_signal(signal.SIGKILL)
                t0 = time.monotonic()
                left = await sender.wait_event("peer-left", timeout=40)
                assert left["id"] == receiver.id
                print(f"\ndead node's receiver announced gone after {time.monotonic() - t0:.1f} s")
                assert healthz(a)["by_room"]["d"]["receiver"] == 0
                await sender.close()
            asyncio.run(scenario())
        finally:
            stop([doomed])
            log.close()


def test_redis_down_at_start_is_one_clear_line(tmp_path: Path) -> None:
    dead = free_port()
    p = subprocess.run([PY, "server.py", "--port", str(free_port()), "--redis", f"redis://127.0.0.1:{dead}/0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=child_env())
    assert p.returncode == 1, p
    assert f"cannot use Redis at redis://127.0.0.1:{dead}/0" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    bad = subprocess.run([PY, "server.py", "--redis", "http://x"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=child_env())
    assert bad.returncode == 2 and "--redis must be a redis://" in bad.stderr, bad.stderr


def test_redis_lost_at_run_time_local_rooms_go_on(tmp_path: Path) -> None:
    rport = free_port()
    with redis_server(tmp_path, rport) as redis, nodes(tmp_path, rport) as (a, b):
        async def scenario() -> None:
            receiver = Client(a)
            await receiver.join("x", "receiver", "rx")
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            sender = Client(a)  # the same node: served from its own peers
            ack = await sender.join("x", "sender", "tx")
            assert [p["id"] for p in ack["peers"]] == [receiver.id], ack
            await receiver.wait_event("peer-joined", lambda d: d["id"] == sender.id)
            for i in range(5):
                assert (await sender.sio.call("signal", {"to": receiver.id, "type": "offer", "sdp": f"v{i}"}))["ok"]
                await receiver.wait_event("signal")
            assert healthz(a)["ok"]
            await sender.close()
            await receiver.close()
        asyncio.run(scenario())
        log = (tmp_path / "node0" / "server.log").read_text()
    assert log.count("unreachable") == 1, log[-3000:]
    assert "Cannot publish to redis" not in log, log[-3000:]
