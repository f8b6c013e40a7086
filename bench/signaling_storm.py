"""A storm of joins into one room, and what it costs everyone else.

    python -m bench.signaling_storm [--joins 1000] [--seconds 60] [--max-room-peers 128] [--json]

Starts a real ``python server.py`` on a loopback port, puts a receiver and a dashboard in
room ``storm`` (the members that hear of joins), then opens ``--joins`` Socket.IO
connections that each join ``storm`` (senders and receivers alternating: the worst case,
since each role is told of the other), ``--concurrency`` at a time. Meanwhile a legitimate
client joins another room every ``--legit-every`` seconds on a fresh connection, and the
time from its ``join`` to the ack is recorded. Prints: joins accepted and refused (room
full), events the server sent during the storm (its /healthz counters), events the storm
clients and the watchers received,
and the legitimate joins' latency p50/p99/max. Bounded in count (``--joins``) and time
(``--seconds``), loopback only.

The clients speak Engine.IO 4 / Socket.IO 5 directly over aiohttp websockets
(``RawClient``): a python-socketio client per connection would cost the load generator
more CPU than the server, on the same two cores.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from splitcore.process.children import PY, free_port, process, wait_http

_ACK = re.compile(r"43(\d+)(.*)", re.S)


class RawClient:
    """One Socket.IO client on a bare websocket: connect, call, emit, count events."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.events: dict[str, int] = {}
        self.received: list[tuple[str, Any]] = []
        self.keep = False  # keep received events (tests), not only their counts
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 10.0) -> RawClient:
        ws_url = self.url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ws = await self.session.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
        opened = await asyncio.wait_for(self.ws.receive_str(), timeout)
        if not opened.startswith("0"):
            raise RuntimeError(f"no Engine.IO open packet: {opened[:80]!r}")
        await self.ws.send_str("40")
        connected = await asyncio.wait_for(self.ws.receive_str(), timeout)
        if not connected.startswith("40"):
            raise RuntimeError(f"namespace not connected: {connected[:80]!r}")
        self._reader = asyncio.create_task(self._read())
        return self

    async def send_raw(self, text: str) -> None:
        """One Engine.IO message ("4" prefix added): the Socket.IO packet as written."""
        assert self.ws is not None
        await self.ws.send_str("4" + text)

    async def emit(self, event: str, payload: Any) -> None:
        await self.send_raw("2" + json.dumps([event, payload], separators=(",", ":")))

    async def call(self, event: str, payload: Any, timeout: float = 10.0) -> Any:
        return await self.call_raw(json.dumps([event, payload], separators=(",", ":")), timeout)

    async def call_raw(self, data: str, timeout: float = 10.0) -> Any:
        """Send ``2<id><data>`` and wait for the ack's first argument."""
        self._next_id += 1
        ack_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        await self.send_raw(f"2{ack_id}{data}")
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._acks.pop(ack_id, None)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                text = msg.data
                if text == "2":
                    await self.ws.send_str("3")
                elif text.startswith("42"):
                    name, *args = json.loads(text[2:])
                    self.events[name] = self.events.get(name, 0) + 1
                    if self.keep:
                        self.received.append((name, args[0] if args else None))
                elif text.startswith("43"):
                    match = _ACK.match(text)
                    if match:
                        args = json.loads(match.group(2))
                        future = self._acks.get(int(match.group(1)))
                        if future is not None and not future.done():
                            future.set_result(args[0] if args else None)
                elif text.startswith("1"):
                    break
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.closed.set()

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def _legit_process(url: str, every: float, seconds: float, stop: Any, results: Any) -> None:
    """Child process: join a calm room on a fresh connection every ``every`` s until told."""
    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        failed, n = 0, 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        async with aiohttp.ClientSession() as session:
            results.put("ready")
            while not stop.is_set() and loop.time() < end:
                n += 1
                try:
                    c = await RawClient(session, url).connect()
                    t0 = time.perf_counter()
                    ack = await c.call("join", {"room": f"calm-{n % 4}", "role": "sender", "name": f"legit-{n}"})
                    if ack and ack.get("ok"):
                        latencies.append((time.perf_counter() - t0) * 1000)
                    else:
                        failed += 1
                    await c.close()
                except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
                    failed += 1
                await asyncio.sleep(every)
        return latencies, failed
    results.put(asyncio.run(run()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def storm(url: str, joins: int, concurrency: int, seconds: float, legit_every: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        watchers = [await RawClient(session, url).connect() for _ in range(2)]
        await watchers[0].call("join", {"room": "storm", "role": "receiver", "name": "watching-receiver"})
        await watchers[1].call("join", {"room": "storm", "role": "dashboard", "name": "watching-dashboard"})
        stormers: list[RawClient] = []
        outcome = {"accepted": 0, "refused_full": 0, "refused_other": 0, "failed": 0}
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def one(i: int) -> None:
            async with gate:
                if loop.time() > end:
                    return
                try:
                    c = await RawClient(session, url).connect()
                    stormers.append(c)
                    ack = await c.call("join", {"room": "storm", "role": ("sender", "receiver")[i % 2],
                                                "name": f"storm-{i}"}, timeout=max(1.0, end - loop.time()))
                except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
                    outcome["failed"] += 1
                    return
                if ack and ack.get("ok"):
                    outcome["accepted"] += 1
                elif ack and "full" in str(ack.get("error")):
                    outcome["refused_full"] += 1
                else:
                    outcome["refused_other"] += 1

        # The legitimate client runs in its own process, as it would on its own machine: its
        # latency is then the server's answer time, not this load generator's busy loop.
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        stop_legit = ctx.Event()
        prober = ctx.Process(target=_legit_process, args=(url, legit_every, seconds, stop_legit, results))
        prober.start()
        ready = await loop.run_in_executor(None, results.get)
        assert ready == "ready"
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(joins)))
        storm_s = time.perf_counter() - started
        stop_legit.set()
        latencies, legit_failed = await loop.run_in_executor(None, results.get)
        prober.join(10)
        await asyncio.sleep(1.0)  # let the last events arrive before counting them
        received = sum(sum(c.events.values()) for c in stormers + watchers)
        async with session.get(f"{url}/healthz") as resp:  # before the storm's leaves add theirs
            counters = (await resp.json())["counters"]
        await asyncio.gather(*(c.close() for c in stormers + watchers))
    return {"storm_joins": joins, **outcome, "server_events_sent": counters["events_sent"],
            "server_joins_refused_full": counters["joins_refused_full"], "server_rate_limited": counters["rate_limited"],
            "storm_seconds": round(storm_s, 2),
            "events_received_by_storm_and_watchers": received,
            "legit_joins": len(latencies), "legit_failed": legit_failed,
            "legit_join_ms_p50": round(percentile(latencies, 50), 2) if latencies else None,
            "legit_join_ms_p99": round(percentile(latencies, 99), 2) if latencies else None,
            "legit_join_ms_max": round(max(latencies), 2) if latencies else None,
            "legit_join_ms_mean": round(statistics.fmean(latencies), 2) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.signaling_storm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--joins", type=int, default=1000, help="storm connections, each joining once (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=50, help="storm joins in flight at once (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=60.0, help="hard limit on the storm's duration (default: %(default)s)")
    p.add_argument("--legit-every", type=float, default=0.05, help="seconds between legitimate joins (default: %(default)s)")
    p.add_argument("--max-room-peers", type=int, default=None, help="passed to server.py (default: the server's)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = p.parse_args(argv)
    if not 1 <= args.joins <= 5000:
        p.error("--joins must be 1..5000 (each is a connection on this machine)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--max-room-peers", str(args.max_room_peers)] if args.max_room_peers is not None else []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with process([PY, "server.py", "--port", str(port), "--log-level", "warning", *extra], log) as server:
            wait_http(f"{url}/healthz", server)
            figures = asyncio.run(storm(url, args.joins, args.concurrency, args.seconds, args.legit_every))
        log_lines = len(log.read_text().splitlines())
    figures.update(server_log_lines=log_lines,
                   max_room_peers=args.max_room_peers if args.max_room_peers is not None else "default (128)")
    if args.json:
        print(json.dumps(figures))
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
