"""Signaling server tests: a real server in-process, real Socket.IO clients over websocket.

Absence of a message is checked with a barrier, not a sleep: the client sends an unknown
event with an ack; the server answers it (error event, then nack) on the same ordered
connection, so anything the server had queued for that client before has arrived by then.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
import yarl

from bench.signaling_storm import RawClient
from signaling import RunningServer, start_server
from signaling import handlers as handlers_module
from signaling import packets as packets_module
from signaling import validate as validate_module
from signaling.limits import Limits

TIMEOUT = 3.0
SERVER_EVENTS = ("peer-joined", "peer-left", "signal", "stats", "error")
OFFER_SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
STATS = {"report": [{"type": "data-channel", "id": "D1", "label": "latent", "state": "open",
                     "messagesSent": 3, "bytesSent": 300, "messagesReceived": 0,
                     "bytesReceived": 0, "timestamp": 1700000000000.0}],
         "app": {"split": "stage1", "fps": 30.0, "frames": 3}}


class Client:
    """A real AsyncClient that queues every server event by name."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.queues: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.id = ""
        for event in SERVER_EVENTS:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str):
        async def record(data: Any) -> None:
            self.queues[event].put_nowait(data)
        return record

    async def connect(self, server: RunningServer) -> Client:
        await self.sio.connect(server.url, transports=["websocket"], wait_timeout=TIMEOUT)
        return self

    async def call(self, event: str, *args: Any) -> Any:
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return await self.sio.call(event, data, timeout=TIMEOUT)

    async def join(self, room: str, role: str, name: str = "") -> dict[str, Any]:
        ack = await self.call("join", {"room": room, "role": role, "name": name})
        assert ack["ok"], ack
        self.id = ack["id"]
        return ack

    async def next(self, event: str) -> Any:
        return await asyncio.wait_for(self.queues[event].get(), TIMEOUT)

    async def assert_quiet(self) -> None:
        """Barrier, then: nothing arrived that the test has not consumed."""
        ack = await self.call("barrier", {})
        assert ack["ok"] is False
        assert (await self.next("error"))["event"] == "barrier"
        pending = {e: q.qsize() for e, q in self.queues.items() if q.qsize()}
        assert not pending, f"unexpected events: {pending}"


@asynccontextmanager
async def running(repo_root: Path | None = None) -> AsyncIterator[RunningServer]:
    server = await start_server("127.0.0.1", 0, repo_root=repo_root)
    try:
        yield server
    finally:
        await server.close()


async def clients(server: RunningServer, n: int) -> list[Client]:
    return [await Client().connect(server) for _ in range(n)]


def peer(client: Client, role: str, name: str = "") -> dict[str, str]:
    return {"id": client.id, "role": role, "name": name}


# -- rooms ---------------------------------------------------------------------------------

def test_join_lists_peers_and_announces_arrivals_and_departures() -> None:
    async def scenario() -> None:
        async with running() as server:
            s, r, d, other = await clients(server, 4)
            ack = await s.join("lab", "sender", "cam-1")
            assert ack == {"ok": True, "id": s.id, "room": "lab", "role": "sender", "name": "cam-1",
                           "peers": []}
            ack = await r.join("lab", "receiver")
            assert ack["peers"] == [peer(s, "sender", "cam-1")]
            assert await s.next("peer-joined") == peer(r, "receiver")
            ack = await d.join("lab", "dashboard", "wall")
            assert sorted(ack["peers"], key=lambda p: p["role"]) == [
                peer(r, "receiver"), peer(s, "sender", "cam-1")]
            # dashboards only watch: no peer is told of them
            await other.join("elsewhere", "receiver")
            assert await s.call("leave", {}) == {"ok": True}
            assert await r.next("peer-left") == peer(s, "sender", "cam-1")
            assert await d.next("peer-left") == peer(s, "sender", "cam-1")
            for c in (s, r, d, other):
                await c.assert_quiet()
    asyncio.run(scenario())


