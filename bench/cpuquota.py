"""A CPU quota per process (Linux cgroups, root): a "core" of a chosen size for a benchmark.

``bench.capacity --worker-quota 0.4`` gives every receiver worker its own cgroup limited to
0.4 of a core. On a machine with few cores this is how ``--workers 2`` can be compared with
``--workers 1`` at all: two workers pinned to the machine's two cores leave the load
generator nothing (and a worker sharing its core with the generator is descheduled long
enough for its UDP receive buffers to overflow: 31,641 datagrams dropped in 8 s here, and
aiortc's SCTP then stalls for seconds), while two workers of 0.4 core each leave it 1.2.
Each worker is held to its own share exactly as a dedicated core would hold it, so what two
such workers carry against one is the scaling a machine with more cores gets.

The period is short (``PERIOD_US``, 10 ms) so that a worker at its limit is paused for a few
milliseconds at a time, not for most of a 100 ms period (which would drop packets the same
way). cgroup v1 (``/sys/fs/cgroup/cpu``) or v2 (``cpu.max`` in the unified hierarchy).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PERIOD_US = 10_000
V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")


def _hierarchy() -> tuple[str, Path] | None:
    if (V1 / "cpu.cfs_quota_us").exists():
        return "v1", V1
    controllers = V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2", V2
    return None


def unavailable_reason() -> str | None:
    """Why quotas cannot be set here, or None."""
    if os.geteuid() != 0:
        return "CPU quotas need root (cgroups)"
    if _hierarchy() is None:
        return "no cgroup cpu controller (neither /sys/fs/cgroup/cpu nor cpu in the unified hierarchy)"
    return None


class Quotas:
    """Processes each limited to ``cores`` of CPU until ``close`` (or the ``with`` ends)."""

    def __init__(self, cores: float, tag: str = "splitrtc-bench") -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if not 0.01 <= cores <= 64:
            raise ValueError(f"a quota of {cores} cores is out of range (0.01-64)")
        found = _hierarchy()
        assert found is not None
        self.kind, self.root = found
        self.cores, self.tag = cores, tag
        self.groups: dict[int, Path] = {}

    def limit(self, pid: int) -> None:
        """Move ``pid`` (every thread of it) into a group of its own, limited to ``cores``."""
        group = self.root / f"{self.tag}-{os.getpid()}-{pid}"
        group.mkdir(exist_ok=True)
        quota = max(1000, int(self.cores * PERIOD_US))
        if self.kind == "v1":
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (group / "cgroup.procs").write_text(str(pid))
        self.groups[pid] = group

    def throttled(self) -> dict[int, int]:
        """Per process: the periods in which it hit its quota so far."""
        out = {}
        for pid, group in self.groups.items():
            with contextlib.suppress(OSError):
                for line in (group / "cpu.stat").read_text().splitlines():
                    if line.startswith("nr_throttled"):
                        out[pid] = int(line.split()[1])
        return out

    def close(self) -> None:
        """Processes still running go back to the root group; the groups are removed."""
        for pid, group in self.groups.items():
            with contextlib.suppress(OSError):
                (self.root / "cgroup.procs").write_text(str(pid))
            with contextlib.suppress(OSError):
                group.rmdir()
        self.groups.clear()

    def __enter__(self) -> Quotas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def quotas(cores: float | None) -> Iterator[Quotas | None]:
    """``Quotas(cores)`` for a ``with``, or None when ``cores`` is None."""
    if cores is None:
        yield None
        return
    with Quotas(cores) as q:
        yield q
