"""Pin a process to CPUs (``--cpus``), so a peer keeps its core and its caches.

A frame crosses aiortc's pure-Python SCTP stack as about 30 UDP packets each way, every one
handled by an event loop that must wake up for it. When the sender and the receiver share a
machine (loopback benchmarks, a demo box) the kernel moves them and their inference threads
between cores, and each wake-up can land behind the other peer. Pinned to separate cores,
stage1's data channel time fell from 6.3 to 4.2 ms and its p99 end to end from 14.4 to
10.3-11.3 ms here (``python -m bench.loopback``); on separate machines it matters less.
Linux only (``os.sched_setaffinity``). ``pin`` sets every thread of the process (imports
already start some: OpenBLAS's pool, for one); threads started later inherit the mask.
"""
from __future__ import annotations

import argparse
import os


def parse_cpus(text: str) -> set[int]:
    """'0', '0,2' or '0-3,6' -> {0, ...}; ValueError with the reason otherwise."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r}: use numbers and ranges, e.g. 0 or 0,2 or 1-3")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"bad CPU range {part!r} in {text!r}: the end is below the start")
        cpus.update(range(first, last + 1))
    return cpus


def available() -> set[int]:
    """The CPUs this process may run on (all of them where affinity is not supported)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def pin(cpus: set[int]) -> None:
    """Restrict this process to ``cpus``; ValueError saying why when it cannot."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--cpus needs Linux (os.sched_setaffinity)")
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: this thread, and those it starts later
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            pass  # the thread ended meanwhile
        except OSError as exc:  # EINVAL: none of them exists or may be used here
            raise ValueError(f"cannot pin to CPU(s) {sorted(cpus)}: {exc.strerror} "
                             f"(this process may use {sorted(available())})") from None


def _cpu_list(text: str) -> set[int]:
    try:
        cpus = parse_cpus(text)
        if cpus - available():
            raise ValueError(f"CPU(s) {sorted(cpus - available())} not available "
                             f"(this process may use {sorted(available())})")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return cpus


def add_cpus_option(p: argparse.ArgumentParser) -> None:
    """``--cpus`` for the peers, refused at parse time when the list is wrong."""
    p.add_argument("--cpus", type=_cpu_list, default=None, metavar="LIST",
                   help="pin this process to these CPUs (e.g. 1 or 0,2-3; Linux): keeps a peer off "
                        "the cores of another one on the same machine (default: not pinned)")