def test_join_while_in_a_room_leaves_the_old_room() -> None:
    async def scenario() -> None:
        async with running() as server:
            a, b, c = await clients(server, 3)
            await a.join("one", "sender")
            await b.join("one", "receiver")
            await a.next("peer-joined")
            await c.join("two", "receiver")
            ack = await a.join("two", "sender")
            assert ack["peers"] == [peer(c, "receiver")]
            assert await b.next("peer-left") == peer(a, "sender")
            assert await c.next("peer-joined") == peer(a, "sender")
            for client in (a, b, c):
                await client.assert_quiet()
    asyncio.run(scenario())


def test_disconnect_is_leave() -> None:
    async def scenario() -> None:
        async with running() as server:
            s, r = await clients(server, 2)
            await s.join("lab", "sender")
            await r.join("lab", "receiver")
            await s.next("peer-joined")
            await r.sio.disconnect()
            assert await s.next("peer-left") == peer(r, "receiver")
            health = await get_json(server, "/healthz")
            assert health["peers"] == 1 and health["by_room"]["lab"]["receiver"] == 0
    asyncio.run(scenario())


# -- signal relay --------------------------------------------------------------------------

def test_signal_goes_only_to_the_addressee() -> None:
    async def scenario() -> None:
        async with running() as server:
            s, r1, r2, d, far = await clients(server, 5)
            await s.join("lab", "sender")
            await r1.join("lab", "receiver")
            await r2.join("lab", "receiver")
            await d.join("lab", "dashboard")
            await far.join("elsewhere", "receiver")
            for c in (s, r1, r2, d):
                c.queues.clear()  # peer-joined traffic is tested elsewhere

            assert await s.call("signal", {"to": r1.id, "type": "offer",
                                           "sdp": OFFER_SDP}) == {"ok": True}
            assert await r1.next("signal") == {"from": s.id, "type": "offer", "sdp": OFFER_SDP}
            assert await r1.call("signal", {"to": s.id, "type": "answer",
                                            "sdp": OFFER_SDP}) == {"ok": True}
            assert await s.next("signal") == {"from": r1.id, "type": "answer", "sdp": OFFER_SDP}

            cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                    "sdpMid": "0", "sdpMLineIndex": 0, "extra": "not relayed"}
            await s.call("signal", {"to": r1.id, "type": "candidate", "candidate": cand})
            got = await r1.next("signal")
            assert got == {"from": s.id, "type": "candidate", "candidate": {
                "candidate": cand["candidate"], "sdpMid": "0", "sdpMLineIndex": 0}}
            await s.call("signal", {"to": r1.id, "type": "candidate", "candidate": None})
            assert (await r1.next("signal"))["candidate"] is None  # end of candidates
            for c in (s, r1, r2, d, far):
                await c.assert_quiet()
    asyncio.run(scenario())


# -- stats ---------------------------------------------------------------------------------

def test_stats_reach_dashboards_only_and_late_dashboards_catch_up() -> None:
    async def scenario() -> None:
        async with running() as server:
            s, r, d1, d2, d3 = await clients(server, 5)
            await s.join("lab", "sender", "cam")
            await r.join("lab", "receiver")
            await d1.join("lab", "dashboard")
            assert await s.call("stats", STATS) == {"ok": True}
            got = await d1.next("stats")
            assert {k: got[k] for k in ("from", "role", "name", "report", "app")} == {
                "from": s.id, "role": "sender", "name": "cam", **STATS}
            assert isinstance(got["time"], float) and got["time"] > 1.6e12
            for c in (s, r):  # not to peers, not back to the sender
                c.queues.pop("peer-joined", None)
                await c.assert_quiet()

            await d2.join("lab", "dashboard")  # late: gets the last stats at once
            assert await d2.next("stats") == got
            await s.call("leave", {})
            await d3.join("lab", "dashboard")  # a peer that left is not replayed
            for c in (r, d2, d3):
                for event in ("peer-joined", "peer-left"):
                    c.queues.pop(event, None)
                await c.assert_quiet()
    asyncio.run(scenario())


