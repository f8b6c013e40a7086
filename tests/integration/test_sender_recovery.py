"""The sender across faults, as real processes: a receiver killed and replaced, no receiver at
all, Ctrl-C, and the signaling server restarted. In every case each frame is accounted for,
the exit code says whether the run did what was asked, and a failure is one line on stderr.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from splitcore.process.children import child_env, spawn, stop, wait_http
from tests.harness import PY, ROOT, free_port, process, receiver_args, sender_args, server

DEADLINE = 90.0  # generous: "it happens at all" on a loaded 2-core machine


class Sender:
    """``python sender.py --json`` in the background, its output in files."""

    def __init__(self, tmp: Path, url: str, room: str, *extra: str) -> None:
        self.log, self.out, self.err = tmp / f"{room}.frames.jsonl", tmp / f"{room}.out", tmp / f"{room}.err"
        args = sender_args(url, room, "--json", "--quiet", "--log", str(self.log), "--log-level", "info", *extra)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, env=child_env())

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.endswith("}")]

    def replies(self) -> int:
        return sum("label" in r for r in self.records())

    def wait_until(self, what: str, predicate: Any, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"sender exited {self.proc.returncode} before {what}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s:\n{self.stderr()}"
            time.sleep(0.1)

    def finish(self, timeout: float = DEADLINE) -> tuple[int, dict[str, Any] | None]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"sender still running after {timeout:.0f}s:\n{self.stderr()}")
        lines = self.out.read_text().strip().splitlines()
        return rc, (json.loads(lines[-1]) if lines else None)

    def stderr(self) -> str:
        return self.err.read_text()[-4000:]


def balanced(s: dict[str, Any]) -> None:
    """The books, from the summary's own numbers (not only its ``accounted`` flag)."""
    settled = s["replies"] + sum(s["dropped_by_receiver"].values()) + sum(s["errors"].values()) + s["lost"]
    assert settled + s["in_flight_at_exit"] == s["frames_sent"], s
    assert s["frames_sent"] + sum(s["dropped_by_sender"].values()) == s["frames_captured"], s
    assert s["accounted"], s


def test_receiver_killed_and_replaced(tmp_path: Path) -> None:
    with server(tmp_path) as url:
        first = spawn(receiver_args(url, "kill", "--name", "first"), open(tmp_path / "r1.log", "w"))
        try:
            sender = Sender(tmp_path, url, "kill", "--frames", "240", "--reconnect-timeout", "60")
            sender.wait_until("30 replies", lambda: sender.replies() >= 30)
            first.send_signal(signal.SIGKILL)
            first.wait()
            sender.wait_until("the loss", lambda: any(r.get("status") == "lost" for r in sender.records()))
            replies_before = sender.replies()
            with process(receiver_args(url, "kill", "--name", "second"), tmp_path / "r2.log"):
                sender.wait_until("replies from the new receiver", lambda: sender.replies() > replies_before + 10)
                rc, s = sender.finish()
        finally:
            stop([first])
    assert rc == 0, sender.stderr()
    assert s is not None
    balanced(s)
    assert s["frames_sent"] == 240 and s["lost"] >= 1 and s["dropped_by_sender"].get("no_receiver", 0) >= 1, s
    (outage,) = s["outages"]
    assert outage["cause"] in ("receiver_silent", "channel_closed", "connection_failed"), outage
    assert outage["end"] is not None and outage["end"] >= outage["start"], outage
    assert outage["frames_dropped"] >= s["dropped_by_sender"]["no_receiver"] and outage["frames_lost"] == s["lost"]
    assert len(s["receivers"]) == 2 and outage["new_receiver"] == s["receivers"][1] == s["receiver"]
    # replies resumed: some answered frame was sent after the last one lost
    records = sender.records()
    last_lost = max(i for i, r in enumerate(records) if r.get("status") == "lost")
    assert any("label" in r for r in records[last_lost:])


def test_no_receiver_ever_gives_up_with_one_line(tmp_path: Path) -> None:
    with server(tmp_path) as url:
        start = time.monotonic()
        p = subprocess.run(sender_args(url, "empty", "--reconnect-timeout", "3", "--quiet"), cwd=ROOT,
                           capture_output=True, text=True, timeout=DEADLINE, env=child_env())
        took = time.monotonic() - start
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == ["sender: no receiver joined room empty within 3s"], p.stderr
    assert took < 3 + 30  # model loading and joining included; generous for a loaded machine


def test_sigint_mid_stream_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    with server(tmp_path) as url, process(receiver_args(url, "int"), tmp_path / "r.log"):
        sender = Sender(tmp_path, url, "int")
        sender.wait_until("30 replies", lambda: sender.replies() >= 30)
        sender.proc.send_signal(signal.SIGINT)
        sent_at = time.monotonic()
        rc, s = sender.finish(timeout=30)
        took = time.monotonic() - sent_at
    assert rc == 0, sender.stderr()
    assert s is not None and s["interrupted"] and s["replies"] >= 30, s
    balanced(s)
    assert s["in_flight_at_exit"] == 0 and not s["outages"], s
    assert "Traceback" not in sender.stderr()
    assert took < 30


def test_second_sigint_exits_at_once(tmp_path: Path) -> None:
    """The second Ctrl-C gives up even while the first is still waiting (here: for a receiver)."""
    with server(tmp_path) as url:
        sender = Sender(tmp_path, url, "twice", "--reconnect-timeout", "60")
        sender.wait_until("joining", lambda: "joined room twice" in sender.err.read_text())
        sender.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        sender.proc.send_signal(signal.SIGINT)
        rc, _ = sender.finish(timeout=30)
    assert rc in (0, 130), sender.stderr()
    assert "Traceback" not in sender.stderr()


def _signaling_reconnects() -> bool:
    from splitcore.rtc.signaling import SignalingClient
    return hasattr(SignalingClient, "until_lost")  # the API that came with reconnection


@contextmanager
def server_on(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with process([PY, "server.py", "--port", str(port)], log) as p:
        wait_http(f"http://127.0.0.1:{port}/healthz", p)
        yield p


@pytest.mark.skipif(not _signaling_reconnects(), reason="SignalingClient does not reconnect yet "
                    "(splitcore/rtc/signaling.py: reconnection with backoff and rejoin)")
def test_signaling_server_restart_does_not_stop_the_stream(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with server_on(port, tmp_path / "server1.log") as first:
        rp = spawn(receiver_args(url, "restart"), open(tmp_path / "r.log", "w"))
        try:
            sender = Sender(tmp_path, url, "restart", "--frames", "300")
            sender.wait_until("30 replies", lambda: sender.replies() >= 30)
            first.kill()
            first.wait()
            replies_before = sender.replies()
            # the data channel needs no server: replies keep coming while it is down
            sender.wait_until("replies without a server", lambda: sender.replies() > replies_before + 30)
            with server_on(port, tmp_path / "server2.log"):
                sender.wait_until("the rejoin", lambda: sender.err.read_text().count("joined room restart") >= 2)
                rc, s = sender.finish()
        finally:
            stop([rp])
    assert rc == 0, sender.stderr()
    assert s is not None and s["frames_sent"] == 300 and not s["outages"], s
    balanced(s)
