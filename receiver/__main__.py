"""python -m receiver: run the tail side of SplitRTC.

Joins ROOM on the signaling server as a receiver, answers every sender that offers, runs
the tail of the split each frame names (all splits of the manifest are loaded at start-up)
and replies with the label, the logits, the class probabilities and its own timings.
Publishes getStats-style byte counters to the dashboard once a second.

Every sender is pinged every 0.5 s; one from which nothing arrives for --peer-timeout
seconds is taken for gone and its session closed. Offers that do not become a data channel
within --offer-timeout seconds are torn down. A sender whose malformed messages outrun
--malformed-rate (after a burst of --malformed-burst) is disconnected.

By default (--workers auto) the senders are served by one worker process per core this
process may use, each with its own event loop, peer connections and tails; the room (or the
pool, with --pool) still sees one receiver (see receiver/pool.py). --workers 1 is a single
process with no workers: what a one-core device or a test wants.

Within a process, frames of the same split that are ready together run as one tail job of
at most --max-batch frames (see receiver/engine.py).

Ctrl-C or SIGTERM closes every session and exits 0 (printing --summary first).

Example:
    python -m receiver --server http://127.0.0.1:8080 --room demo
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from receiver.limits import MAX_BATCH, Limits
from receiver.pool import ReceiverPool, default_workers
from splitcore.process import cli
from splitcore.process.cpus import add_cpus_option, pin
from splitcore.process.loops import add_event_loop_option, run_with_loop
from splitcore.rtc import ice
from splitcore.rtc.signaling import SignalingError, add_access_options, credentials_from
from splitcore.runtime.models import Manifest, ModelError

if TYPE_CHECKING:
    from receiver.service import Receiver

log = cli.logger("receiver")
SHUTDOWN_S = 2.5  # closing every session at exit; the process must be gone within 3 s


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser("python -m receiver", __doc__)
    cli.add_peer_options(p, "receiver")
    p.add_argument("--pool", default=None, metavar="NAME",
                   help="register in receiver pool NAME instead of --room: the server gives each sender that asks "
                        "for the pool the least-loaded receiver (docs/signaling.md, Pools)")
    p.add_argument("--manifest", default=None, help="models/manifest.json of the models to serve")
    p.add_argument("--threads", type=cli.positive(int, "ONNX Runtime threads per tail"), default=1,
                   help="ONNX Runtime threads per tail (default 1)")
    p.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="worker processes serving the senders (default auto: one per core this process may "
                        "use, or one per CPU of --cpus, each pinned to its own; 1: this process alone, no workers)")
    p.add_argument("--max-batch", type=cli.positive(int, "frames"), default=MAX_BATCH,
                   help="frames of one split in one tail job (default %(default)s)")
    p.add_argument("--summary", action="store_true", help="print per-sender counters as JSON at exit")
    d = Limits()
    g = p.add_argument_group("limits (what one sender, or all together, can make the receiver hold)")
    g.add_argument("--max-sessions", type=cli.positive(int, "sessions in total"), default=d.max_sessions,
                   help="concurrent sessions, all senders together; offers beyond are refused (default %(default)s)")
    g.add_argument("--max-per-sender", type=cli.positive(int, "sessions per sender id"), default=d.max_per_sender,
                   help="concurrent sessions of one sender id; its next offer replaces its oldest (default %(default)s)")
    g.add_argument("--offer-timeout", type=cli.positive(float, "seconds"), default=d.offer_timeout_s,
                   help="seconds an offer may take to open its data channel (default %(default)s)")
    g.add_argument("--peer-timeout", type=cli.positive(float, "seconds"), default=d.peer_timeout_s,
                   help="seconds without any message before a sender is taken for gone (default %(default)s)")
    g.add_argument("--malformed-rate", type=cli.positive(float, "messages a second"), default=d.malformed_rate,
                   help="malformed messages a second a sender may sustain (default %(default)s)")
    g.add_argument("--malformed-burst", type=cli.positive(int, "messages"), default=d.malformed_burst,
                   help="malformed messages a sender may send at once before the rate applies (default %(default)s)")
    g.add_argument("--keep-closed", type=cli.positive(int, "sessions", zero_ok=True), default=d.keep_closed,
                   help="ended sessions whose counters are kept one by one; older ones are added up "
                        "(default %(default)s)")
    ice.add_ice_options(p)
    add_access_options(p)
    add_event_loop_option(p)
    add_cpus_option(p)
    cli.add_log_level(p)
    return p.parse_args(argv)


def _workers(text: str) -> int | None:
    """``--workers``: a positive count, or ``auto`` (None: one per core, decided in ``main``)."""
    return None if text == "auto" else int(cli.positive(int, "worker processes")(text))


def workers_for(args: argparse.Namespace) -> int:
    """The worker processes to run: as given, or for ``auto`` one per CPU of ``--cpus`` (each
    worker pinned to its own), else one per core this process may use."""
    if args.workers is not None:
        return int(args.workers)
    return len(args.cpus) if args.cpus else default_workers()


def limits(args: argparse.Namespace) -> Limits:
    return Limits(max_sessions=args.max_sessions, max_per_sender=args.max_per_sender,
                  offer_timeout_s=args.offer_timeout, peer_timeout_s=args.peer_timeout,
                  malformed_rate=args.malformed_rate, malformed_burst=args.malformed_burst,
                  keep_closed=args.keep_closed)


async def run(args: argparse.Namespace) -> Receiver:
    # here, not at the top: a --workers parent never runs a session, and aiortc and ONNX
    # Runtime are most of a receiver's memory
    from receiver.service import Receiver

    ice_config = ice.from_args(args)
    log.info("%s", ice_config.describe())
    if ice_config.aiortc_ignored:
        log.warning("aiortc uses one STUN and one TURN url; ignored: %s", ", ".join(ice_config.aiortc_ignored))
    receiver = Receiver(args.server, args.pool or args.room, args.name, Manifest.load(args.manifest),
                        args.threads, ice_config, limits(args), credentials_from(args), args.max_batch,
                        pool=args.pool is not None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: still closing sessions")
        stop.set()

    def handle_signals() -> None:
        # Again after connecting: python-engineio installs its own SIGINT handler (which
        # cancels every task) on a client's first connect unless told not to.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)

    handle_signals()
    try:
        if await _until_stopped(receiver.start(), stop):
            handle_signals()
            try:
                await _until_stopped(receiver.serve(), stop)
            except SignalingError as exc:  # lost for good, after the open sessions ended
                log.error("exiting: %s", exc)
                receiver.exit_code = cli.EXIT_FAILED
        log.info("stopping: closing %d session(s)", len(receiver.peers))
        try:
            await asyncio.wait_for(receiver.close(), SHUTDOWN_S)
        except TimeoutError:
            log.warning("sessions still closing after %.1f s; exiting anyway", SHUTDOWN_S)
    finally:
        receiver.engine.close()  # idempotent; also when start() failed
    return receiver


async def _until_stopped(coro: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``coro`` until it ends or ``stop`` is set; True if it ended by itself (its
    exception, if any, is raised)."""
    task = asyncio.create_task(coro)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return False


