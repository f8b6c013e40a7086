"""``python -m receiver --workers N`` as real processes: senders spread over the workers and
all served, a killed worker's senders served again through their own recovery, Ctrl-C
stops the whole pool; batched tails give the logits of unbatched ones; compact replies are
accounted like full ones."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from receiver.engine import TailEngine
from splitcore.process.children import child_env
from splitcore.process.cpus import available, parse_cpus
from splitcore.runtime.models import Manifest
from tests.harness import ROOT, receiver_args, sender_args, server

DEADLINE = 90.0  # generous: "it happens at all" on a loaded 2-core machine
READY = re.compile(r"(\d+) workers ready \(pids ([\d, ]+)\)")


class Pool:
    """``python -m receiver --workers N --summary`` with its stderr in a file."""

    def __init__(self, tmp: Path, url: str, room: str, workers: int, *extra: str) -> None:
        self.err, self.out = tmp / f"{room}.receiver.log", tmp / f"{room}.receiver.out"
        with open(self.err, "w") as err, open(self.out, "w") as out:
            self.proc = subprocess.Popen(receiver_args(url, room, "--workers", str(workers), "--summary", *extra),
                                         cwd=ROOT, stdout=out, stderr=err, env=child_env())

    def log(self) -> str:
        return self.err.read_text()

    def wait_for(self, what: str, predicate: Callable[[str], bool], timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.log()):
            assert self.proc.poll() is None, f"receiver exited {self.proc.returncode} before {what}:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s:\n{self.log()[-4000:]}"
            time.sleep(0.1)

    def pids(self) -> list[int]:
        m = READY.search(self.log())
        assert m, self.log()[-4000:]
        return [int(p) for p in m.group(2).split(",")]

    def served_by(self) -> Counter[str]:
        """Sessions answered, by worker ([w0], [w1], ...), from the workers' own log lines."""
        return Counter(re.findall(r"receiver\.service\[(w\d+)\]: peer \S+: answered offer", self.log()))

    def stop(self) -> tuple[float, dict]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"receiver still running 20 s after SIGINT:\n{self.log()[-4000:]}") from None
        took = time.monotonic() - t0
        assert self.proc.returncode == 0, self.log()[-4000:]
        return took, json.loads(self.out.read_text().strip().splitlines()[-1])


def senders(tmp: Path, url: str, room: str, n: int, *extra: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        with open(tmp / f"{room}.s{i}.out", "w") as out, open(tmp / f"{room}.s{i}.err", "w") as err:
            procs.append(subprocess.Popen(sender_args(url, room, "--json", "--quiet", "--name", f"s{i}", *extra),
                                          cwd=ROOT, stdout=out, stderr=err, env=child_env()))
    return procs


def finish(tmp: Path, room: str, procs: list[subprocess.Popen[bytes]]) -> list[dict]:
    out = []
    for i, p in enumerate(procs):
        try:
            rc = p.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"sender {i} still running") from None
        err = (tmp / f"{room}.s{i}.err").read_text()[-3000:]
        assert rc == 0, f"sender {i} exited {rc}:\n{err}"
        out.append(json.loads((tmp / f"{room}.s{i}.out").read_text().strip().splitlines()[-1]))
    return out


