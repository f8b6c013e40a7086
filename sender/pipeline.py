"""The per-frame path, top to bottom: capture -> preprocess -> head -> encode -> send.

Each step hands the next a typed value: ``Captured`` (the source's frame), ``HeadOutput``
(the latent, the --verify reference and when the head finished), ``Encoded`` (the data-channel
messages and what the ledger needs to account for them). There is no frame queue anywhere:
the loop reads a frame only when it is ready for one; if compute falls behind, the pacer
skips capture deadlines (counted as ``stale``), and when the frame cannot go out (no receiver,
channel backed up or closing) it is dropped before encoding and counted with that reason, so
latency cannot build up behind old frames. Where frames go is the ``Outlet``'s business
(``sender.stream``: which receiver, whether it is alive); this module only asks it.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from splitcore.process.cli import logger
from splitcore.runtime.models import Runner
from splitcore.wire import codecs
from splitcore.wire.codecs import CodecSpec
from splitcore.wire.frame import Header, encode

from .capture import frames
from .head import HeadCompute
from .ledger import Ledger
from .pacer import Pacer, pacer_for
from .source import Captured, FrameSource

log = logger("sender.pipeline")


@dataclass(frozen=True, slots=True)
class Choice:
    """The operating point one frame uses (``--split adaptive``): read once, before its head
    runs, and carried to encoding, so a switch between frames never mixes two points."""

    split: str
    codec: CodecSpec
    head: str      # "float32" or "int8"
    runner: Runner


@dataclass(frozen=True, slots=True)
class HeadOutput:
    """What the head made of one frame. ``latent`` (and ``reference``, the full model's
    logits for --verify) are the runners' reused buffers: valid until the next frame, which
    is not read before this one is encoded. ``head_done`` is ``time.monotonic()`` seconds."""

    frame: Captured
    latent: np.ndarray
    reference: np.ndarray | None
    head_done: float
    choice: Choice | None = None
    head_ms: float = 0.0  # the head alone, for the adaptive profile's refresh


@dataclass(frozen=True, slots=True)
class Encoded:
    """One frame ready for the channel: its messages (fragments, header on each) and its
    identity for the ledger. ``capture_ms``/``head_done_ms`` are monotonic ms."""

    seq: int
    frame_index: int
    capture_ms: float
    head_done_ms: float
    reference: np.ndarray | None
    messages: list[bytes]
    split: str = ""
    codec: str = ""
    head: str = ""
    head_ms: float = 0.0
    encode_ms: float = 0.0


class Channel(Protocol):
    """What sending needs of an ``RTCDataChannel``."""

    def send(self, data: bytes) -> None: ...


class Outlet(Protocol):
    """Where frames go: a channel to send on now, or the reason this frame is dropped
    (``no_receiver``, ``channel_closed``, ``backpressure``); ``stopping`` ends the loop."""

    stopping: bool

    def channel_for_frame(self) -> Channel | str: ...


@dataclass
class PipelineOptions:
    split: str
    codec: CodecSpec
    frames: int = 0      # stop after this many sent; 0: until the source ends or stop
    fps: float = 30.0    # at most this rate (a source's own lower rate wins)


class Pipeline:
    """Runs the per-frame path for one source into one ``Outlet``, accounting in ``ledger``."""

    def __init__(self, source: FrameSource, compute: HeadCompute, ledger: Ledger, opts: PipelineOptions) -> None:
        self.source, self.compute, self.ledger, self.opts = source, compute, ledger, opts
        self._seqs = itertools.count()
        self.pacer: Pacer | None = None
        self.frame_messages = 0  # data-channel messages that carried frames (pings are not counted)
        self.frame_bytes = 0
        self.choice: Choice | None = None  # set by the adaptive controller; None: opts and compute
        self.on_encoded: Callable[[Encoded], None] | None = None  # cost samples for the controller

    # 1. capture happens in ``sender.capture.frames``, which calls ``infer`` on its thread.

    def infer(self, frame: Captured) -> HeadOutput:
        """2-3. Preprocess and head (and the full model with --verify): capture thread."""
        c, choice = self.compute, self.choice  # one read: the point this frame uses
        x = c.pre(frame.image)
        t0 = time.perf_counter()
        latent = (choice.runner if choice is not None else c.head).run(x)
        head_ms = (time.perf_counter() - t0) * 1000
        reference = c.full.run(x)[0].copy() if c.full is not None else None
        return HeadOutput(frame, latent, reference, time.monotonic(), choice, head_ms)

    def encode(self, out: HeadOutput, seq: int) -> Encoded:
        """4. Quantize/compress the latent and split it into data-channel messages."""
        opts, ch = self.opts, out.choice
        split, spec = (ch.split, ch.codec) if ch is not None else (opts.split, opts.codec)
        capture_ms = out.frame.timestamp * 1000
        t0 = time.perf_counter()
        dtype, codec, params, payload = codecs.encode(out.latent, spec)
        header = Header(seq & 0xFFFFFFFF, capture_ms, split, tuple(out.latent.shape),
                        dtype, codec, spec.compression, params=params)
        messages = encode(header, payload)
        return Encoded(seq, out.frame.index, capture_ms, out.head_done * 1000, out.reference, messages,
                       split, spec.name, ch.head if ch is not None else "", out.head_ms,
                       (time.perf_counter() - t0) * 1000)

    def send(self, channel: Channel, frame: Encoded) -> None:
        """5. Hand every fragment to the channel, then open the frame's account."""
        for m in frame.messages:
            channel.send(m)
            self.frame_bytes += len(m)
        self.frame_messages += len(frame.messages)
        if frame.head:  # adaptive: each --log line names the frame's point; the ledger counts its bytes
            self.ledger.on_sent(frame.seq & 0xFFFFFFFF, frame.capture_ms, frame.reference, frame.frame_index,
                                frame.head_done_ms, point=(frame.split, frame.codec, frame.head),
                                nbytes=sum(len(m) for m in frame.messages))
            if self.on_encoded is not None:
                self.on_encoded(frame)
        else:
            self.ledger.on_sent(frame.seq & 0xFFFFFFFF, frame.capture_ms, frame.reference, frame.frame_index,
                                frame.head_done_ms)
        if frame.seq % 300 == 0:
            log.debug("seq %d sent, %d message(s)", frame.seq, len(frame.messages))

    async def run(self, outlet: Outlet, on_frame: Callable[[], None] | None = None) -> None:
        """Stream until ``opts.frames`` are sent, the source ends or ``outlet.stopping``."""
        self.pacer = pacer_for(self.source, self.opts.fps)
        async with aclosing(frames(self.source, self.pacer, self.infer)) as stream:
            async for out in stream:
                self._count_stale()
                self.ledger.on_captured()
                target = outlet.channel_for_frame()
                if isinstance(target, str):
                    self.ledger.drop_before_send(target)
                else:
                    self.send(target, self.encode(out, next(self._seqs)))
                if on_frame is not None:
                    on_frame()
                if outlet.stopping or (self.opts.frames and self.ledger.sent >= self.opts.frames):
                    break
        self._count_stale()  # deadlines missed just before the source ended

    def _count_stale(self) -> None:
        """Bring the ledger's stale count up to the pacer's skipped deadlines."""
        if self.pacer is not None and self.pacer.dropped > self.ledger.dropped_sender["stale"]:
            self.ledger.on_skipped(self.pacer.dropped - self.ledger.dropped_sender["stale"])
