"""One worker of ``python -m receiver --workers N``: its own event loop, peer connections and
tails; the parent (``receiver.pool``) meets the senders and hands this process their offers.

Started by the parent as ``python -m receiver.worker ARGS`` (the receiver's own arguments;
``SPLITRTC_WORKER`` is the worker's index). It talks to the parent over its stdin and stdout,
one JSON object a line (stdout is reserved for that; logs go to stderr):

- parent to worker: ``{"op": "signal", "msg": {...}}`` (an offer or candidate, as signaling
  delivered it; an offer also carries the ICE list and policy of the parent's join ack),
  ``{"op": "report", "id": n}`` (stats for the dashboard), ``{"op": "stop"}``;
- worker to parent: ``{"ev": "ready"}``, ``{"ev": "signal", "to", "kind", "fields"}`` (an answer
  to send), ``{"ev": "load", "sessions": n, "offers": m}`` whenever its sessions change and after
  each offer (``m``: offers it has been handed so far), ``{"ev": "report",
  "id", "report", "app", "batch"}``, and ``{"ev": "summary", "summary": {...}}`` as it exits.

It stops on SIGINT/SIGTERM (Ctrl-C reaches the whole process group), on ``stop``, and when its
stdin closes (the parent is gone): sessions closed within ``SHUTDOWN_S`` as a lone receiver.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from receiver.__main__ import SHUTDOWN_S, limits, parse
from receiver.pool import INDEX_ENV
from receiver.service import Receiver
from splitcore.process import cli
from splitcore.process.cpus import pin
from splitcore.process.loops import run_with_loop
from splitcore.rtc import ice
from splitcore.runtime.models import Manifest, ModelError

log = cli.logger("receiver.worker")


class WorkerReceiver(Receiver):
    """A ``Receiver`` whose room is its parent: it never joins signaling itself."""

    def __init__(self, out: asyncio.StreamWriter, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = out
        self.offers = 0   # offers handed to us so far: the parent's pending count is its own minus this

    def emit(self, obj: dict[str, Any]) -> None:
        if not self.out.is_closing():
            self.out.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    async def _signal_out(self, to: str, kind: str, **fields: Any) -> None:
        self.emit({"ev": "signal", "to": to, "kind": kind, "fields": fields})

    def _load_changed(self) -> None:
        self.emit({"ev": "load", "sessions": len(self.peers), "offers": self.offers})

    async def offer(self, msg: dict) -> None:
        """An offer from the parent; our load is said once it is answered or refused."""
        self.offers += 1
        try:
            await self._on_signal(msg)
        finally:
            self._load_changed()

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_forever(), name="worker-ticker")

    async def close(self) -> None:
        """The sessions and the tails; the parent owns signaling and the stats."""
        await self._close_sessions()
        self.engine.close()

    async def answer_report(self, rid: int) -> None:
        b = self.engine.stats
        self.emit({"ev": "report", "id": rid, "report": await self._report(), "app": self._app(),
                   "batch": {"jobs": b.jobs, "frames": b.frames, "largest": b.largest}})


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", 0))
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by accident goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", 0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def run(args: argparse.Namespace) -> int:
    index = int(os.environ.get(INDEX_ENV, "0"))
    reader, writer = await _pipes()
    name = f"{args.name}-{index}"
    w = WorkerReceiver(writer, "", args.room, name, Manifest.load(args.manifest), args.threads,
                       ice.from_args(args), limits(args), None, args.max_batch)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await w.start()
    w.emit({"ev": "ready"})
    log.info("worker %d (pid %d) ready", index, os.getpid())

    async def follow() -> None:
        while True:
            line = await reader.readline()
            if not line:
                log.info("worker %d: parent gone; stopping", index)
                return
            try:
                cmd = json.loads(line)
                op = cmd["op"]
            except (ValueError, KeyError, TypeError):
                log.error("worker %d: unreadable command from the parent: %r", index, line[:200])
                continue
            if op == "signal" and cmd["msg"].get("type") == "offer":
                # what the room gave the parent at join, used as a lone receiver uses its own
                w.signaling.ice_servers = cmd.get("ice_servers")
                w.signaling.ice_policy = cmd.get("ice_policy")
                asyncio.create_task(w.offer(cmd["msg"]))
            elif op == "signal":
                asyncio.create_task(w._on_signal(cmd["msg"]))
            elif op == "report":
                asyncio.create_task(w.answer_report(int(cmd["id"])))
            elif op == "stop":
                return

    follower = asyncio.create_task(follow())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
    follower.cancel()
    stopper.cancel()
    try:
        await asyncio.wait_for(w.close(), SHUTDOWN_S)
    except TimeoutError:
        log.warning("worker %d: sessions still closing after %.1f s; exiting anyway", index, SHUTDOWN_S)
    finally:
        w.engine.close()
    w.emit({"ev": "summary", "summary": w.summary()})
    try:
        await asyncio.wait_for(writer.drain(), 0.3)
        writer.close()
    except (TimeoutError, ConnectionError):
        pass
    log.info("worker %d (pid %d) stopped", index, os.getpid())
    return w.exit_code


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    cli.setup_logging(args.log_level)
    index = int(os.environ.get(INDEX_ENV, "0"))
    for handler in logging.getLogger().handlers:  # which worker said it, in the shared stderr
        handler.setFormatter(logging.Formatter(cli.LOG_FORMAT.replace("%(name)s", f"%(name)s[w{index}]")))
    try:
        if args.cpus:
            cpus = sorted(args.cpus)
            pin({cpus[index % len(cpus)]})
        # the arguments parsed before pinning: parsed again after it, --cpus 0-1 would be
        # refused (this process may now use one of them only)
        rc = run_with_loop(run(args), args.event_loop)
    except (ModelError, ValueError) as exc:
        return cli.fail("receiver worker", exc)
    # Everything is closed and said: skip the interpreter's teardown (ONNX Runtime's and
    # aiortc's finalisers take a good part of a second), so Ctrl-C ends the pool within 3 s.
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
