"""What the receiver knows about each split it serves: one ``SplitTail`` per manifest split.

Everything a frame is checked against (split id, shape, the codec's largest payload) and
everything it is decoded and inferred with (channel calibration, tail runner, buffers) lives
in one object per split, so the checks and the decoding can never disagree about a split.

``SplitTable.limit`` is the gate a frame header passes before any byte of its payload is
stored: an unknown split, a wrong shape or a payload larger than the codec can ever need is
refused from the header alone, so nothing a sender declares decides how much we allocate.

``TailRunner`` is a split's tail on arrays allocated once, ``max_batch`` rows deep: the
engine copies the latents of one batch into the first rows and runs them in one ONNX
Runtime call. A tail whose batch dimension is fixed at 1 (a ``models/`` directory from
before ``python -m splitcore.offline.batchable``) still works: its rows run one call each.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splitcore.runtime.models import Manifest, ModelError, ModelFile, check_file, open_session
from splitcore.wire import codecs
from splitcore.wire.codecs import ChannelCalibration
from splitcore.wire.frame import FrameError, Header


class TailRunner:
    """One tail's ONNX Runtime session on preallocated ``(max_batch, ...)`` input and output
    arrays. ``run(n)`` infers the first ``n`` rows of ``input`` and returns the first ``n``
    rows of ``output``, a view overwritten by the next run: copy what you keep.

    Not ``models.Runner``, which binds one fixed shape: a batch binds ``n`` rows of the same
    arrays by address on every call, so no call allocates an array.
    """

    def __init__(self, f: ModelFile, shape: tuple[int, ...], max_batch: int, threads: int = 1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        check_file(f)
        self.session = open_session(f, threads)
        (inp,), (out,) = self.session.get_inputs(), self.session.get_outputs()
        # a batchable tail declares a symbolic first dimension (N); an older one, batch 1
        self.batchable = not isinstance(inp.shape[0], int)
        if (len(inp.shape) != len(shape) or list(inp.shape[1:]) != list(shape[1:])
                or not (self.batchable or inp.shape[0] == shape[0] == 1)):
            raise ModelError(f"{f.path} takes input {inp.name}{inp.shape}, expected {['N', *shape[1:]]}")
        if not out.shape or not all(isinstance(d, int) for d in out.shape[1:]) \
                or isinstance(out.shape[0], int) == self.batchable:
            raise ModelError(f"{f.path} has output {out.name}{out.shape}; a tail's output is "
                             f"{'[N, ...]' if self.batchable else '[1, ...]'} with a static rest")
        self.file, self.max_batch = f, max_batch
        self.input = np.zeros((max_batch, *shape[1:]), np.float32)
        self.output = np.zeros((max_batch, *out.shape[1:]), np.float32)
        self._names = inp.name, out.name
        self._in_shapes = [(n, *shape[1:]) for n in range(max_batch + 1)]
        self._out_shapes = [(n, *out.shape[1:]) for n in range(max_batch + 1)]
        # row r of each array by address, computed once (``ndarray.ctypes`` builds an object)
        self._in_row = self.input.ctypes.data, self.input.strides[0]
        self._out_row = self.output.ctypes.data, self.output.strides[0]
        self._binding = self.session.io_binding()

    def calls(self, n: int) -> int:
        """ONNX Runtime calls ``run(n)`` makes: one, or one a row for a batch-1 tail."""
        return 1 if self.batchable else n

    def run(self, n: int) -> np.ndarray:
        """Infer rows ``[0, n)`` of ``input`` (filled in place by the caller)."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch of {n} rows; this runner takes 1 to {self.max_batch}")
        if self.batchable:
            self._call(0, n)
        else:
            for row in range(n):
                self._call(row, 1)
        return self.output[:n]

    def _call(self, row: int, n: int) -> None:
        b, (i, o), (ia, ib), (oa, ob) = self._binding, self._names, self._in_row, self._out_row
        b.bind_input(i, "cpu", 0, np.float32, self._in_shapes[n], ia + row * ib)
        b.bind_output(o, "cpu", 0, np.float32, self._out_shapes[n], oa + row * ob)
        self.session.run_with_iobinding(b)


@dataclass(frozen=True)
class SplitTail:
    """One split as the receiver serves it. ``runner`` is only ever used from the engine's
    single worker thread."""

    id: str
    shape: tuple[int, ...]
    runner: TailRunner = field(repr=False)
    channels: ChannelCalibration | None = field(default=None, repr=False)

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """A session's two decode targets for this split: one being inferred, one waiting.
        Allocated once per session and split, on the session's first frame of the split."""
        return np.zeros(self.shape, np.float32), np.zeros(self.shape, np.float32)


def load_splits(manifest: Manifest, threads: int = 1, max_batch: int = 1) -> dict[str, SplitTail]:
    """Every split of the manifest, tails loaded now (runners ``max_batch`` rows deep): a bad
    model file stops the receiver at start-up, before anyone connects."""
    out: dict[str, SplitTail] = {}
    for sid, point in manifest.splits.items():
        channels = None
        if point.calibration and "int8_channel" in point.calibration:
            channels = point.codec("int8-channel").channels
        runner = TailRunner(point.tail, tuple(point.shape), max_batch, threads)
        out[sid] = SplitTail(sid, tuple(point.shape), runner, channels)
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
