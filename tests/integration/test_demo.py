"""demo.py as a user runs it: started, then stopped by SIGTERM; refused when its port is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from splitcore.process.children import PY, ROOT, child_env, free_port, stop

DEADLINE = 60.0  # "it happens at all"; the 3-s promise is measured, not asserted


def children_of(pid: int) -> list[int]:
    """Direct children, from /proc (no psutil)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_stops_the_demo_and_every_child(tmp_path: Path) -> None:
    port = free_port()
    out = open(tmp_path / "demo.log", "w+")
    demo = subprocess.Popen([PY, "demo.py", "--port", str(port), "--room", "demo-test"], cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, env=child_env())
    try:
        deadline = time.monotonic() + DEADLINE
        while "SplitRTC is running" not in (tmp_path / "demo.log").read_text():
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.2)
        kids = children_of(demo.pid)
        assert len(kids) == 3, kids  # server, receiver, sender
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(DEADLINE) == 0
        gone_by = time.monotonic() + 10
        while any(alive(k) for k in kids) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not [k for k in kids if alive(k)], "a child outlived the demo"
        assert port_free(port), "port still held"
    finally:
        stop([demo], grace=5)
        for k in children_of(demo.pid):
            os.kill(k, signal.SIGKILL)
        out.close()


def test_a_port_in_use_is_one_line_and_nothing_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([PY, "demo.py", "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                           timeout=DEADLINE, env=child_env())
    assert p.returncode != 0
    assert p.stdout == "" and "SplitRTC is running" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is already in use" in lines[0], p.stderr
