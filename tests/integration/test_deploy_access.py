"""Access control over a real ``server.py --secret`` process: every refusal of issue 13, the
takeover attempt against a real sender/receiver session, /healthz and /models/ gated, and
the ICE list (with TURN REST credentials minted per peer) in the join ack."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import socketio

from signaling import token
from splitcore.process.children import PY, ROOT, child_env, free_port, process, wait_http

SECRET = "access-test-secret-" + "s" * 24
TURN_SECRET = "turn-" + "t" * 27
ICE = json.dumps([{"urls": ["stun:stun.example.org", "turn:turn.example.org:3478?transport=udp"]}])
EVENTS = ("peer-joined", "peer-left", "signal", "stats", "error")


def tok(room: str, *roles: str, name: str = "", ttl: float = 600, now: float | None = None) -> str:
    return token.mint(SECRET, room, roles, ttl, name, now=now)


@contextlib.contextmanager
def secured_server(tmp: Path, *extra: str) -> Iterator[str]:
    """``server.py --secret`` with ICE servers and a TURN secret, on a free port (``--port``
    in ``extra`` wins: argparse keeps the last)."""
    ports = [a for i, a in enumerate(extra) if i and extra[i - 1] == "--port"]
    port = int(ports[-1]) if ports else free_port()
    url = f"http://127.0.0.1:{port}"
    args = [PY, "server.py", "--port", str(port), "--ice-servers", ICE, "--secret", SECRET,
            "--turn-secret", TURN_SECRET, *extra]
    with process(args, tmp / "server.log") as p:
        wait_http(f"{url}/healthz", p)
        yield url


class Client:
    """A raw Socket.IO client that records every server event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.events: list[tuple[str, Any]] = []
        for ev in EVENTS:
            self.sio.on(ev, self._recorder(ev))

    def _recorder(self, ev: str) -> Any:
        async def record(data: Any) -> None:
            self.events.append((ev, data))
        return record

    async def connect(self, url: str) -> Client:
        await self.sio.connect(url, transports=["websocket"])
        return self

    async def call(self, event: str, data: dict[str, Any]) -> Any:
        return await self.sio.call(event, data, timeout=10)

    def of(self, kind: str) -> list[Any]:
        return [d for ev, d in self.events if ev == kind]


