"""Two network namespaces joined by one veth pair, with a ``tc`` tbf rate limit on the device side.

    device ns  eth0 10.203.0.1/24  <--- veth --->  eth0 10.203.0.2/24  server ns
               tbf: device -> server rate-limited (netem is not in these kernels; tbf is)

For ``bench.adaptive`` and ``tests/integration/test_adaptive.py``: the sender runs in the
device namespace, server.py and the receiver in the server namespace, and ``set_rate`` changes
the cap while they run. Needs root; ``unavailable_reason`` says why not (for a skip). Every
process started here and both namespaces are removed on exit, and namespaces left by a killed
run (their creator's pid is gone) at the next start.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from splitcore.process.children import ROOT

PREFIX = "srtcab"
DEVICE_IP, SERVER_IP = "10.203.0.1", "10.203.0.2"
BURST, QUEUE_LATENCY = "32kbit", "50ms"
_NS_RE = re.compile(rf"^{PREFIX}(\d+)-(dev|srv)$")


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns add, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y iproute2)"
    return None


def _run(*args: str) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def remove_stale() -> None:
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m and not Path(f"/proc/{m[1]}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Pair:
    """The two namespaces; a context manager that always cleans up."""

    def __init__(self, rate_mbit: float) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.device, self.server = f"{tag}-dev", f"{tag}-srv"
        self.rate_mbit = rate_mbit
        self._procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    def __enter__(self) -> Pair:
        remove_stale()
        try:
            for ns in (self.device, self.server):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "add", "name", "srtcab0", "netns", self.device, "type", "veth",
                 "peer", "name", "srtcab1", "netns", self.server)
            for ns, ifc, ip in ((self.device, "srtcab0", DEVICE_IP), (self.server, "srtcab1", SERVER_IP)):
                _run("ip", "-n", ns, "link", "set", ifc, "name", "eth0")
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "netns", "exec", self.device, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
                 *self._tbf(self.rate_mbit))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _tbf(rate_mbit: float) -> list[str]:
        return ["rate", f"{int(rate_mbit * 1000)}kbit", "burst", BURST, "latency", QUEUE_LATENCY]

    def set_rate(self, rate_mbit: float) -> None:
        """Change the device -> server cap now (tc qdisc change: the queue is kept)."""
        _run("ip", "netns", "exec", self.device, "tc", "qdisc", "change", "dev", "eth0", "root", "tbf",
             *self._tbf(rate_mbit))
        self.rate_mbit = rate_mbit

    def qdisc_stats(self) -> str:
        return _run("ip", "netns", "exec", self.device, "tc", "-s", "qdisc", "show", "dev", "eth0")

    def spawn(self, ns: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        with open(log, "wb") as out:
            p = subprocess.Popen(["ip", "netns", "exec", ns, *args], cwd=ROOT, stdout=out,
                                 stderr=subprocess.STDOUT, env=env)
        self._procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self._procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs.clear()
        for ns in reversed(self._made):
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # started inside our namespace, by us
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()
