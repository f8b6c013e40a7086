"""``python -m receiver --workers N``: one receiver in the room, N worker processes behind it.

The parent joins the room as the one receiver senders see (same name, one id), exactly as a
lone receiver does, and assigns each offer to the worker with the fewest sessions (its own
count of offers handed out but not yet confirmed included, so a burst of offers is spread
too); a sender's new offer goes to the worker that holds its session. The chosen worker
(``receiver.worker``) creates the peer connection, so the media path
(DTLS, SCTP, decode, tail) runs on that worker's own event loop and core; the parent only
relays the answer and the sender's candidates, and adds up the workers' stats once a second.

With ``--pool NAME`` the parent registers in the pool as one receiver whose reported load is
its workers' added up, with ``workers: N``: the server compares receivers per worker
(``signaling.pool``), so a pool can mix receivers of one worker and of many.

Why the parent assigns, rather than every worker joining as its own receiver: senders (the
Python one and the browser page) offer to the first receiver in the room, so N receivers in
a room would all serve the first one's senders; offers routed by the parent are spread
whatever the sender does, and the room looks the same with 1 worker or 16.

Each worker applies the receiver's limits (``--max-sessions`` and the rest) to its own
sessions, so the pool holds at most N times ``--max-sessions``.

A worker that dies is reported (its exit status) and started again; its senders lose their
connection and their own recovery re-offers. A sender's recovery does not offer again to
the receiver id it lost, so once the new worker is ready the parent rejoins the room under
a new id (open sessions live on their data channels and are not disturbed). The other
workers keep serving throughout.

Ctrl-C (SIGINT to the whole process group) or SIGTERM: every worker closes its sessions
(``SHUTDOWN_S``); the parent kills any still running at ``STOP_S`` and exits within 3 s.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from receiver.limits import EARLIER
from splitcore.process.cli import logger
from splitcore.rtc.signaling import Credentials, SignalingClient, SignalingError
from splitcore.rtc.stats import Report, StatsPublisher

log = logger("receiver.pool")
STOP_S = 2.8          # workers still running this long after the stop are killed
REPORT_TIMEOUT_S = 0.8
RESTART_DELAY_S = 0.5  # between a worker's death and its replacement (a crash loop stays slow)
LINE_LIMIT = 64 << 20  # a report line of many sessions' stats
INDEX_ENV = "SPLITRTC_WORKER"  # a worker's index, in its environment


@dataclass
class Worker:
    """One worker process as the parent sees it."""

    index: int
    proc: asyncio.subprocess.Process
    sessions: int = 0                 # as the worker last said
    offers: int = 0                   # offers handed to it
    offers_seen: int = 0              # of which it has answered or refused, as it last said
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    summary: dict[str, dict[str, int]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @property
    def load(self) -> int:
        """Its sessions and the offers it has not yet answered: a burst of offers is spread too."""
        return self.sessions + self.offers - self.offers_seen

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ReceiverPool:
    def __init__(self, server: str, room: str, name: str, workers: int, worker_argv: list[str],
                 credentials: Credentials | None = None, pool: bool = False) -> None:
        """``pool``: ``room`` names a receiver pool; the server assigns senders by the load the
        parent reports, the workers' added up with ``workers`` saying how many share it."""
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.n, self.worker_argv = workers, worker_argv
        self.signaling = SignalingClient(server, room, "receiver", name, credentials=credentials, pool=pool)
        self.signaling.on_signal(self._on_signal)
        self.workers: list[Worker | None] = [None] * workers
        self.owner: dict[str, int] = {}   # sender id -> worker index of its newest offer
        self.deaths = 0
        self.exit_code = 0
        self.stopping = False
        self.closed_summaries: dict[str, dict[str, int]] = {}
        self._reports: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._apps: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.publisher = StatsPublisher(self.signaling.sio, self._report, self._app,
                                        ready=lambda: self.signaling.joined)

    # ------------------------------------------------------------------------- workers

    async def _spawn(self, index: int) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver.worker", *self.worker_argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
            env={**os.environ, INDEX_ENV: str(index)})
        w = Worker(index, proc)
        w.reader = asyncio.create_task(self._follow(w), name=f"worker-{index}")
        self.workers[index] = w
        return w

    async def start(self) -> None:
        """Start the workers (models loaded, ready) and then join the room."""
        started = [await self._spawn(i) for i in range(self.n)]
        for w in started:   # ready, or gone (its reader ends: a bad model, a bad option)
            ready = asyncio.create_task(w.ready.wait())
            assert w.reader is not None
            try:
                await asyncio.wait({ready, w.reader}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
        failed = [w.index for w in started if not w.ready.is_set()]
        if failed:
            raise SignalingError(f"worker(s) {failed} did not start (see their errors above)")
        log.info("%d workers ready (pids %s)", self.n, ", ".join(str(w.proc.pid) for w in started))
        await self.signaling.connect()
        self.publisher.start()

    async def _follow(self, w: Worker) -> None:
        """Read one worker's messages until it exits; then report it and start another."""
        assert w.proc.stdout is not None
        while True:
            try:
                line = await w.proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError) as exc:
                log.error("worker %d: line too long (%s)", w.index, exc)
                continue
            if not line:
                break
            try:
                self._on_worker(w, json.loads(line))
            except Exception:
                log.exception("worker %d: bad message %r", w.index, line[:200])
        rc = await w.proc.wait()
        self._merge(w.summary)
        for sender in [s for s, i in self.owner.items() if i == w.index]:
            del self.owner[sender]
        if self.stopping:
            return
        if not w.ready.is_set():  # it never started: starting it again would fail the same way
            log.error("worker %d (pid %d) exited with status %s before it was ready", w.index, w.proc.pid, rc)
            return
        self.deaths += 1
        log.error("worker %d (pid %d) died with exit status %s while serving %d session(s); starting another",
                  w.index, w.proc.pid, rc, w.sessions)
        await asyncio.sleep(RESTART_DELAY_S)
        if self.stopping:
            return
        try:
            new = await self._spawn(w.index)
            await asyncio.wait_for(new.ready.wait(), 60)
        except Exception as exc:
            log.error("worker %d could not be started again: %s", w.index, exc)
            return
        if self.signaling.joined:
            # Senders that lost their session do not offer again to the id they lost.
            log.info("worker %d back (pid %d); rejoining the room under a new id", w.index, new.proc.pid)
            with contextlib.suppress(Exception):
                await self.signaling.sio.disconnect()  # SignalingClient reconnects and rejoins

    def _on_worker(self, w: Worker, m: dict[str, Any]) -> None:
        ev = m.get("ev")
        if ev == "signal":
            self._spawn_task(self._relay(m["to"], m["kind"], m.get("fields") or {}))
        elif ev == "load":
            w.sessions = int(m["sessions"])
            w.offers_seen = int(m.get("offers", w.offers_seen))
        elif ev == "report":
            fut = self._reports.pop(int(m["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(m)
        elif ev == "ready":
            w.ready.set()
        elif ev == "summary":
            w.summary = m.get("summary") or {}

    async def _relay(self, to: str, kind: str, fields: dict[str, Any]) -> None:
        try:
            await self.signaling.signal(to, kind, **fields)
        except Exception as exc:
            log.warning("cannot signal %s to %s: %s", kind, to, exc)

    def _send(self, w: Worker, obj: dict[str, Any]) -> bool:
        if not w.alive or w.proc.stdin is None or w.proc.stdin.is_closing():
            return False
        w.proc.stdin.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        return True

    def _spawn_task(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------- offers

    def least_loaded(self) -> Worker | None:
        alive = [w for w in self.workers if w is not None and w.alive and w.ready.is_set()]
        return min(alive, key=lambda w: (w.load, w.index), default=None)

    async def _on_signal(self, msg: dict) -> None:
        sender, kind = msg.get("from", ""), msg.get("type")
        if kind == "offer":
            # A sender's new offer replaces its session (--max-per-sender): on the same worker,
            # while that one runs, so the old session ends at once and the load is unchanged.
            i = self.owner.get(sender)
            w = self.workers[i] if i is not None else None
            if w is None or not w.alive or not w.ready.is_set():
                w = self.least_loaded()
            if w is None:
                log.warning("offer from %s: no worker running", sender)
                return
            w.offers += 1
            self.owner[sender] = w.index
            # the join ack's ICE list (server.py --ice-servers/--turn-secret) is the parent's
            self._send(w, {"op": "signal", "msg": msg, "ice_servers": self.signaling.ice_servers,
                           "ice_policy": self.signaling.ice_policy})
            log.info("offer from %s -> worker %d (load %d)", sender, w.index, w.load)
        else:
            i = self.owner.get(sender)
            target = self.workers[i] if i is not None else None
            if target is None or not self._send(target, {"op": "signal", "msg": msg}):
                log.debug("ignoring %s from %s (no session)", kind, sender)

    # ------------------------------------------------------------------------- serving

    async def serve(self) -> None:
        """Follow the room until cancelled, or until signaling is lost for good and the
        workers' last sessions have ended (then SignalingError), as a lone receiver does."""
        while True:
            kind, peer = await self.signaling.peer_events.get()
            if kind == "rejoined":
                log.info("in room %s as %s (was %s)", self.signaling.room, peer.get("id"), peer.get("previous"))
            elif kind == "lost":
                log.error("signaling lost for good (%s): serving the open sessions until they end, then exiting",
                          peer.get("error"))
                while any(w is not None and w.alive and w.sessions for w in self.workers):
                    await asyncio.sleep(0.5)
                raise SignalingError(str(peer.get("error") or "signaling server lost"))

    async def close(self) -> None:
        """Stop every worker (they close their sessions), kill the late ones, leave the room."""
        self.stopping = True
        await self.publisher.stop()
        deadline = time.monotonic() + STOP_S
        running = [w for w in self.workers if w is not None]
        for w in running:
            self._send(w, {"op": "stop"})
        leaving = asyncio.create_task(self._leave())
        for w in running:
            try:
                await asyncio.wait_for(w.proc.wait(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("worker %d (pid %d) still running after %.1f s: killed", w.index, w.proc.pid, STOP_S)
                w.proc.kill()
                await w.proc.wait()
        for w in running:
            if w.reader is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(w.reader, 0.2)
        for t in list(self._tasks):
            t.cancel()
        await leaving
        log.info("all workers stopped")

    async def _leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.signaling.close(), 1.0)

    # ------------------------------------------------------------------------- reporting

    async def _ask(self, w: Worker) -> dict[str, Any] | None:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reports[rid] = fut
        if not self._send(w, {"op": "report", "id": rid}):
            self._reports.pop(rid, None)
            return None
        try:
            return await asyncio.wait_for(fut, REPORT_TIMEOUT_S)
        except TimeoutError:
            return None
        finally:
            self._reports.pop(rid, None)

    async def _report(self) -> Report:
        live = [w for w in self.workers if w is not None and w.alive]
        answers = await asyncio.gather(*(self._ask(w) for w in live))
        report: Report = []
        self._apps = []
        for w, a in zip(live, answers, strict=True):
            if a is None:
                continue
            report += a.get("report") or []
            self._apps.append({**(a.get("app") or {}), "worker": w.index, "pid": w.proc.pid,
                               "batch": a.get("batch")})
        return report

    def _app(self) -> dict[str, Any]:
        """The workers' figures added up, in a lone receiver's shape, and each worker's own."""
        apps = self._apps
        out: dict[str, Any] = {}
        for k in ("senders", "frames", "inferred", "replied", "dropped_stale", "dropped_incomplete",
                  "malformed", "dropped"):
            out[k] = sum(int(a.get(k, 0)) for a in apps)
        out["fps"] = round(sum(float(a.get("fps", 0.0)) for a in apps), 2)
        last: dict[str, Any] = next((a for a in reversed(apps) if a.get("label")), {})
        out["label"], out["split"] = last.get("label", ""), last.get("split", "")
        loads = [a.get("load") or {} for a in apps]
        out["load"] = {k: round(sum(float(x.get(k, 0)) for x in loads), 3) for k in ("streams", "cpu", "queue")}
        out["load"]["workers"] = max(1, len(apps))   # those that answered: a dead one serves nobody
        out["workers"] = [{k: a.get(k) for k in ("worker", "pid", "senders", "replied", "fps", "batch", "load")}
                          for a in apps]
        out["worker_deaths"] = self.deaths
        return out

    def _merge(self, summary: dict[str, dict[str, int]]) -> None:
        for key, counters in summary.items():
            mine = self.closed_summaries.get(key)
            if mine is None:
                self.closed_summaries[key] = dict(counters)
            elif key == EARLIER:
                for k, v in counters.items():
                    mine[k] = mine.get(k, 0) + v
            else:
                n = 2
                while f"{key}.w{n}" in self.closed_summaries:
                    n += 1
                self.closed_summaries[f"{key}.w{n}"] = dict(counters)

    def summary(self) -> dict[str, dict[str, int]]:
        """Every worker's sessions (from their exit), as a lone receiver's ``summary``."""
        return dict(self.closed_summaries)