async def run_pool(args: argparse.Namespace, argv: list[str]) -> ReceiverPool:
    """The parent of ``--workers N``: workers started, room joined, until a signal."""
    Manifest.load(args.manifest)  # a bad manifest is said once, here, not by every worker
    pool = ReceiverPool(args.server, args.pool or args.room, args.name, args.workers, worker_argv(argv),
                        credentials_from(args), pool=args.pool is not None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if await _until_stopped(pool.start(), stop):
            for sig in (signal.SIGINT, signal.SIGTERM):  # again: python-engineio's own handler
                loop.add_signal_handler(sig, stop.set)
            try:
                await _until_stopped(pool.serve(), stop)
            except SignalingError as exc:
                log.error("exiting: %s", exc)
                pool.exit_code = cli.EXIT_FAILED
    finally:
        log.info("stopping %d worker(s)", args.workers)
        await pool.close()
    return pool


def worker_argv(argv: list[str]) -> list[str]:
    """The receiver's arguments without ``--workers`` (the workers take all the others)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    cli.setup_logging(args.log_level)
    args.workers = workers_for(args)
    if args.workers > 1:
        try:
            pool = run_with_loop(run_pool(args, argv), args.event_loop)
        except (ModelError, SignalingError, ValueError) as exc:
            return cli.fail("receiver", exc)
        if args.summary:
            print(json.dumps(pool.summary()))
        # Workers and room are closed and the summary said: skip the interpreter's teardown
        # (over 2 s here, mostly finalisers of imported native libraries), so Ctrl-C ends the
        # pool within 3 s.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(pool.exit_code)
    try:
        if args.cpus:
            pin(args.cpus)  # before the tail sessions and their worker thread exist
        receiver = run_with_loop(run(args), args.event_loop)
    except (ModelError, SignalingError, ValueError) as exc:
        return cli.fail("receiver", exc)
    if args.summary:
        print(json.dumps(receiver.summary()))
    return receiver.exit_code


if __name__ == "__main__":
    sys.exit(main())
