"""The model manifest and the ONNX Runtime sessions both sides run.

A session is created once per model file for the whole run and checked against the
manifest (sha256, input and output names and shapes) before the first frame, so a wrong or
stale file is refused at start-up with a message that says which file and what to do,
never discovered as a shape error in the middle of a stream.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from splitcore.wire import codecs

if TYPE_CHECKING:
    import onnxruntime as ort

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.json"


class ModelError(RuntimeError):
    """A model file or manifest problem, phrased for the person running the program."""


@dataclass(frozen=True)
class ModelFile:
    path: Path
    sha256: str
    params: int
    macs: int


@dataclass(frozen=True)
class SplitPoint:
    id: str
    tensor: str
    shape: tuple[int, ...]
    bytes: int
    head: ModelFile
    tail: ModelFile
    head_int8: ModelFile | None = None
    calibration: dict | None = None  # codec parameters calibrated on training images
    # The network this split's head and tail are cut from, when it is not the manifest's
    # ``full``: a split with layers of its own (the defended ``stage1-private`` adds a learned
    # bottleneck), whose head -> tail equals this model, not the shared one.
    full: ModelFile | None = None

    def codec(self, name: str) -> codecs.CodecSpec:
        """The codec ``name`` with this split's calibrated parameters (ValueError if unknown)."""
        return codecs.parse(name, self.calibration)


@dataclass(frozen=True)
class Manifest:
    path: Path
    classes: tuple[str, ...]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    full: ModelFile
    splits: dict[str, SplitPoint]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Manifest:
        path = Path(path) if path else DEFAULT_MANIFEST
        try:
            raw = json.loads(path.read_text())
            root = path.parent

            def entry(e: dict) -> ModelFile:
                return ModelFile(root / e["file"], e["sha256"], int(e["params"]), int(e["macs"]))
            splits = {s["id"]: SplitPoint(s["id"], s["tensor"], tuple(s["shape"]), int(s["bytes"]),
                                          entry(s["head"]), entry(s["tail"]),
                                          entry(s["head_int8"]) if "head_int8" in s else None,
                                          s.get("calibration"), entry(s["full"]) if "full" in s else None)
                      for s in raw["splits"]}
            return cls(path, tuple(raw["classes"]), raw["input"]["name"], tuple(raw["input"]["shape"]),
                       raw["output"]["name"], entry(raw["full"]), splits)
        except FileNotFoundError:
            raise ModelError(f"no model manifest at {path}: run `python -m training.export` "
                             "or restore models/ from git") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path} is not a valid SplitRTC manifest ({type(exc).__name__}: {exc})") from None

    def split(self, split_id: str) -> SplitPoint:
        try:
            return self.splits[split_id]
        except KeyError:
            raise ModelError(f"unknown split {split_id!r}; this manifest has: "
                             f"{', '.join(self.splits)}") from None


def check_file(f: ModelFile) -> None:
    if not f.path.is_file():
        raise ModelError(f"model file {f.path} is missing (listed in the manifest)")
    digest = hashlib.sha256(f.path.read_bytes()).hexdigest()
    if digest != f.sha256:
        raise ModelError(f"{f.path} does not match the manifest: sha256 {digest[:12]}..., expected "
                         f"{f.sha256[:12]}...; re-export the models or restore the file from git")


def open_session(f: ModelFile, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (one inter-op: a model
    here is a chain), its load failure phrased as a ``ModelError``. ONNX Runtime is imported
    here, at the first session: reading a manifest (a ``--workers`` parent) needs none of it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(f.path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several private exception types
        raise ModelError(f"ONNX Runtime cannot load {f.path}: {exc}") from None


class Runner:
    """One ONNX Runtime session with a single input and output, run on preallocated arrays.

    IOBinding lets every call write into the same output array, so the per-frame path does
    not allocate. The returned array is overwritten by the next ``run``: copy what you keep.
    """

    def __init__(self, f: ModelFile, in_shape: tuple[int, ...], threads: int = 1,
                 verify_sha: bool = True) -> None:
        if verify_sha:
            check_file(f)
        self.session = open_session(f, threads)
        (inp,), (out,) = self.session.get_inputs(), self.session.get_outputs()
        if not _takes(inp.shape, in_shape):
            raise ModelError(f"{f.path} takes input {inp.name}{inp.shape}, expected {list(in_shape)}")
        # a batchable tail's output batch (N) is its input's
        out_shape = [in_shape[0] if i == 0 and not isinstance(inp.shape[0], int) and d == inp.shape[0] else d
                     for i, d in enumerate(out.shape)]
        if not all(isinstance(d, int) for d in out_shape):
            raise ModelError(f"{f.path} has a dynamic output shape {out.shape}")
        self.file, self.input_name, self.output_name = f, inp.name, out.name
        self.input = np.zeros(in_shape, np.float32)
        self.output = np.zeros(out_shape, np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_output(out.name, "cpu", 0, np.float32, self.output.shape,
                                  self.output.ctypes.data)

    def run(self, x: np.ndarray | None = None) -> np.ndarray:
        """Run on ``x`` (or on ``self.input``, filled in place by the caller)."""
        src = self.input if x is None else np.ascontiguousarray(x, np.float32)
        self._binding.bind_input(self.input_name, "cpu", 0, np.float32, src.shape, src.ctypes.data)
        self.session.run_with_iobinding(self._binding)
        return self.output


def _takes(declared: list, shape: tuple[int, ...]) -> bool:
    """Whether a model input declared ``declared`` takes an array of ``shape``: the same dims,
    except that a symbolic first dim (a batchable tail's N, splitcore.offline.batchable)
    takes any batch."""
    return len(declared) == len(shape) and all(
        d == n or (i == 0 and not isinstance(d, int)) for i, (d, n) in enumerate(zip(declared, shape, strict=True)))


def full_runner(m: Manifest, threads: int = 1, split_id: str | None = None) -> Runner:
    """The whole network: the manifest's, or the one ``split_id`` is cut from (its own ``full``)."""
    own = m.split(split_id).full if split_id is not None else None
    return Runner(own or m.full, m.input_shape, threads)


def head_runner(m: Manifest, split_id: str, threads: int = 1, int8: bool = False) -> Runner:
    point = m.split(split_id)
    head = point.head_int8 if int8 else point.head
    if head is None:
        raise ModelError(f"split {split_id} has no INT8 head in {m.path}: run `python -m training.quantize`")
    return Runner(head, m.input_shape, threads)


def tail_runner(m: Manifest, split_id: str, threads: int = 1) -> Runner:
    s = m.split(split_id)
    return Runner(s.tail, s.shape, threads)
