"""--cpus: CPU lists parsed or refused with the reason, and a real receiver process pinned."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitcore.process.children import ROOT, process, receiver_args, server
from splitcore.process.cpus import available, parse_cpus, pin

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def test_cpu_lists() -> None:
    assert parse_cpus("0") == {0}
    assert parse_cpus("0,2") == {0, 2}
    assert parse_cpus("1-3,6") == {1, 2, 3, 6}
    assert parse_cpus("4-4") == {4}


@pytest.mark.parametrize("text, why", [("", "bad CPU list"), ("a", "bad CPU list"), ("1-", "bad CPU list"),
                                       ("-1", "bad CPU list"), ("3-1", "end is below the start"),
                                       ("0,,1", "bad CPU list")])
def test_bad_cpu_lists_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cpus(text)


@linux_only
def test_pin_restricts_this_process_and_refuses_missing_cpus() -> None:
    before = available()
    try:
        one = min(before)
        pin({one})
        assert os.sched_getaffinity(0) == {one}
        assert all(os.sched_getaffinity(int(t)) == {one} for t in os.listdir("/proc/self/task"))
    finally:
        pin(before)
    with pytest.raises(ValueError, match="cannot pin"):
        pin({max(before) + 1000})


@pytest.mark.parametrize("program", [["sender.py"], ["-m", "receiver"]])
def test_programs_refuse_a_wrong_cpu_list_before_starting(program: list[str]) -> None:
    p = subprocess.run([sys.executable, *program, "--cpus", "9999"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "--cpus" in p.stderr and "not available" in p.stderr, p.stderr


def _allowed(proc: Path) -> str:
    """Cpus_allowed_list of /proc/PID or /proc/PID/task/TID."""
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return ""


@linux_only
def test_receiver_process_runs_pinned(tmp_path: Path) -> None:
    cpu = str(max(available()))
    with server(tmp_path) as url, process(receiver_args(url, "pinned", "--cpus", cpu), tmp_path / "r.log") as p:
        deadline = time.monotonic() + 30
        proc = Path(f"/proc/{p.pid}")
        while _allowed(proc) != cpu and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert p.poll() is None, (tmp_path / "r.log").read_text()
        assert _allowed(proc) == cpu
        threads = list((proc / "task").iterdir())
        assert threads and all(_allowed(t) == cpu for t in threads)
