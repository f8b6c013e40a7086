"""`python server.py` as a process: stopped by one SIGINT/SIGTERM, refused a taken port."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from splitcore.process.children import PY, ROOT, child_env, free_port, spawn, stop, wait_http
from splitcore.rtc.signaling import SignalingClient

DEADLINE = 30.0  # generous; the 3-s shutdown is measured, not asserted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_closes_clients_and_exits_0(tmp_path: Path, sig: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "w") as out:
        server = spawn([PY, "server.py", "--port", str(port)], out)
        try:
            wait_http(f"{url}/healthz", server)

            async def scenario() -> None:
                peers = [SignalingClient(url, "lab", role, give_up_after=1.0) for role in ("sender", "receiver")]
                for p in peers:
                    await p.connect()
                server.send_signal(sig)
                rc = await asyncio.get_running_loop().run_in_executor(None, server.wait, DEADLINE)
                assert rc == 0
                for p in peers:  # the clients were told, and went on to reconnect
                    assert p.state in ("reconnecting", "lost")
                    await p.close()
            asyncio.run(scenario())
        finally:
            stop([server], grace=5)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([PY, "server.py", "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                           timeout=DEADLINE, env=child_env())
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [f"server.py: port {port} on 127.0.0.1 is already in use (another SplitRTC "
                                     "server or demo still running?): stop it or choose another with --port"]
