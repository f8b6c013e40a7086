"""SignalingClient against a real `python server.py` that dies and comes back.

The server is a real child process on a fixed port; it is killed (SIGKILL: no goodbye to
anyone) and started again on the same port, as an operator restarting it would.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import socketio
from aiohttp import web

from splitcore.process.children import PY, ROOT, child_env, free_port, spawn, stop, wait_http
from splitcore.rtc.signaling import SignalingClient, SignalingError

DEADLINE = 30.0  # "it happens at all": generous on a shared, noisy machine


@contextmanager
def server_process(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "a") as out:
        p = spawn([PY, "server.py", "--port", str(port)], out)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", p)
            yield p
        finally:
            stop([p], grace=5)


def drain(client: SignalingClient) -> list[tuple[str, dict]]:
    events = []
    while not client.peer_events.empty():
        events.append(client.peer_events.get_nowait())
    return events


def test_clients_rejoin_after_the_server_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        receiver = SignalingClient(url, "lab", "receiver", "r1", backoff=(0.1, 1.0))
        sender = SignalingClient(url, "lab", "sender", "s1", backoff=(0.1, 1.0), call_timeout=60)
        rejoined_ids: list[str] = []

        async def on_rejoined(new_id: str) -> None:
            rejoined_ids.append(new_id)
        receiver.on_rejoined(on_rejoined)
        try:
            with server_process(port, tmp_path / "server.log") as first:
                await receiver.connect()
                await sender.connect()
                assert (await sender.wait_for_peer("receiver", "r1", timeout=DEADLINE))["id"] == receiver.id
                old_receiver, old_sender = receiver.id, sender.id
                first.kill()  # the stop() of the block then finds it dead
                first.wait()
                await asyncio.wait_for(_until(lambda: sender.state == "reconnecting"), DEADLINE)
                # during the outage, signal() fails at once rather than after call_timeout (60 s)
                with pytest.raises(SignalingError, match="reconnecting"):
                    await asyncio.wait_for(sender.signal(old_receiver, "offer", sdp="v=0"), DEADLINE)
                drain(receiver)

            with server_process(port, tmp_path / "server.log"):
                new_receiver = await receiver.wait_joined(DEADLINE)
                new_sender = await sender.wait_joined(DEADLINE)
                assert new_receiver != old_receiver and new_sender != old_sender
                assert receiver.rejoins == sender.rejoins == 1 and receiver.rejoined.is_set()
                # the peer lists are refreshed: old ids gone, new ones in
                found = await sender.wait_for_peer("receiver", "r1", timeout=DEADLINE)
                assert found["id"] == new_receiver and old_receiver not in sender.peers
                await asyncio.wait_for(_until(lambda: new_sender in receiver.peers), DEADLINE)
                assert old_sender not in receiver.peers
                kinds = [(k, p.get("id")) for k, p in drain(receiver)]
                assert ("gone", old_sender) in kinds and ("rejoined", new_receiver) in kinds
                await asyncio.wait_for(_until(lambda: rejoined_ids == [new_receiver]), DEADLINE)

                # a client joining after the restart sees the rejoined receiver
                late = SignalingClient(url, "lab", "sender", "s2")
                await late.connect()
                try:
                    assert (await late.wait_for_peer("receiver", timeout=DEADLINE))["id"] == new_receiver
                finally:
                    await late.close()
                # and relaying works again through the new ids
                got: asyncio.Queue[dict] = asyncio.Queue()

                async def on_signal(msg: dict) -> None:
                    got.put_nowait(msg)
                receiver.on_signal(on_signal)
                await sender.signal(new_receiver, "offer", sdp="v=0\r\n")
                msg = await asyncio.wait_for(got.get(), DEADLINE)
                assert msg["from"] == new_sender and msg["type"] == "offer"
        finally:
            await receiver.close()
            await sender.close()
        assert receiver.state == "closed"
    asyncio.run(scenario())


def test_the_client_gives_up_after_the_configured_time(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> None:
        client = SignalingClient(f"http://127.0.0.1:{port}", "lab", "sender", give_up_after=1.0,
                                 backoff=(0.1, 0.5))
        try:
            with server_process(port, tmp_path / "server.log") as p:
                await client.connect()
                p.kill()
                p.wait()
                with pytest.raises(SignalingError, match="giving up"):
                    await asyncio.wait_for(client.until_lost(), DEADLINE)
            assert client.state == "lost" and client.error is not None
            assert ("lost", {"error": str(client.error)}) in drain(client)
            with pytest.raises(SignalingError, match="giving up"):
                await client.wait_for_peer("receiver", timeout=DEADLINE)
            with pytest.raises(SignalingError, match="lost"):
                await client.signal("someone", "offer", sdp="v=0")
        finally:
            await client.close()
        assert client.state == "lost"  # close() after giving up keeps the reason
    asyncio.run(scenario())


def test_unreachable_server_is_one_clear_error_without_aiohttp_noise() -> None:
    """In a child process, so that what aiohttp prints at garbage collection is seen."""
    port = free_port()
    code = f"""
import asyncio, gc, signal
from splitcore.rtc.signaling import SignalingClient, SignalingError
async def main():
    client = SignalingClient("http://127.0.0.1:{port}", "lab", "sender")
    before = signal.getsignal(signal.SIGINT)
    try:
        await client.connect(timeout=5)
    except SignalingError as exc:
        print("ERROR", exc)
    # python-engineio must not have taken over SIGINT (handle_sigint=False)
    print("SIGINT", signal.getsignal(signal.SIGINT) is before)
asyncio.run(main())
gc.collect()
"""
    p = subprocess.run([sys.executable, "-X", "dev", "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=child_env())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"ERROR cannot reach the signaling server at http://127.0.0.1:{port}: ")
    assert "Connect call failed" in lines[0] or "refused" in lines[0].lower()
    assert lines[1] == "SIGINT True"
    assert "Unclosed" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_a_connected_client_leaves_sigint_alone() -> None:
    async def scenario() -> None:
        port = free_port()
        app = web.Application()
        sio = socketio.AsyncServer(async_mode="aiohttp")
        sio.attach(app)

        async def join(sid: str, data: dict) -> dict:
            return {"ok": True, "id": sid, "peers": []}
        sio.on("join", join)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = SignalingClient(f"http://127.0.0.1:{port}", "lab", "sender")
        try:
            before = signal.getsignal(signal.SIGINT)
            await client.connect()
            assert signal.getsignal(signal.SIGINT) is before
        finally:
            await client.close()
            await runner.cleanup()
    asyncio.run(scenario())


def test_a_join_the_server_does_not_answer_is_a_signaling_error() -> None:
    """A busy (here: stuck) server: the join times out as SignalingError, nothing leaks."""
    async def scenario() -> None:
        port = free_port()
        app = web.Application()
        sio = socketio.AsyncServer(async_mode="aiohttp")
        sio.attach(app)

        async def join(sid: str, data: dict) -> dict:
            await asyncio.sleep(30)
            return {"ok": True, "id": sid}
        sio.on("join", join)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = SignalingClient(f"http://127.0.0.1:{port}", "lab", "sender")
        try:
            with pytest.raises(SignalingError, match="did not answer join within 1s"):
                await client.connect(timeout=1)
            assert client.state == "new" and not client.sio.connected
        finally:
            await client.close()
            await runner.cleanup()
    asyncio.run(scenario())


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.02)
