"""A real ``python -m receiver`` under attack, beside a real ``sender.py`` in the same room.

Hostile peers are real aiortc connections made by hand (``RawPeer``), sending frames built
with ``splitcore.wire.frame``: decompression bombs, fragments announcing huge payloads, floods
of garbage, offers that never become a data channel. The receiver must answer what it
refuses, keep its memory (VmHWM), its log and its sockets bounded, drop the attackers, and
keep serving the legitimate sender. Each test prints the figures it measured (``-s``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from splitcore.process.children import PY, ROOT, child_env, free_port, spawn
from splitcore.rtc.peer import description, new_peer_connection
from splitcore.rtc.signaling import SignalingClient
from splitcore.wire import codecs
from splitcore.wire.frame import MAX_ELEMENTS, Codec, Compression, DType, Header, encode, pack_header
from tests.harness import process, receiver_args, sender_args, server

STAGE1 = (1, 32, 16, 16)          # the stage1 split's shape in models/manifest.json
STAGE1_PAYLOAD = 4 * 32 * 16 * 16  # float32 bytes


# ------------------------------------------------------------------------------ helpers


class RawPeer:
    """A sender made by hand: its own signaling client, one aiortc connection, the latent
    channel; answers the receiver's pings (unless ``pong=False``) and keeps every reply."""

    def __init__(self, url: str, room: str, name: str, pong: bool = True) -> None:
        self.sig = SignalingClient(url, room, "sender", name)
        self.pc = new_peer_connection()
        self.replies: list[dict] = []
        self.pong = pong
        self.channel = self.pc.createDataChannel("latent")
        self.channel.on("message", self._on_message)

    def _on_message(self, text: str) -> None:
        msg = json.loads(text)
        if msg["type"] == "ping":
            if self.pong and self.channel.readyState == "open":
                self.channel.send(json.dumps({"type": "pong", "t_ms": msg["t_ms"]}))
        else:
            self.replies.append(msg)

    async def offer(self, sdp: str | None = None, apply_answer: bool = True) -> None:
        """Join and offer (``sdp``: send this instead of our real offer)."""
        async def on_signal(msg: dict) -> None:
            if msg["type"] == "answer" and apply_answer:
                await self.pc.setRemoteDescription(description(msg))
        self.sig.on_signal(on_signal)
        await self.sig.connect()
        receiver = await self.sig.wait_for_peer("receiver", timeout=20)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.sig.signal(receiver["id"], "offer", sdp=sdp or self.pc.localDescription.sdp)

    async def open(self) -> RawPeer:
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        await self.offer()
        await asyncio.wait_for(opened.wait(), 20)
        return self

    def errors(self) -> list[str]:
        return [r["reason"] for r in self.replies if r["type"] == "error"]

    async def close(self) -> None:
        await self.pc.close()
        await self.sig.close()


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]