def _allowed(pid: int) -> set[int]:
    """The CPUs /proc says ``pid`` may run on."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpus(line.split(":", 1)[1].strip())
    return set()


def test_two_workers_serve_every_sender_spread_evenly_and_stop_on_ctrl_c(tmp_path: Path) -> None:
    cpus = sorted(available())[:2]
    pin = ["--cpus", ",".join(map(str, cpus))] if len(cpus) == 2 else []   # one core each, when there are two
    with server(tmp_path) as url:
        pool = Pool(tmp_path, url, "spread", 2, *pin)
        pool.wait_for("workers ready", lambda log: "joined room spread" in log)
        assert len(pool.pids()) == 2
        if pin:
            assert sorted(_allowed(pid) for pid in pool.pids()) == [{cpus[0]}, {cpus[1]}], pool.log()[-4000:]
        procs = senders(tmp_path, url, "spread", 4, "--frames", "60", "--split", "features", "--codec", "clip4+zlib")
        results = finish(tmp_path, "spread", procs)
        for r in results:
            assert r["accounted"] and r["lost"] == 0 and r["replies"] > 0, r
            assert r["replies"] + sum(r["dropped_by_receiver"].values()) == r["frames_sent"], r
        by_worker = pool.served_by()
        assert set(by_worker) == {"w0", "w1"}, pool.log()[-4000:]
        assert max(by_worker.values()) - min(by_worker.values()) <= 1, by_worker
        took, summary = pool.stop()
        assert took < 3.0 + 1.0, took  # 3 s is the target; 1 s for a loaded machine's scheduling
        for pid in pool.pids():
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
        # the pool's summary adds up every worker's sessions, one per sender
        assert sum(s["replied"] for s in summary.values()) == sum(r["replies"] for r in results)
        assert len([k for k in summary if k != "(earlier)"]) == 4


def test_a_killed_workers_senders_are_served_again(tmp_path: Path) -> None:
    with server(tmp_path) as url:
        pool = Pool(tmp_path, url, "kill", 2)
        pool.wait_for("workers ready", lambda log: "joined room kill" in log)
        pids = pool.pids()
        procs = senders(tmp_path, url, "kill", 2, "--frames", "900", "--split", "features", "--codec", "clip4+zlib")
        pool.wait_for("both senders served", lambda log: len(re.findall(r"answered offer", log)) >= 2)
        assert set(pool.served_by()) == {"w0", "w1"}
        time.sleep(2)
        os.kill(pids[0], signal.SIGKILL)
        pool.wait_for("the death reported", lambda log: f"worker 0 (pid {pids[0]}) died" in log)
        pool.wait_for("the lost sender served again", lambda log: len(re.findall(r"answered offer", log)) >= 3)
        results = finish(tmp_path, "kill", procs)
        assert all(r["accounted"] for r in results), results
        hit = [r for r in results if r["outages"]]
        assert len(hit) == 1, [r["outages"] for r in results]  # the other worker's sender saw none
        assert len(hit[0]["receivers"]) == 2, hit[0]  # it re-offered, to the pool's new id
        # a worker answered the re-offer after the death; every sender got replies
        log = pool.log()
        after = log[log.index("died with exit status"):]
        assert re.search(r"receiver\.service\[w\d\]: peer \S+: answered offer", after), after[-3000:]
        for r in results:
            assert r["replies"] > 0
        took, summary = pool.stop()
        assert summary


def test_batched_tails_give_exactly_the_logits_of_single_runs() -> None:
    manifest = Manifest.load()
    engine = TailEngine(manifest, max_batch=8)
    rng = np.random.default_rng(7)

    async def main() -> None:
        for split, point in manifest.splits.items():
            latents = [rng.standard_normal(tuple(point.shape)).astype(np.float32) for _ in range(12)]
            single = [await engine.infer(split, x) for x in latents]
            jobs_before = engine.stats.jobs
            batched = await asyncio.gather(*(engine.submit(split, x) for x in latents))
            assert engine.stats.jobs - jobs_before < len(latents), "nothing was batched"
            for s, b in zip(single, batched, strict=True):
                assert np.array_equal(np.asarray(s.logits, np.float32).view(np.uint32),
                                      np.asarray(b.logits, np.float32).view(np.uint32)), split
                assert s.label == b.label and s.probs == b.probs
            compact = await engine.submit(split, latents[0], probs=False)
            assert compact.probs == () and compact.logits == single[0].logits
        assert engine.stats.largest == 8  # at most max_batch a job

    try:
        asyncio.run(main())
    finally:
        engine.close()


def test_compact_replies_are_accounted_like_full_ones(tmp_path: Path) -> None:
    with server(tmp_path) as url:
        pool = Pool(tmp_path, url, "compact", 1)  # one process: the plain receiver
        pool.wait_for("receiver joined", lambda log: "joined room compact" in log)
        full = finish(tmp_path, "compact", senders(tmp_path, url, "compact", 1, "--frames", "60"))[0]
        compact = finish(tmp_path, "compact", senders(tmp_path, url, "compact", 1, "--frames", "60",
                                                      "--compact-replies"))[0]
        assert "(compact replies)" in pool.log()
        for r in (full, compact):
            assert r["accounted"] and r["lost"] == 0 and r["in_flight_at_exit"] == 0, r
            assert r["replies"] > 0 and r["frames_sent"] == 60
        _, summary = pool.stop()
        assert sorted(s["replied"] for s in summary.values()) == sorted([full["replies"], compact["replies"]])
