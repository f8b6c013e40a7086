"""Recovery: how fast a stream notices a lost peer and resumes, and how fast it stops.

    python -m bench.recovery [--runs 3] [--out results/recovery]

Each run starts ``server.py``, a receiver and a sender (the built-in pattern, 30 fps) as
separate processes on 127.0.0.1, and then:

1. kills the receiver with SIGKILL: **detection** is the sender's outage start (its
   ``--json`` summary) minus the moment of the kill;
2. starts a new receiver: **resume** is the first reply after the loss, measured from the
   new receiver's "joined room" log line (and from its process start, model loading included);
3. kills the signaling server with SIGKILL and starts it again on the same port: replies
   that arrive while it is down show the data channel kept streaming; **rejoin** is the time
   from the restart to a second sender's first reply;
4. sends SIGINT to the first sender: **stop** is the time to its exit, summary printed.

It prints one line per run and a table (median and max of each figure), and writes
``recovery.json`` and ``recovery.md`` under ``--out``. Targets (issue 11): detection within
3 s, replies within 5 s of a new receiver joining, exit within 3 s of Ctrl-C.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from splitcore.process.children import (
    PY,
    ROOT,
    child_env,
    free_port,
    receiver_args,
    sender_args,
    spawn,
    stop,
    wait_http,
)


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.endswith("}")]


def replies(path: Path) -> list[dict[str, Any]]:
    return [r for r in records(path) if "label" in r]


def wait(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    """Poll every 10 ms; returns time.time() when ``pred`` first held."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.time()


def joined_at(log: Path) -> float | None:
    """Wall time of the receiver's "joined room" log line (its log's own timestamp)."""
    for ln in log.read_text().splitlines():
        if "joined room" in ln:
            return datetime.datetime.strptime(ln[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def one_run(n: int, work: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    room = f"recovery{n}"
    server_cmd = [PY, "server.py", "--port", str(port)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        srv = spawn(server_cmd, open(work / f"server{n}.log", "w"))
        procs.append(srv)
        wait_http(f"{url}/healthz", srv)
        recv_a = spawn(receiver_args(url, room, "--log-level", "info"), open(work / f"a{n}.log", "w"))
        procs.append(recv_a)
        log = work / f"frames{n}.jsonl"
        sender = subprocess.Popen(sender_args(url, room, "--quiet", "--json", "--log", str(log)), cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=open(work / f"sender{n}.err", "w"), env=child_env())
        procs.append(sender)
        wait(lambda: len(replies(log)) >= 60, "the first replies")

        # 1-2: the receiver dies, a new one comes
        recv_a.kill()
        recv_a.wait()
        t_kill = time.time()
        time.sleep(3.0)
        before = len(records(log))
        t_start = time.time()
        b_log = work / f"b{n}.log"
        recv_b = spawn(receiver_args(url, room, "--log-level", "info"), open(b_log, "w"))
        procs.append(recv_b)
        t_first = wait(lambda: any("label" in r for r in records(log)[before:]), "a reply from the new receiver")
        t_join = joined_at(b_log)

        # 3: the signaling server dies and comes back; the data channel carries on meanwhile
        n0 = len(replies(log))
        srv.kill()
        srv.wait()
        time.sleep(2.0)
        during = len(replies(log)) - n0
        t_restart = time.time()
        srv = spawn(server_cmd, open(work / f"server{n}b.log", "w"))
        procs.append(srv)
        wait_http(f"{url}/healthz", srv)
        log2 = work / f"frames{n}b.jsonl"
        sender2 = subprocess.Popen(sender_args(url, room, "--quiet", "--json", "--frames", "30", "--log", str(log2)),
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env())
        procs.append(sender2)
        t_second = wait(lambda: bool(replies(log2)), "a new sender's reply after the restart", 90)
        sender2.communicate(timeout=60)

        # 4: Ctrl-C
        t_sig = time.monotonic()
        sender.send_signal(signal.SIGINT)
        out, _ = sender.communicate(timeout=60)
        t_exit = time.monotonic() - t_sig
        summary = json.loads(out.decode().strip().splitlines()[-1])
        outage = summary["outages"][0] if summary.get("outages") else {}
        return {
            "detect_s": round(outage["start"] - t_kill, 3) if outage else None,
            "resume_from_join_s": round(t_first - t_join, 3) if t_join else None,
            "resume_from_process_start_s": round(t_first - t_start, 3),
            "replies_while_server_down_2s": during,
            "new_sender_after_restart_s": round(t_second - t_restart, 3),
            "sigint_to_exit_s": round(t_exit, 3),
            "exit_code": sender.returncode,
            "accounted": summary.get("accounted"),
            "lost": summary.get("lost"),
            "no_receiver": summary.get("dropped_by_sender", {}).get("no_receiver", 0),
            "outages": len(summary.get("outages", [])),
        }
    finally:
        stop(procs)


FIGURES = ("detect_s", "resume_from_join_s", "resume_from_process_start_s", "replies_while_server_down_2s",
           "new_sender_after_restart_s", "sigint_to_exit_s")


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median | max |",
             "|---|" + "---:|" * (len(runs) + 2)]
    for k in FIGURES:
        vals = [r[k] for r in runs if r[k] is not None]
        cells = " | ".join(str(r[k]) for r in runs)
        lines.append(f"| {k} | {cells} | {statistics.median(vals) if vals else '-'} | {max(vals) if vals else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results/recovery"))
    args = p.parse_args(argv)
    runs = []
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine shows in the seconds
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            r = one_run(n, Path(tmp))
            print(f"run {n + 1}: " + ", ".join(f"{k} {v}" for k, v in r.items()), flush=True)
            runs.append(r)
    md = table(runs) + (f"\n\nLoad average (1, 5, 15 min) before: {load_before}, after: "
                        f"{[round(x, 2) for x in os.getloadavg()]} (2 cores).")
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recovery.json").write_text(json.dumps(runs, indent=1) + "\n")
    (args.out / "recovery.md").write_text(f"# Recovery ({args.runs} runs)\n\n{md}\n\nEvery run: " +
                                          "; ".join(f"exit {r['exit_code']}, accounted {r['accounted']}, lost "
                                                    f"{r['lost']}, no_receiver {r['no_receiver']}" for r in runs) +
                                          f"\n\nGenerated by `python -m bench.recovery --runs {args.runs}`.\n")


if __name__ == "__main__":
    main()