# -- refused input -------------------------------------------------------------------------

BIG = "x" * (65 * 1024)
# (case id, how the offender joins or None, event, args, expected error text).
# "{R}", "{S}", "{D}" in a `to` field stand for the good receiver/sender/dashboard ids.
BAD_INPUT = [
    ("join-string", None, "join", ["lab"], "must be a JSON object, got string"),
    ("join-array", None, "join", [[1, 2]], "must be a JSON object, got array"),
    ("join-two-args", None, "join", [{"room": "lab"}, {}], "got 2 arguments"),
    ("join-binary", None, "join", [{"room": b"lab", "role": "sender"}], "not plain JSON"),
    ("join-no-room", None, "join", [{"role": "sender"}], "missing required field 'room'"),
    ("join-bad-room", None, "join", [{"room": "a b", "role": "sender"}], "room must match"),
    ("join-dot-room", None, "join", [{"room": "../x", "role": "sender"}], "room must match"),
    ("join-long-room", None, "join", [{"room": "r" * 65, "role": "sender"}], "limit is 64"),
    ("join-room-number", None, "join", [{"room": 7, "role": "sender"}],
     "'room' must be a string, got number"),
    ("join-bad-role", None, "join", [{"room": "lab", "role": "admin"}], "role must be one of"),
    ("join-no-role", None, "join", [{"room": "lab"}], "missing required field 'role'"),
    ("join-long-name", None, "join", [{"room": "lab", "role": "sender", "name": "n" * 65}],
     "'name' is 65 characters long"),
    ("join-oversized", None, "join", [{"room": "lab", "role": "sender", "pad": BIG}],
     "limit is 65536"),
    ("signal-before-join", None, "signal", [{"to": "{R}", "type": "offer", "sdp": "v=0"}],
     "join a room first"),
    ("stats-before-join", None, "stats", [STATS], "join a room first"),
    ("signal-bad-type", "sender", "signal", [{"to": "{R}", "type": "pranswer", "sdp": "v"}],
     "type must be one of offer, answer, candidate"),
    ("signal-no-to", "sender", "signal", [{"type": "offer", "sdp": "v=0"}],
     "missing required field 'to'"),
    ("signal-no-sdp", "sender", "signal", [{"to": "{R}", "type": "offer"}],
     "missing required field 'sdp'"),
    ("signal-sdp-number", "sender", "signal", [{"to": "{R}", "type": "offer", "sdp": 1}],
     "'sdp' must be a string"),
    ("signal-oversized", "sender", "signal", [{"to": "{R}", "type": "offer", "sdp": BIG}],
     "limit is 65536"),
    ("signal-bad-candidate", "sender", "signal",
     [{"to": "{R}", "type": "candidate", "candidate": "a=candidate"}],
     "'candidate' must be an object or null"),
    ("signal-bad-mline", "sender", "signal",
     [{"to": "{R}", "type": "candidate", "candidate": {"candidate": "", "sdpMLineIndex": "0"}}],
     "'sdpMLineIndex' must be"),
    ("signal-unknown-peer", "sender", "signal", [{"to": "nobody", "type": "offer", "sdp": "v"}],
     "no peer 'nobody' in room 'lab'"),
    ("signal-other-room", "sender@far", "signal", [{"to": "{R}", "type": "offer", "sdp": "v"}],
     "in room 'far'"),
    ("signal-same-role", "sender", "signal", [{"to": "{S}", "type": "offer", "sdp": "v"}],
     "sender<->receiver, not sender->sender"),
    ("signal-to-dashboard", "sender", "signal", [{"to": "{D}", "type": "offer", "sdp": "v"}],
     "is a dashboard"),
    ("signal-from-dashboard", "dashboard", "signal",
     [{"to": "{R}", "type": "offer", "sdp": "v"}], "a dashboard may not send signal"),
    ("stats-bad-report", "sender", "stats", [{"report": {}, "app": {}}],
     "'report' must be an array of objects, got object"),
    ("stats-no-app", "sender", "stats", [{"report": []}], "'app' must be an object, got null"),
    ("stats-from-dashboard", "dashboard", "stats", [STATS], "dashboards only watch"),
    ("unknown-event", "sender", "hello", [{}], "unknown event 'hello'"),
]


