"""python sender.py: the camera side of SplitRTC.

Captures frames (a webcam, a video file, or the built-in moving test pattern when neither
is given), paces them at 30 fps, resizes each to 32x32 (area interpolation), runs the head
of the chosen split in ONNX Runtime and sends the float32 latent to a receiver in ROOM over
a WebRTC data channel. Prints a live status line (fps, bytes/s, label, latency).

Examples:
    python sender.py                                  # built-in pattern, room demo
    python sender.py --camera 0 --split stage2        # first webcam
    python sender.py --video clip.mp4 --frames 300 --json --verify
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import socketio

from sender import switching
from sender.capture import open_source
from sender.head import HeadCompute
from sender.ledger import Ledger
from sender.source import CaptureError
from sender.stream import NoReceiver, SenderStream, StreamOptions
from splitcore.process import cli
from splitcore.process.cpus import add_cpus_option, pin
from splitcore.process.loops import add_event_loop_option, run_with_loop
from splitcore.rtc import ice
from splitcore.rtc.signaling import SignalingClient, SignalingError, add_access_options, credentials_from
from splitcore.runtime.models import Manifest, ModelError
from splitcore.runtime.operating import OperatingPoints
from splitcore.wire.codecs import CodecSpec

PROG = "sender"
log = cli.logger("sender.cli")


class GaveUp(Exception):
    """The run ended without doing what was asked (receiver lost for good): exit 1."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser("python sender.py", __doc__)
    p.error = _one_line_error  # type: ignore[method-assign]
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="webcam index (0) or device path (/dev/video0)")
    src.add_argument("--video", help="a video file to stream instead of a camera")
    p.add_argument("--loop", action="store_true", help="loop the video file")
    cli.add_peer_options(p, "python-sender")
    p.add_argument("--receiver", default=None, help="name of the receiver to use (default: the first)")
    p.add_argument("--pool", default=None, metavar="NAME",
                   help="ask receiver pool NAME instead of --room: the server assigns the least-loaded receiver, "
                        "and another when it is lost (docs/signaling.md, Pools)")
    p.add_argument("--split", default="stage1",
                   help="split point id from the manifest (default: stage1); 'auto': the fewest "
                        "bytes within --max-drop of the full model, from models/operating_points.json, fixed "
                        "for the run (for a link you know); 'adaptive': split, codec and head chosen and "
                        "switched live for the least predicted latency the measured link carries (for a "
                        "link that changes; docs/adaptive.md)")
    p.add_argument("--codec", default=None,
                   help="latent codec: float32 (default), float16, int8-tensor, int8-channel, clip4, "
                        "optionally +zlib or +zstd (e.g. clip4+zlib; browsers decode zlib only); "
                        "with --split auto, chosen for you")
    p.add_argument("--int8-head", action="store_true", help="run the statically quantized INT8 head")
    p.add_argument("--max-drop", type=cli.positive(float, "accuracy points", zero_ok=True), default=1.0,
                   help="with --split auto or adaptive: accuracy points you accept to lose (default 1.0)")
    p.add_argument("--max-ssim", type=cli.positive(float, "SSIM", zero_ok=True), default=None,
                   help="with --split auto or adaptive: only points whose measured leakage (the SSIM of the best "
                        "inversion attack's reconstructions, models/operating_points.json) is at most this; "
                        "points never attacked are excluded. 0.3 is 'unrecognisable' (He et al.)")
    p.add_argument("--device-profile", type=Path, default=None, metavar="FILE",
                   help="with --split adaptive: device times measured on the target device "
                        "(python -m sender.profile > FILE) instead of profiling here; not refreshed")
    p.add_argument("--zstd", action="store_true",
                   help="with --split auto, also consider +zstd codecs (smaller and faster than zlib, "
                        "but only Python receivers decode them; browsers do not)")
    p.add_argument("--points", default=None, help="operating points file (default: models/operating_points.json)")
    p.add_argument("--manifest", default=None, help="models/manifest.json to use")
    p.add_argument("--frames", type=cli.positive(int, "frames to send", zero_ok=True), default=0,
                   help="stop after N frames sent (default 0: run until the source ends or Ctrl-C)")
    p.add_argument("--fps", type=cli.positive(float, "frames per second"), default=30.0,
                   help="target frame rate (default 30)")
    p.add_argument("--reconnect-timeout", type=cli.positive(float, "seconds"), default=60.0, metavar="S",
                   help="how long to wait for a receiver in the room, at start and after losing one, "
                        "before giving up with exit code 1 (default 60)")
    p.add_argument("--verify", action="store_true",
                   help="also run the full model locally and compare the receiver's logits bit for bit")
    p.add_argument("--compact-replies", action="store_true",
                   help="ask the receiver for compact replies (label, name and timing; no probs or "
                        "logits): less for it to do per frame; ignored with --verify, which needs the logits")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout at exit")
    p.add_argument("--log", type=Path, default=None, help="write one JSON line per frame to FILE")
    p.add_argument("--threads", type=cli.positive(int, "ONNX Runtime threads"), default=1,
                   help="ONNX Runtime threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    ice.add_ice_options(p)
    add_access_options(p)
    add_event_loop_option(p)
    add_cpus_option(p)
    cli.add_log_level(p, "warning")
    return p.parse_args(argv)


def _one_line_error(message: str) -> NoReturn:
    """A bad option is one line (argparse's default adds the whole usage), exit code 2."""
    print(f"{PROG}: {message} (see python sender.py --help)", file=sys.stderr)
    sys.exit(cli.EXIT_USAGE)


def status_line(stream: SenderStream) -> str:
    led, rates = stream.ledger, stream.publisher.last_rates
    p50, p99 = led.percentiles(recent=True)
    bw = (f"payload {rates.payload_bytes_sent_ps / 1000:7.1f} kB/s  wire {rates.wire_bytes_sent_ps / 1000:7.1f} kB/s"
          if rates else "payload     - kB/s  wire     - kB/s")
    lat = f"p50 {p50:5.1f} ms p99 {p99:5.1f} ms" if p50 is not None else "p50     - ms p99     - ms"
    state = "" if stream.link is not None else "  NO RECEIVER"
    return (f"seq {led.sent:6d}  {led.fps():5.1f} fps  {bw}  label {led.last_label or '-':<10}  "
            f"{lat}  drops {led.dropped_sender.total() + led.dropped_receiver.total()}  lost {led.lost}{state}")


async def show_status(stream: SenderStream) -> None:
    tty = sys.stderr.isatty()
    while True:
        await asyncio.sleep(1.0)
        sys.stderr.write(("\r" if tty else "") + status_line(stream) + ("" if tty else "\n"))
        sys.stderr.flush()


def _points_if_any(args: argparse.Namespace, manifest: Manifest) -> OperatingPoints | None:
    """The operating points for the stats' leakage figure; a fixed split runs without them."""
    try:
        return OperatingPoints.load(args.points or manifest.path.parent / "operating_points.json")
    except ValueError as exc:
        log.info("no leakage figures in the stats: %s", exc)
        return None


def choose(args: argparse.Namespace, manifest: Manifest) -> tuple[str, CodecSpec, bool, dict | None]:
    """(split, codec, int8 head, the chosen operating point or None) from the command line."""
    if args.split == "adaptive" and args.codec:
        raise ValueError("--split adaptive chooses the codec too: drop --codec, or name a split")
    if args.split != "auto":
        point = manifest.split(args.split)  # an unknown split fails before the camera opens
        return args.split, point.codec(args.codec or "float32"), args.int8_head, None
    if args.codec:
        raise ValueError("--split auto chooses the codec too: drop --codec, or name a split")
    points = OperatingPoints.load(args.points or manifest.path.parent / "operating_points.json")
    op = points.choose(args.max_drop, set(manifest.splits), True if args.int8_head else None,
                       portable=not args.zstd, max_ssim=args.max_ssim)
    log.warning("auto: %s", op.describe(points.full_top1))
    choice = {"split": op.split, "codec": op.codec, "head": op.head, "payload_bytes": op.payload_bytes,
              "top1": op.top1, "leakage": op.leakage.as_dict() if op.leakage else None,
              "max_drop": args.max_drop, "max_ssim": args.max_ssim, "full_top1": points.full_top1}
    return op.split, manifest.split(op.split).codec(op.codec), op.head == "int8", choice


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run; the summary, or GaveUp (with the summary) when it could not finish."""
    ice_config = ice.from_args(args)  # a bad ICE list fails here, before the camera opens
    credentials = credentials_from(args)  # and so does an unreadable --ca
    log.info("%s", ice_config.describe())
    if ice_config.aiortc_ignored:
        log.warning("aiortc uses one STUN and one TURN url; ignored: %s", ", ".join(ice_config.aiortc_ignored))
    manifest = Manifest.load(args.manifest)
    adaptive = None
    if args.split == "adaptive":
        adaptive = switching.build(manifest, args.points, args.max_drop, args.fps, int8_head=True if args.int8_head else None,
                                   portable=not args.zstd, threads=args.threads, device_profile=args.device_profile,
                                   max_ssim=args.max_ssim)
        p0 = adaptive.point
        log.warning("adaptive: %d candidate points, starting at %s", len(adaptive.controller.points), p0.key)
        split, codec, int8, choice = p0.split, adaptive.choice.codec, p0.head == "int8", None
    else:
        split, codec, int8, choice = choose(args, manifest)
    camera = int(args.camera) if args.camera and args.camera.isdigit() else args.camera
    source = open_source(camera=camera, video=args.video, loop=args.loop)
    compute = HeadCompute(manifest, split, color=source.color, verify=args.verify,
                          threads=args.threads, int8=int8)
    # line-buffered: the log is for watching a run (tail -f), and a line a frame is cheap
    log_file = open(args.log, "w", buffering=1) if args.log else None  # noqa: SIM115 (closed in finally)
    ledger = Ledger(manifest.classes, log_file)
    opts = StreamOptions(split=split, codec=codec, frames=args.frames, fps=args.fps, receiver_name=args.receiver,
                         reconnect_timeout=args.reconnect_timeout,
                         compact_replies=args.compact_replies and not args.verify,
                         points=_points_if_any(args, manifest))
    signaling = SignalingClient(args.server, args.pool or args.room, "sender", args.name, credentials=credentials,
                                pool=args.pool is not None)
    stream = SenderStream(signaling, compute, source, ledger, opts, ice_config)
    stream.adaptive = adaptive
    status = None
    _on_signals(stream)
    totals: dict[str, int] = {}
    try:
        try:
            await stream.connect()
        except NoReceiver:
            if not stream.interrupted:
                raise
        else:
            _on_signals(stream)  # again: python-engineio installs its own SIGINT handler on connect
            if not args.quiet:
                status = asyncio.create_task(show_status(stream))
            await stream.run()
        totals = await stream.totals()
    finally:
        if status:
            status.cancel()
            sys.stderr.write("\n")
        await stream.close()
        source.close()
        if log_file:
            log_file.close()
    summary = ledger.summary()
    summary.update(split=split, codec=codec.name, head="int8" if int8 else "float32",
                   source=source.name, receiver=stream.receiver_id, receivers=stream.receivers,
                   interrupted=stream.interrupted, security=stream.last_security, **totals)
    if choice:
        summary["operating_point"] = choice
    if adaptive is not None:
        summary.update(split="adaptive", codec=None, head=None, **adaptive.summary())
    outage = ledger.open_outage()
    if stream.gave_up:
        raise GaveUp(stream.gave_up, summary)
    if outage is not None and not stream.interrupted:
        raise GaveUp(f"the source ended while no receiver was connected (receiver {outage.receiver} lost: "
                     f"{outage.cause})", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cli.setup_logging(args.log_level)
    try:
        if args.cpus:
            pin(args.cpus)  # before the head's session and the capture thread exist
        summary = run_with_loop(_main(args), args.event_loop)
    except GaveUp as exc:
        why, summary = exc.args
        if args.json:
            print(json.dumps(summary))
        print(f"{PROG}: {why}", file=sys.stderr)
        return cli.EXIT_FAILED
    except NoReceiver as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return cli.EXIT_FAILED
    except (ModelError, CaptureError, SignalingError, ValueError, OSError) as exc:
        return cli.fail(PROG, exc)
    except socketio.exceptions.TimeoutError:
        return cli.fail(PROG, f"the signaling server at {args.server} did not answer in time "
                              "(busy, or not a SplitRTC server?)")
    except socketio.exceptions.SocketIOError as exc:
        return cli.fail(PROG, f"signaling with {args.server} failed: {exc or type(exc).__name__}")
    if summary is None:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary))
    if not summary["accounted"]:
        print(f"{PROG}: the frame accounting does not balance (a bug): see the summary", file=sys.stderr)
        return cli.EXIT_FAILED
    return cli.EXIT_OK


def _on_signals(stream: SenderStream) -> None:
    """First Ctrl-C (or SIGTERM): stop capturing, collect outstanding replies, print the
    summary. Second: give up at once."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def handle() -> None:
        if stream.stopping and task is not None:
            task.cancel()
        stream.stop()
    with contextlib.suppress(NotImplementedError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handle)


async def _main(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        return await run(args)
    except asyncio.CancelledError:
        return None