def udp_sockets(pid: int) -> int:
    """UDP sockets the process holds (ICE binds them per connection)."""
    inodes = set()
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            inodes.add(line.split()[9])
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def wait_log(log: Path, pattern: str, timeout: float, count: int = 1) -> float:
    """Poll ``log`` until ``pattern`` occurs ``count`` times; the time.monotonic() it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, log.read_text())) >= count:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} x{count} not in {log.name} within {timeout}s:\n{log.read_text()[-3000:]}")


def start_sender(url: str, room: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(out, "w") as f:
        return spawn(sender_args(url, room, "--json", "--quiet", "--fps", "30", *extra), f)


def sender_summary(p: subprocess.Popen[bytes], out: Path, timeout: float = 90) -> dict:
    p.wait(timeout)
    text = out.read_text()
    assert p.returncode == 0, text[-3000:]
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def zstd_bomb(declared: int = 1 << 30) -> bytes:
    """One zstd frame that states ``declared`` bytes of content (zeros): about 32 KB."""
    import zstandard
    c = zstandard.ZstdCompressor(level=3).compressobj(size=declared)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(declared // len(chunk))]
    return b"".join(parts) + c.flush()


def frame(seq: int, payload: bytes, split: str = "stage1", shape: tuple[int, ...] = STAGE1,
          compression: Compression = Compression.NONE, codec: Codec = Codec.NONE,
          dtype: DType = DType.FLOAT32, params: bytes = b"") -> bytes:
    (msg,) = encode(Header(seq, 1.0, split, shape, dtype, codec, compression, params=params), payload)
    return msg


def first_fragment(seq: int, payload_len: int, split: str, shape: tuple[int, ...],
                   codec: Codec = Codec.NONE, dtype: DType = DType.FLOAT32, params: bytes = b"") -> bytes:
    """Fragment 0 of 2 of a frame that announces ``payload_len`` bytes, 1 KiB of them here."""
    h = Header(seq, 1.0, split, shape, dtype, codec, Compression.NONE, payload_len, 0, 2, 0, params)
    return pack_header(h) + bytes(1024)


# ------------------------------------------------------------------------------ tests


def test_bombs_and_huge_fragments_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    bomb_z = zstd_bomb()
    bomb_zlib = zlib.compress(bytes(32 << 20), 9)  # 32 MiB of zeros in ~32 KB
    for bomb, comp in ((bomb_z, Compression.ZSTD), (bomb_zlib, Compression.ZLIB)):  # past the gate: the decoder's job
        assert len(bomb) <= codecs.max_payload_len(Header(0, 1.0, "stage1", STAGE1, compression=comp))
    attacks = [  # (message, the reason the receiver must give)
        (frame(1, bomb_z, compression=Compression.ZSTD), "too_large"),
        (frame(2, bomb_zlib, compression=Compression.ZLIB), "too_large"),
        (first_fragment(3, 4 * MAX_ELEMENTS, "stage1", (1, MAX_ELEMENTS)), "shape_mismatch"),
        (first_fragment(4, 4 * MAX_ELEMENTS, "nosuch", (1, MAX_ELEMENTS)), "unknown_split"),
        # the right split and shape, but clip4 needs 4 KiB, not the 33 KB announced
        (first_fragment(5, STAGE1_PAYLOAD, "stage1", STAGE1, Codec.CLIP4, DType.UINT4, bytes(8)), "too_large"),
    ]
    rounds, peers = 4, 6
    with server(tmp_path) as url, process(receiver_args(url, "bombs"), tmp_path / "r.log") as rp:
        legit = start_sender(url, "bombs", tmp_path / "s.out", "--frames", "300")
        wait_log(tmp_path / "r.log", "channel 'latent' open", 60)
        time.sleep(1.0)
        rss_before = vm(rp.pid, "VmRSS")

        async def attack() -> list[RawPeer]:
            raw = [await RawPeer(url, "bombs", f"attacker{i}").open() for i in range(peers)]
            for _ in range(rounds):
                for p in raw:
                    for msg, _reason in attacks:
                        p.channel.send(msg)
                    await asyncio.sleep(0.2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(len(p.replies) < rounds * len(attacks) for p in raw):
                await asyncio.sleep(0.1)
            for p in raw:
                await p.close()
            return raw
        raw = asyncio.run(attack())
        hwm_after = vm(rp.pid, "VmHWM")
        summary = sender_summary(legit, tmp_path / "s.out")
        assert rp.poll() is None, "receiver died"
    bound = 150 << 20
    print(f"\nreceiver RSS before the attack {rss_before / 2**20:.1f} MiB, peak after {hwm_after / 2**20:.1f} MiB "
          f"({peers} attackers x {rounds} rounds of {len(attacks)} hostile frames); legitimate sender "
          f"{summary['replies']}/{summary['frames_sent']} replies, p99 {summary['latency_p99_ms']} ms")
    for p in raw:
        assert p.errors() == [reason for _ in range(rounds) for _m, reason in attacks], p.replies
    assert hwm_after - rss_before < bound, "the receiver's memory grew with what attackers declared"
    assert summary["replies"] >= 0.95 * summary["frames_sent"], summary
    log = (tmp_path / "r.log").read_text()
    assert "Traceback" not in log


def test_malformed_flood_is_summarised_and_the_flooder_disconnected(tmp_path: Path) -> None:
    with server(tmp_path) as url, process(receiver_args(url, "flood"), tmp_path / "r.log") as rp:
        legit = start_sender(url, "flood", tmp_path / "s.out", "--frames", "300")
        wait_log(tmp_path / "r.log", "channel 'latent' open", 60)

        async def flood() -> tuple[int, float, RawPeer]:
            p = await RawPeer(url, "flood", "flooder").open()
            closed = asyncio.Event()
            p.channel.on("close", closed.set)
            started, sent = time.monotonic(), 0
            while not closed.is_set() and time.monotonic() - started < 30:
                if p.channel.readyState != "open":
                    break
                if p.channel.bufferedAmount < 256 * 1024:
                    for _ in range(100):
                        p.channel.send(b"\x00" * 7)
                    sent += 100
                await asyncio.sleep(0)
            await asyncio.wait_for(closed.wait(), 10)
            took = time.monotonic() - started
            await p.close()
            return sent, took, p
        sent, took, peer = asyncio.run(flood())
        summary = sender_summary(legit, tmp_path / "s.out")
        assert rp.poll() is None, "receiver died"
    log = (tmp_path / "r.log").read_text()
    flooder_lines = [line for line in log.splitlines() if "malformed" in line]
    print(f"\nflood: {sent} malformed messages sent, disconnected after {took:.2f} s; {len(peer.errors())} "
          f"errors answered; receiver log {len(log.encode())} B in all, {len(flooder_lines)} lines about "
          f"malformed messages; legitimate sender {summary['replies']}/{summary['frames_sent']} replies")
    assert sent > 300 and set(peer.errors()) == {"bad_magic"}
    assert len(flooder_lines) <= 6, flooder_lines
    assert len(log.encode()) < 64 * 1024
    assert re.search(r"closing \(malformed messages faster than", log), log[-3000:]
    assert summary["replies"] >= 0.95 * summary["frames_sent"], summary


def test_unfinished_and_garbage_offers_are_torn_down(tmp_path: Path) -> None:
    unfinished, garbage, cap = 12, 6, 10
    with server(tmp_path) as url:
        args = receiver_args(url, "offers", "--offer-timeout", "3", "--max-sessions", str(cap), "--summary")
        with process(args, tmp_path / "r.log") as rp:
            wait_log(tmp_path / "r.log", "joined room offers", 30)
            before = udp_sockets(rp.pid)

            async def offers() -> tuple[int, int, float]:
                peers = [RawPeer(url, "offers", f"g{i}") for i in range(garbage)]
                for i, p in enumerate(peers):
                    # aiortc refuses the first kind at once; the second it answers (no media)
                    await p.offer(sdp=["v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
                                       "v=0\r\nthis is not SDP\r\n"][i % 2], apply_answer=False)
                await asyncio.sleep(0.5)  # each refused and forgotten before the next offers
                half = [RawPeer(url, "offers", f"u{i}") for i in range(unfinished)]
                for p in half:
                    await p.offer(apply_answer=False)  # never connects
                await asyncio.sleep(1.0)
                held = udp_sockets(rp.pid)
                t0 = time.monotonic()
                while udp_sockets(rp.pid) > before and time.monotonic() - t0 < 20:
                    await asyncio.sleep(0.1)
                released = time.monotonic() - t0
                after = udp_sockets(rp.pid)
                for p in peers + half:
                    await p.close()
                return held, after, released
            held, after, released = asyncio.run(offers())
            assert rp.poll() is None, "receiver died"
            rp.send_signal(signal.SIGINT)
            rp.wait(20)
    log = (tmp_path / "r.log").read_text()
    print(f"\noffers: {garbage} garbage + {unfinished} unfinished (cap {cap}): UDP sockets {before} -> {held} -> "
          f"{after}, released {released:.1f} s after the last offer settled")
    assert held > before and after == before
    assert len(re.findall(r"no data channel within 3 s", log)) == cap
    assert "already serving 10 sessions" in log and "cannot answer its offer" in log
    assert "Traceback" not in log


def test_killed_sender_is_cleaned_up_within_seconds(tmp_path: Path) -> None:
    with server(tmp_path) as url, process(receiver_args(url, "dead"), tmp_path / "r.log") as rp:
        legit = start_sender(url, "dead", tmp_path / "s.out")
        wait_log(tmp_path / "r.log", "channel 'latent' open", 60)
        time.sleep(1.0)
        legit.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        legit.wait()
        gone = wait_log(tmp_path / "r.log", r"closing \(nothing received for", 30)
        assert rp.poll() is None
    print(f"\ndead sender detected and cleaned up {gone - killed:.2f} s after SIGKILL")
    assert gone - killed < 10


def test_sigint_closes_sessions_and_exits_zero(tmp_path: Path) -> None:
    with server(tmp_path) as url:
        with open(tmp_path / "r.out", "w") as out:
            rp = subprocess.Popen(receiver_args(url, "stop", "--summary"), cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, env=child_env())
            try:
                legit = start_sender(url, "stop", tmp_path / "s.out")
                wait_log(tmp_path / "r.out", "channel 'latent' open", 60)
                time.sleep(1.0)
                t0 = time.monotonic()
                rp.send_signal(signal.SIGINT)
                rc = rp.wait(20)
                took = time.monotonic() - t0
            finally:
                for p in (rp, legit):
                    if p.poll() is None:
                        p.kill()
                        p.wait()
    text = (tmp_path / "r.out").read_text()
    print(f"\nSIGINT with one streaming sender: exit {rc} after {took:.2f} s")
    assert rc == 0, text[-3000:]
    summary = json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
    assert len(summary) == 1 and next(iter(summary.values()))["replied"] > 0
    assert "receiver shutting down" in text and "Traceback" not in text
    assert took < 10


def test_unreachable_server_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([PY, "-m", "receiver", "--server", url, "--log-level", "error"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("receiver: cannot reach the signaling server"), p.stderr


@pytest.mark.parametrize("flag", ["--max-sessions=0", "--peer-timeout=-1"])
def test_bad_limits_are_refused_at_parse_time(flag: str) -> None:
    p = subprocess.run([PY, "-m", "receiver", flag], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=child_env())
    assert p.returncode == 2 and "must be > 0" in p.stderr, p.stderr


def test_server_restart_keeps_sessions_and_new_senders_find_the_receiver(tmp_path: Path) -> None:
    from splitcore.process.children import wait_http
    from tests.integration.test_receiver import good_frame
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_args = [PY, "server.py", "--port", str(port)]
    msg, label = good_frame(7)

    async def newcomer() -> list[dict]:
        p = await RawPeer(url, "restart", "newcomer").open()
        p.channel.send(msg)
        deadline = time.monotonic() + 20
        while not p.replies and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await p.close()
        return p.replies

    with contextlib.ExitStack() as stack:
        first = stack.enter_context(process(server_args, tmp_path / "server1.log"))
        wait_http(f"{url}/healthz", first)
        rp = stack.enter_context(process(receiver_args(url, "restart"), tmp_path / "r.log"))
        legit = start_sender(url, "restart", tmp_path / "s.out", "--frames", "360")
        wait_log(tmp_path / "r.log", "channel 'latent' open", 60)
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)  # the stream goes on peer to peer meanwhile
        first.wait()
        time.sleep(2.0)
        restarted = time.monotonic()
        second = stack.enter_context(process(server_args, tmp_path / "server2.log"))
        wait_http(f"{url}/healthz", second)
        back = wait_log(tmp_path / "r.log", "back in room restart", 30)
        replies = asyncio.run(newcomer())
        summary = sender_summary(legit, tmp_path / "s.out")
        assert rp.poll() is None, "receiver died"
    print(f"\nserver restart: receiver back in its room {back - restarted:.2f} s after the server was started "
          f"again; legitimate sender {summary['replies']}/{summary['frames_sent']} replies across the outage, "
          f"dropped by sender {summary['dropped_by_sender']}, by receiver {summary['dropped_by_receiver']}")
    assert [(r["type"], r["seq"], r["label"]) for r in replies] == [("reply", 7, label)]
    assert summary["replies"] >= 0.95 * summary["frames_sent"], summary