def _fill(args: list[Any], ids: dict[str, str]) -> list[Any]:
    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return ids.get(value, value) if isinstance(value, str) else value
    return [fill(a) for a in args]


@pytest.mark.parametrize("case_id,offender_role,event,args,expected", BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_others_keep_working(
        case_id: str, offender_role: str | None, event: str, args: list[Any], expected: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with running() as server:
            gs, gr, gd, bad = await clients(server, 4)
            await gs.join("lab", "sender")
            await gr.join("lab", "receiver")
            await gd.join("lab", "dashboard")
            if offender_role:
                role, _, room = offender_role.partition("@")
                await bad.join(room or "lab", role)
            ids = {"{R}": gr.id, "{S}": gs.id, "{D}": gd.id}
            payload = _fill(args, ids)

            await bad.sio.emit(event, tuple(payload) if len(payload) > 1 else payload[0])
            error = await bad.next("error")  # without an ack: the error event alone
            assert error["event"] == event and expected in error["error"], error
            ack = await bad.call(event, *payload)  # with an ack: nack plus error event
            assert ack == {"ok": False, "error": error["error"]}
            assert await bad.next("error") == error

            # The server still serves everyone, and nothing leaked to the good peers.
            await gs.call("signal", {"to": gr.id, "type": "offer", "sdp": OFFER_SDP})
            assert (await gr.next("signal"))["from"] == gs.id
            for c in (gs, gr, gd):
                c.queues.pop("peer-joined", None)
                await c.assert_quiet()
    caplog.set_level(logging.WARNING, logger="splitrtc.signaling")
    asyncio.run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all("from peer " in m and " in room " in m for m in refusals)


def test_a_bug_in_a_handler_does_not_stop_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payload: Any) -> Any:
        raise RuntimeError("injected bug")
    monkeypatch.setattr(handlers_module, "parse_stats", broken)

    async def scenario() -> None:
        async with running() as server:
            s, r = await clients(server, 2)
            await s.join("lab", "sender")
            await r.join("lab", "receiver")
            assert await s.call("stats", STATS) == {"ok": False, "error": "internal server error"}
            assert (await s.next("error"))["event"] == "stats"
            await s.call("signal", {"to": r.id, "type": "offer", "sdp": OFFER_SDP})
            assert (await r.next("signal"))["sdp"] == OFFER_SDP
    asyncio.run(scenario())


# -- HTTP ----------------------------------------------------------------------------------

MANIFEST = '{"splits": [{"id": "s", "head": {"file": "head.onnx"}}], "full": {"file": "splitnet.onnx"}}'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repo tree: pages, a vendor package, models, and a secret outside them all."""
    files = {
        "static/index.html": "<h1>index</h1>", "static/dashboard.html": "<h1>dash</h1>",
        "static/sender.html": "<h1>send</h1>", "static/receiver.html": "<h1>recv</h1>",
        "static/js/app.js": "export {};",
        "node_modules/onnxruntime-web/dist/ort.mjs": "export {};",
        "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm": "\0asm",
        "node_modules/socket.io-client/dist/socket.io.esm.min.js": "export {};",
        "models/manifest.json": MANIFEST, "models/head.onnx": "ONNX",
        "models/splitnet.onnx": "FULL-MODEL", "models/operating_points.json": "{}",
        "secret.txt": "TOP-SECRET",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "static" / "escape").symlink_to(tmp_path)  # a link pointing outside
    return tmp_path


async def fetch(server: RunningServer, path: str) -> tuple[int, Any, str]:
    """GET with the path sent as written (no client-side '..' clean-up)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(yarl.URL(server.url + path, encoded=True)) as resp:
            return resp.status, resp.headers, await resp.text(errors="replace")


async def get_json(server: RunningServer, path: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + path) as resp:
            assert resp.status == 200
            return await resp.json()


def assert_isolated(headers: Any) -> None:
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_pages_files_and_mime_types(repo: Path) -> None:
    expected = [
        ("/", 200, "text/html", "<h1>index</h1>"),
        ("/dashboard", 200, "text/html", "<h1>dash</h1>"),
        ("/sender", 200, "text/html", "<h1>send</h1>"),
        ("/receiver", 200, "text/html", "<h1>recv</h1>"),
        ("/static/js/app.js", 200, "text/javascript", "export {};"),
        ("/vendor/onnxruntime-web/ort.mjs", 200, "text/javascript", "export {};"),
        ("/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm", 200, "application/wasm", None),
        ("/vendor/socket.io/socket.io.esm.min.js", 200, "text/javascript", None),
        ("/models/manifest.json", 200, "application/json", MANIFEST),
        ("/models/head.onnx", 200, "application/octet-stream", "ONNX"),
        # the sender page's adaptive candidates and each point's leakage
        ("/models/operating_points.json", 200, "application/json", "{}"),
        # only what a page needs: not the full model, not other files of models/
        ("/models/splitnet.onnx", 404, "text/plain", None),
    ]

    async def scenario() -> None:
        async with running(repo) as server:
            for path, status, ctype, body in expected:
                got_status, headers, text = await fetch(server, path)
                assert (got_status, headers["Content-Type"].split(";")[0]) == (status, ctype), path
                assert body is None or text == body, path
                assert_isolated(headers)
    asyncio.run(scenario())


def test_missing_files_and_vendor_folders_say_what_to_do(repo: Path) -> None:
    async def scenario() -> None:
        async with running(repo) as server:
            status, headers, text = await fetch(server, "/vendor/uplot/uPlot.esm.js")
            assert status == 404 and "npm ci" in text and "node_modules/uplot/dist" in text
            assert_isolated(headers)  # error responses too
            status, _, text = await fetch(server, "/vendor/leftpad/x.js")
            assert status == 404 and "unknown vendor package" in text
            status, _, _ = await fetch(server, "/static/nope.js")
            assert status == 404
            (repo / "static" / "dashboard.html").unlink()
            status, _, text = await fetch(server, "/dashboard")
            assert status == 404 and "dashboard.html" in text
    asyncio.run(scenario())


@pytest.mark.parametrize("path", [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt",
    "/static/escape/secret.txt", "/static/%2fetc%2fpasswd",
    "/models/../secret.txt", "/models/..%2f..%2fsecret.txt",
    "/vendor/onnxruntime-web/..%2f..%2f..%2fsecret.txt",
    "/vendor/onnxruntime-web/%2e%2e/%2e%2e/%2e%2e/secret.txt",
])
def test_paths_outside_the_served_folders_are_refused(repo: Path, path: str) -> None:
    async def scenario() -> None:
        async with running(repo) as server:
            status, headers, text = await fetch(server, path)
            # /models/ serves only the files its manifest lists: anything else is "not found"
            assert status in ((403, 404) if path.startswith("/models/") else (403,)) and "TOP-SECRET" not in text
            assert_isolated(headers)
    asyncio.run(scenario())


def test_defaults_healthz_and_socketio_headers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as server:  # empty repo: no static/, no node_modules/
            status, headers, text = await fetch(server, "/")
            assert status == 200 and 'href="/dashboard"' in text
            status, headers, _ = await fetch(server, "/socket.io/?EIO=4&transport=polling")
            assert status == 200
            assert_isolated(headers)
            (s,) = await clients(server, 1)
            await s.join("lab", "sender")
            health = await get_json(server, "/healthz")
            assert health["counters"]["joins"] == 1
            assert {k: v for k, v in health.items() if k != "counters"} == {
                "ok": True, "rooms": 1, "peers": 1,
                "by_room": {"lab": {"sender": 1, "receiver": 0, "dashboard": 0}}}
    asyncio.run(scenario())


# -- hostile input: depth, room size, storms, floods ---------------------------------------

@asynccontextmanager
async def running_with(limits: Limits) -> AsyncIterator[RunningServer]:
    server = await start_server("127.0.0.1", 0, limits=limits)
    try:
        yield server
    finally:
        await server.close()


async def raw_clients(session: aiohttp.ClientSession, server: RunningServer, n: int) -> list[RawClient]:
    clients = [await RawClient(session, server.url).connect() for _ in range(n)]
    for c in clients:
        c.keep = True
    return clients


@pytest.mark.parametrize("event,depth", [("join", 1000), ("stats", 40), ("signal", 100_000)])
def test_deeply_nested_json_is_answered_with_an_error(event: str, depth: int,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Refused before json.loads: no RecursionError, an error event and a nack instead."""
    async def scenario() -> None:
        async with running() as server, aiohttp.ClientSession() as session:
            (bad,) = await raw_clients(session, server, 1)
            nested = "[" * depth + "]" * depth
            ack = await bad.call_raw(f'["{event}",{{"room":{nested}}}]', TIMEOUT)
            limit = f"payload is nested deeper than {validate_module.MAX_JSON_DEPTH} levels"
            if depth * 2 > packets_module.MAX_PACKET_CHARS:
                limit = "limit is 65536"  # so big it is refused on its size alone, first
            assert ack == {"ok": False, "error": ack["error"]} and limit in ack["error"], ack
            await asyncio.wait_for(_until(lambda: bad.events.get("error")), TIMEOUT)
            assert bad.received[0] == ("error", {"event": event, "error": ack["error"]})
            # the connection still works, and so does the server
            assert (await bad.call("join", {"room": "lab", "role": "sender"}, TIMEOUT))["ok"]
            (good,) = await clients(server, 1)
            await good.join("lab", "receiver")
    caplog.set_level(logging.WARNING)
    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_malformed_packets_are_refused_not_crashed_on(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with running() as server, aiohttp.ClientSession() as session:
            (bad,) = await raw_clients(session, server, 1)
            for raw in ('2{"join":1}', "2[]", "2[7,{}]", '2["join",{"room":'):
                await bad.send_raw(raw)
            await asyncio.wait_for(_until(lambda: bad.events.get("error", 0) >= 4), TIMEOUT)
            errors = [p["error"] for name, p in bad.received if name == "error"]
            assert sum("malformed" in e for e in errors) == 4, errors
            assert (await bad.call("join", {"room": "lab", "role": "sender"}, TIMEOUT))["ok"]
    caplog.set_level(logging.WARNING)
    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_full_room_refuses_the_join_and_the_joiner_keeps_its_room() -> None:
    async def scenario() -> None:
        async with running_with(Limits(max_room_peers=3)) as server:
            a, b, c, d = await clients(server, 4)
            await a.join("lab", "receiver")
            await b.join("lab", "sender")
            await c.join("lab", "dashboard")
            await d.join("other", "sender")
            ack = await d.call("join", {"room": "lab", "role": "sender"})
            assert ack["ok"] is False and "room 'lab' is full (3 peers)" in ack["error"]
            assert "--max-room-peers" in ack["error"]
            assert (await d.next("error"))["event"] == "join"
            health = await get_json(server, "/healthz")
            assert health["by_room"]["other"]["sender"] == 1  # still where it was
            assert health["counters"]["joins_refused_full"] == 1
            assert (await b.call("join", {"room": "lab", "role": "sender", "name": "again"}))["ok"]  # a member may rejoin
            await c.call("leave", {})
            assert (await d.call("join", {"room": "lab", "role": "sender"}))["ok"]  # a slot is free again
    asyncio.run(scenario())


def test_joins_are_announced_only_to_the_roles_that_use_them() -> None:
    async def scenario() -> None:
        async with running() as server:
            s1, s2, r, d = await clients(server, 4)
            await s1.join("lab", "sender", "one")
            await r.join("lab", "receiver")
            assert await s1.next("peer-joined") == peer(r, "receiver")
            ack = await s2.join("lab", "sender", "two")
            assert ack["peers"] == [peer(r, "receiver")]  # a sender is not told of senders
            assert await r.next("peer-joined") == peer(s2, "sender", "two")
            ack = await d.join("lab", "dashboard")
            assert len(ack["peers"]) == 3
            await s2.call("leave", {})
            assert await r.next("peer-left") == peer(s2, "sender", "two")
            assert await d.next("peer-left") == peer(s2, "sender", "two")
            for c in (s1, s2, r, d):
                await c.assert_quiet()  # s1 heard nothing of s2 or d
    asyncio.run(scenario())


def test_a_storm_on_one_room_costs_linear_events_and_other_rooms_still_join() -> None:
    """200 joins into one room with a receiver and a dashboard in it: each accepted join is
    announced to those two and to the storm's other role (bounded by the room cap), not to
    everyone; a join into another room during the storm succeeds. (Latency is measured by
    `python -m bench.signaling_storm`, not asserted here.)"""
    storm, cap = 200, 40

    async def scenario() -> None:
        async with running_with(Limits(max_room_peers=cap)) as server, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            watchers = await raw_clients(session, server, 2)
            await watchers[0].call("join", {"room": "storm", "role": "receiver"})
            await watchers[1].call("join", {"room": "storm", "role": "dashboard"})
            stormers = await raw_clients(session, server, storm)

            async def join(i: int, c: RawClient) -> Any:
                return await c.call("join", {"room": "storm", "role": ("sender", "receiver")[i % 2]}, 30)
            legit = Client()
            joins = asyncio.gather(*(join(i, c) for i, c in enumerate(stormers)))
            await legit.connect(server)
            ack = await legit.call("join", {"room": "calm", "role": "sender"})
            acks = await joins
            assert ack["ok"] and ack["peers"] == []
            accepted = sum(bool(a["ok"]) for a in acks)
            assert accepted == cap - 2
            assert all("is full" in a["error"] for a in acks if not a["ok"])
            counters = (await get_json(server, "/healthz"))["counters"]
            # each accepted join: <= 2 watchers + the other role (at most cap/2); each refused: 1 error
            assert counters["events_sent"] <= accepted * (2 + cap // 2) + (storm - accepted)
            assert counters["joins_refused_full"] == storm - accepted
            await asyncio.gather(*(c.close() for c in stormers + watchers))
    asyncio.run(scenario())


def test_a_flooding_client_is_cut_off_and_logged_in_summary(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with running_with(Limits(events_per_s=20, burst=30)) as server, aiohttp.ClientSession() as session:
            good_s, good_r = await clients(server, 2)
            await good_s.join("lab", "sender")
            await good_r.join("lab", "receiver")
            (flooder,) = await raw_clients(session, server, 1)
            for _ in range(2000):  # unknown events: each would cost an error event and a log line
                await flooder.emit("hello", {})
                if flooder.closed.is_set():
                    break
            await asyncio.wait_for(flooder.closed.wait(), TIMEOUT)
            errors = [p["error"] for name, p in flooder.received if name == "error"]
            assert sum("rate limit" in e for e in errors) == 1  # told once, not per event
            assert len(errors) <= 30 + 1  # the burst got answers, the rest was dropped unread
            counters = (await get_json(server, "/healthz"))["counters"]
            assert counters["flood_disconnects"] == 1 and counters["rate_limited"] > 30
            await good_s.call("signal", {"to": good_r.id, "type": "offer", "sdp": OFFER_SDP})
            assert (await good_r.next("signal"))["from"] == good_s.id
    caplog.set_level(logging.WARNING, logger="splitrtc.signaling")
    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("splitrtc.signaling")]
    assert len(lines) <= 12, lines  # a few in full, then counts: not one per message
    assert any("disconnecting client" in m for m in lines)


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
