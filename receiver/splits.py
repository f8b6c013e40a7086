"""What the receiver knows about each split it serves: one ``SplitTail`` per manifest split.

Everything a frame is checked against (split id, shape, the codec's largest payload) and
everything it is decoded and inferred with (channel calibration, tail runner, buffers) lives
in one object per split, so the checks and the decoding can never disagree about a split.

``SplitTable.limit`` is the gate a frame header passes before any byte of its payload is
stored: an unknown split, a wrong shape or a payload larger than the codec can ever need is
refused from the header alone, so nothing a sender declares decides how much we allocate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splitcore.runtime.models import Manifest, Runner, tail_runner
from splitcore.wire import codecs
from splitcore.wire.codecs import ChannelCalibration
from splitcore.wire.frame import FrameError, Header


@dataclass(frozen=True)
class SplitTail:
    """One split as the receiver serves it. ``runner`` is only ever used from the engine's
    single worker thread."""

    id: str
    shape: tuple[int, ...]
    runner: Runner = field(repr=False)
    channels: ChannelCalibration | None = field(default=None, repr=False)

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """A session's two decode targets for this split: one being inferred, one waiting.
        Allocated once per session and split, on the session's first frame of the split."""
        return np.zeros(self.shape, np.float32), np.zeros(self.shape, np.float32)


def load_splits(manifest: Manifest, threads: int = 1) -> dict[str, SplitTail]:
    """Every split of the manifest, tails loaded now: a bad model file stops the receiver at
    start-up, before anyone connects."""
    out: dict[str, SplitTail] = {}
    for sid, point in manifest.splits.items():
        channels = None
        if point.calibration and "int8_channel" in point.calibration:
            channels = point.codec("int8-channel").channels
        out[sid] = SplitTail(sid, tuple(point.shape), tail_runner(manifest, sid, threads), channels)
    return out


class SplitTable:
    """The splits by id, and the header gate (``limit``) for the reassembler."""

    def __init__(self, splits: dict[str, SplitTail]) -> None:
        self.splits = splits

    def __getitem__(self, split_id: str) -> SplitTail:
        return self.splits[split_id]

    def limit(self, h: Header) -> int:
        """The largest payload frame ``h`` may have here; FrameError if this receiver cannot
        take the frame at all (unknown split, other shape, codec without parameters)."""
        tail = self.splits.get(h.split)
        if tail is None:
            raise FrameError("unknown_split", f"split {h.split!r} is not in this receiver's manifest "
                             f"({', '.join(self.splits)})", h.seq)
        if h.shape != tail.shape:
            raise FrameError("shape_mismatch", f"split {h.split} takes {list(tail.shape)}, "
                             f"frame has {list(h.shape)}", h.seq)
        return codecs.max_payload_len(h)
