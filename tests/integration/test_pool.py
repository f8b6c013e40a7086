"""A receiver pool across two signaling nodes, as real processes: redis-server, two
``server.py --redis`` nodes, two ``python -m receiver --pool`` (one on each node: r1 with two
worker processes, r2 alone) and four ``sender.py --pool`` joining through either node. Every
sender is served, the assignment is spread within one stream of even per worker, and when a
receiver is killed its senders are served by the other (the server reassigns them; the
sender's recovery offers to the new one).
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from splitcore.process.children import PY, ROOT, child_env, free_port, spawn, stop
from tests.integration.redis_nodes import healthz, nodes, redis_server

DEADLINE = 90.0
POOL = "cams"


def assignment(url: str) -> dict[str, list[str]]:
    """Receiver name -> names of the senders it serves, as /healthz tells it."""
    return {r["name"]: sorted(s["name"] for s in r["senders"]) for r in healthz(url).get("pools", {}).get(POOL, [])}


def wait_for(what: str, predicate: Any, procs: list[subprocess.Popen[bytes]], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            assert p.poll() is None, f"{p.args} exited {p.returncode} before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.2)


def test_pool_spread_and_reassigned_when_a_receiver_dies(tmp_path: Path) -> None:
    rport = free_port()
    with redis_server(tmp_path, rport), nodes(tmp_path, rport) as (a, b):
        logs = [open(tmp_path / f"{n}.log", "w") for n in ("r1", "r2")]
        workers = {"r1": 2, "r2": 1}
        receivers = [spawn([PY, "-m", "receiver", "--server", url, "--pool", POOL, "--name", name,
                            "--workers", str(workers[name])], log)
                     for url, name, log in ((a, "r1", logs[0]), (b, "r2", logs[1]))]
        senders: list[subprocess.Popen[bytes]] = []
        try:
            wait_for("two receivers in the pool", lambda: len(assignment(a)) == 2, receivers)
            for i in range(4):
                url = a if i % 2 else b
                with open(tmp_path / f"s{i}.out", "w") as out, open(tmp_path / f"s{i}.err", "w") as err:
                    senders.append(subprocess.Popen(
                        [PY, "sender.py", "--server", url, "--pool", POOL, "--name", f"s{i}", "--json", "--quiet",
                         "--frames", "450", "--fps", "10", "--split", "stage1", "--reconnect-timeout", "60"],
                        cwd=ROOT, stdout=out, stderr=err, env=child_env()))
            wait_for("four senders assigned", lambda: sum(map(len, assignment(b).values())) == 4, receivers + senders)
            before = assignment(a)
            per_worker = sorted(len(v) / workers[k] for k, v in before.items())
            assert per_worker[-1] - per_worker[0] <= 1, before   # spread within one stream of even, per worker
            # the receivers report the load the server assigned by: each serves its senders
            # (r1's parent adds up its two workers' and says how many they are)
            wait_for("every receiver streaming", lambda: all(
                r["load"]["streams"] == len(r["senders"]) and r["load"]["workers"] == workers[r["name"]]
                for r in healthz(b)["pools"][POOL]), receivers + senders)
            victim = max(before, key=lambda name: len(before[name]))
            moved = before[victim]
            survivor = "r2" if victim == "r1" else "r1"
            receivers[0 if victim == "r1" else 1].send_signal(signal.SIGKILL)
            wait_for(f"{victim}'s senders reassigned to {survivor}",
                     lambda: assignment(a) == {survivor: sorted(sum(before.values(), []))},
                     [receivers[1 if victim == "r1" else 0]])
            summaries = []
            for i, p in enumerate(senders):
                try:
                    rc = p.wait(DEADLINE)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"sender s{i} still running after {DEADLINE:.0f}s")
                err = (tmp_path / f"s{i}.err").read_text()
                assert rc == 0, f"s{i} exited {rc}:\n{err[-3000:]}"
                summaries.append(json.loads((tmp_path / f"s{i}.out").read_text().strip().splitlines()[-1]))
        finally:
            stop(senders + receivers)
            for log in logs:
                log.close()
    for i, s in enumerate(summaries):
        assert s["accounted"], s
        assert s["replies"] > 0, s
        if f"s{i}" in moved:   # served by two receivers: the killed one, then the survivor
            assert len(s["receivers"]) == 2, s
            assert s["lost"] + s["replies"] + sum(s["dropped_by_receiver"].values()) > 0
        else:
            assert len(s["receivers"]) == 1, s
    print(f"\nassignment {before}; {victim} killed, {moved} moved to {survivor}; replies per sender "
          f"{[s['replies'] for s in summaries]} of {[s['frames_sent'] for s in summaries]} sent")


def test_least_loaded_order() -> None:
    """The choice itself (signaling.pool), without processes: saturation first, then streams
    (the larger of assigned and reported), CPU, queue, id; excluded receivers never."""
    from signaling.pool import Candidate, Load, least_loaded
    idle, busy = Candidate("a", 0, Load(streams=3, cpu=0.5)), Candidate("b", 1, Load(streams=1, cpu=0.2))
    assert least_loaded([idle, busy]) == "b"                       # 3 reported streams beat 1 assigned
    assert least_loaded([idle, Candidate("c", 3, Load(cpu=0.95))]) == "a"   # saturated goes last
    assert least_loaded([Candidate("x", 2), Candidate("y", 2, Load(queue=1))]) == "x"
    assert least_loaded([Candidate("x", 2), Candidate("y", 2)], exclude={"x"}) == "y"
    assert least_loaded([Candidate("x", 0)], exclude={"x"}) is None
    assert Load.from_app({"load": {"streams": -5, "cpu": float("nan"), "queue": True}}) == Load()
    assert Load.from_app({"senders": 2}) is None
    # compared per worker: 3 streams over 2 workers is less than 2 streams on one
    two, one = Candidate("two", 3, Load(streams=3, cpu=1.2, workers=2)), Candidate("one", 2, Load(streams=2, cpu=0.7))
    assert least_loaded([two, one]) == "two"
    assert not Load(cpu=1.2, queue=12, workers=2).saturated and Load(cpu=1.8, workers=2).saturated
    assert Load(queue=16, workers=2).saturated and Load(cpu=0.9).saturated
    assert least_loaded([Candidate("busy", 0, Load(cpu=1.9, workers=2)), Candidate("z", 5)]) == "z"
    assert Load.from_app({"load": {"workers": 0}}) == Load() and Load.from_app({"load": {"workers": 1e9}}).workers == 1024