async def clients(url: str, n: int) -> list[Client]:
    return [await Client().connect(url) for _ in range(n)]


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_joins_without_a_valid_token_get_an_error_and_nothing_else(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        rx, watcher, *strangers = await clients(url, 9)
        ack = await rx.call("join", {"room": "lab", "role": "receiver", "token": tok("lab", "receiver", name="rx-1")})
        assert ack["ok"] and ack["name"] == "rx-1"
        ack = await watcher.call("join", {"room": "lab", "role": "dashboard", "token": tok("lab", "dashboard")})
        assert ack["ok"] and "iceServers" not in ack  # dashboards make no connections
        cases = [
            ({"room": "lab", "role": "sender"}, "missing"),
            ({"room": "lab", "role": "receiver", "token": tok("lab", "sender")}, "role_not_allowed"),
            ({"room": "lab", "role": "sender", "token": tok("other", "sender")}, "wrong_room"),
            ({"room": "lab", "role": "dashboard", "token": tok("other", "dashboard")}, "wrong_room"),
            ({"room": "lab", "role": "sender", "token": tok("lab", "sender", ttl=60, now=time.time() - 3600)},
             "expired"),
            ({"room": "lab", "role": "sender", "token": token.mint("x" * 32, "lab", ["sender"], 60)}, "bad_signature"),
            ({"room": "lab", "role": "sender", "token": "not.a.jwt"}, "malformed"),
        ]
        for client, (join, reason) in zip(strangers, cases, strict=True):
            ack = await client.call("join", join)
            assert ack["ok"] is False and f"token refused ({reason})" in ack["error"], (join, ack)
        await asyncio.sleep(0.5)
        for client, (_, reason) in zip(strangers, cases, strict=True):
            # the error event, and nothing else: no peer list, no stats, no relay
            assert [ev for ev, _ in client.events] == ["error"], (reason, client.events)
            assert client.events[0][1]["event"] == "join"
        # the room heard of none of them
        assert rx.events == [] and watcher.events == []
        # a refused client cannot go on to signal or publish stats either
        ack = await strangers[0].call("signal", {"to": rx.sio.get_sid(), "type": "offer", "sdp": "v=0"})
        assert ack == {"ok": False, "error": "join a room first"}
        assert rx.of("signal") == []
        for c in (rx, watcher, *strangers):
            await c.sio.disconnect()

    with secured_server(tmp_path) as url:
        asyncio.run(scenario(url))
        health = json.loads(http(f"{url}/healthz")[2])
    assert health["counters"]["joins_refused_token"] == 7


def test_a_room_a_token_cannot_signal_into_or_read_the_stats_of_room_b(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        a_tx, b_rx, b_dash, a_dash = await clients(url, 4)
        assert (await a_tx.call("join", {"room": "a", "role": "sender", "token": tok("a", "sender")}))["ok"]
        assert (await b_rx.call("join", {"room": "b", "role": "receiver", "token": tok("b", "receiver")}))["ok"]
        assert (await b_dash.call("join", {"room": "b", "role": "dashboard", "token": tok("b", "dashboard")}))["ok"]
        # signal across rooms, by id: refused without saying whether the id exists
        ack = await a_tx.call("signal", {"to": b_rx.sio.get_sid(), "type": "offer", "sdp": "v=0"})
        assert ack["ok"] is False and "no peer" in ack["error"]
        # a dashboard of room a cannot join room b to read its stats
        ack = await a_dash.call("join", {"room": "b", "role": "dashboard", "token": tok("a", "dashboard")})
        assert ack["ok"] is False and "wrong_room" in ack["error"]
        # stats are published as the publisher's own: naming another peer is refused
        forged = {"from": b_rx.sio.get_sid(), "name": "receiver", "report": [], "app": {"label": "forged"}}
        ack = await a_tx.call("stats", forged)
        assert ack["ok"] is False and "'from'" in ack["error"]
        ack = await a_tx.call("stats", {"report": [], "app": {"label": "cat"}})
        assert ack == {"ok": True}
        await asyncio.sleep(0.5)
        assert b_rx.of("signal") == [] and b_dash.of("stats") == []
        assert a_dash.of("stats") == []
        for c in (a_tx, b_rx, b_dash, a_dash):
            await c.sio.disconnect()

    with secured_server(tmp_path) as url:
        asyncio.run(scenario(url))


def test_the_join_ack_carries_ice_servers_with_fresh_turn_credentials(tmp_path: Path) -> None:
    async def scenario(url: str) -> list[dict]:
        a, b = await clients(url, 2)
        acks = [await a.call("join", {"room": "lab", "role": "sender", "token": tok("lab", "sender", name="cam 1")}),
                await b.call("join", {"room": "lab", "role": "receiver", "token": tok("lab", "receiver")})]
        for c in (a, b):
            await c.sio.disconnect()
        return acks

    with secured_server(tmp_path, "--turn-ttl", "2h", "--relay-only") as url:
        acks = asyncio.run(scenario(url))
    users = set()
    for ack in acks:
        assert ack["iceTransportPolicy"] == "relay"
        stun, turn = ack["iceServers"]
        assert stun == {"urls": "stun:stun.example.org"}
        assert turn["urls"] == "turn:turn.example.org:3478?transport=udp"
        expiry, _ = turn["username"].split(":", 1)
        assert 7100 <= int(expiry) - time.time() <= 7200
        mac = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(mac).decode()
        users.add(turn["username"])
    assert len(users) == 2 and any(u.endswith(":cam_1") for u in users)


def test_healthz_and_models_are_gated(tmp_path: Path) -> None:
    sender = tok("lab", "sender")
    with secured_server(tmp_path) as url:
        async def join() -> Client:
            (c,) = await clients(url, 1)
            assert (await c.call("join", {"room": "secret-room", "role": "sender",
                                          "token": tok("secret-room", "sender")}))["ok"]
            return c

        async def scenario() -> None:
            c = await join()
            status, _, body = http(f"{url}/healthz")
            anyone = json.loads(body)
            assert status == 200 and anyone["ok"] and anyone["peers"] == 1 and "by_room" not in anyone
            assert b"secret-room" not in body
            for bad in (sender, tok("*", "dashboard")):  # not admin, or not for every room
                assert "by_room" not in json.loads(http(f"{url}/healthz?token={bad}")[2])
            admin = json.loads(http(f"{url}/healthz", {"Authorization": f"Bearer {tok('*', 'admin')}"})[2])
            assert admin["by_room"] == {"secret-room": {"sender": 1, "receiver": 0, "dashboard": 0}}
            await c.sio.disconnect()
        asyncio.run(scenario())

        head = json.loads((ROOT / "models" / "manifest.json").read_text())["splits"][0]["head"]["file"]
        assert http(f"{url}/models/manifest.json")[0] == 401
        assert http(f"{url}/models/{head}")[0] == 401
        assert http(f"{url}/models/{head}?token={tok('lab', 'dashboard')}")[0] == 403
        assert http(f"{url}/models/{head}?token={tok('lab', 'sender', ttl=60, now=time.time() - 3600)}")[0] == 403
        status, headers, body = http(f"{url}/models/{head}", {"Authorization": f"Bearer {sender}"})
        assert status == 200 and body == (ROOT / "models" / head).read_bytes()
        assert http(f"{url}/models/manifest.json?token={tok('lab', 'receiver')}")[0] == 200
        # training outputs are not served, even to a member; the operating points (the sender
        # page's adaptive candidates) are, to members only
        assert http(f"{url}/models/splitnet.onnx?token={sender}")[0] == 404
        assert http(f"{url}/models/operating_points.json")[0] == 401
        assert http(f"{url}/models/operating_points.json?token={sender}")[0] == 200
        # the page served with ?token= sets the cookie its own model fetches then carry
        status, headers, _ = http(f"{url}/sender?room=lab&token={sender}")
        cookie = headers.get("Set-Cookie", "")
        assert status == 200 and cookie.startswith(f"splitrtc_token={sender};") and "HttpOnly" in cookie
        assert "Path=/models/" in cookie and "SameSite=Strict" in cookie
        assert http(f"{url}/models/{head}", {"Cookie": f"splitrtc_token={sender}"})[0] == 200
        # a receiver token does not buy a cookie on the sender page, nor a bad one
        assert "Set-Cookie" not in http(f"{url}/sender?token={tok('lab', 'receiver')}")[1]
        assert "Set-Cookie" not in http(f"{url}/sender?token=junk")[1]


def test_open_server_warns_loudly_off_loopback(tmp_path: Path) -> None:
    port = free_port()
    with process([PY, "server.py", "--host", "0.0.0.0", "--port", str(port)], tmp_path / "open.log") as p:
        wait_http(f"http://127.0.0.1:{port}/healthz", p)
    log = (tmp_path / "open.log").read_text()
    assert log.count("ACCESS CONTROL IS OFF") == 1, log
    assert "/sender?room=demo" in log  # the LAN URL, printed with its QR code
    port = free_port()
    with secured_server(tmp_path, "--host", "0.0.0.0", "--port", str(port)):
        pass
    assert "ACCESS CONTROL IS OFF" not in (tmp_path / "server.log").read_text()


def test_bad_security_options_fail_at_start_in_one_line(tmp_path: Path) -> None:
    for args, env, message in [
        (["--secret", "short"], {}, "at least 32"),
        (["--turn-secret", TURN_SECRET], {}, "needs a turn: url"),
        (["--relay-only"], {}, "needs a TURN server"),
        (["--cert", str(tmp_path / "none.pem")], {}, "--cert and --key go together"),
        (["--cert", str(tmp_path / "none.pem"), "--key", str(tmp_path / "none.key")], {}, "No such file"),
    ]:
        done = subprocess.run([PY, "server.py", "--port", "0", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, env={**child_env(), "SPLITRTC_SECRET": "", "SPLITRTC_TURN_SECRET": "",
                                               "SPLITRTC_ICE_SERVERS": "", **env})
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


# -- the takeover of issue 13, tried against a real session ---------------------------------------------------
def test_takeover_is_refused_while_a_real_session_runs(tmp_path: Path) -> None:
    """A real receiver and sender with their tokens; meanwhile a stranger tries to join the
    room as a receiver with the sender's token, and with a receiver token for another room.
    Both are refused, hear nothing, and the session delivers every frame to the real one."""
    frames = 90
    sender_token = tok("victim", "sender", name="cam")
    with secured_server(tmp_path) as url, \
            process([PY, "-m", "receiver", "--server", url, "--room", "victim", "--workers", "1", "--token",
                     tok("victim", "receiver", name="real-rx")], tmp_path / "rx.log"):
        env = {**child_env(), "SPLITRTC_TOKEN": sender_token}
        tx = subprocess.Popen([PY, "sender.py", "--server", url, "--room", "victim", "--json", "--quiet",
                               "--frames", str(frames), "--fps", "15", "--split", "stage1"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        admin = {"Authorization": f"Bearer {tok('*', 'admin')}"}
        deadline = time.monotonic() + 60
        while json.loads(http(f"{url}/healthz", admin)[2]).get("by_room", {}).get("victim", {}).get("sender") != 1:
            assert tx.poll() is None and time.monotonic() < deadline, tx.communicate()[1][-3000:]
            time.sleep(0.2)

        async def attack() -> list[Client]:
            thief, other = await clients(url, 2)
            acks = [await thief.call("join", {"room": "victim", "role": "receiver", "token": sender_token}),
                    await other.call("join", {"room": "victim", "role": "receiver",
                                              "token": tok("elsewhere", "receiver")})]
            assert [a["ok"] for a in acks] == [False, False], acks
            assert "role_not_allowed" in acks[0]["error"] and "wrong_room" in acks[1]["error"]
            await asyncio.sleep(2.0)  # while frames flow
            for c in (thief, other):
                assert [ev for ev, _ in c.events] == ["error"], c.events
                await c.sio.disconnect()
            return [thief, other]

        running_during_attack = tx.poll() is None
        asyncio.run(attack())
        out, err = tx.communicate(timeout=120)
    assert tx.returncode == 0, err[-3000:]
    assert running_during_attack
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["accounted"] and summary["frames_sent"] > 0 and not summary["errors"]
    assert summary["replies"] + sum(summary["dropped_by_receiver"].values()) == summary["frames_sent"]
    assert summary["replies"] > 0
