"""Checking a head/tail pair against the full model with ONNX Runtime on the same inputs."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from .errors import OnnxCutError

if TYPE_CHECKING:
    import onnxruntime as ort


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of comparing head->tail against the full model on the same inputs."""

    samples: int
    max_abs_diff: float
    bit_exact: bool
    tolerance: float

    @property
    def ok(self) -> bool:
        """Bit-exact, or every element within ``tolerance``."""
        return self.bit_exact or self.max_abs_diff <= self.tolerance


def _session(model: onnx.ModelProto, threads: int, opt_level: str) -> ort.InferenceSession:
    """A CPU session; the same options for all three models so kernels are comparable."""
    import onnxruntime as ort  # imported lazily: listing and cutting do not need a runtime

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if opt_level not in levels:
        raise OnnxCutError(f"unknown opt_level {opt_level!r}; use one of {sorted(levels)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[opt_level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxCutError(f"onnxruntime cannot load {model.graph.name!r}: "
                           f"{str(exc).splitlines()[0]}") from exc


def _random_feed(sess: ort.InferenceSession, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs in [0, 1) (floats) or {0, 1} (ints/bools); dynamic dims become 1."""
    feed = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        kind = inp.type[len("tensor("):-1]
        dtype = {"float": np.float32, "double": np.float64, "float16": np.float16,
                 "bool": np.bool_}.get(kind) or np.dtype(kind)
        if np.issubdtype(dtype, np.floating):
            feed[inp.name] = rng.random(shape).astype(dtype)
        else:
            feed[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feed


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[bool, float]:
    """(bitwise equal, max |a-b|); NaN vs NaN counts as equal, NaN vs number as inf."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, float("inf")
    same = a.tobytes() == b.tobytes()
    if a.size == 0:
        return same, 0.0
    x, y = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y))
    return same, float(np.nan_to_num(diff, nan=np.inf).max())


def verify(full: onnx.ModelProto, head: onnx.ModelProto, tail: onnx.ModelProto,
           inputs: Mapping[str, np.ndarray] | None = None, samples: int = 8, seed: int = 0,
           tolerance: float = 0.0, threads: int = 1, opt_level: str = "all") -> VerifyResult:
    """Run full and head->tail on the same inputs and compare every output.

    ``inputs`` fixes one sample (``samples`` is then ignored); otherwise ``samples`` random
    inputs are drawn with ``seed``. ``threads`` defaults to 1 so the check is deterministic
    and cheap; use the thread count of the deployment to check exactly what it will run.
    """
    s_full, s_head, s_tail = (_session(m, threads, opt_level) for m in (full, head, tail))
    if len(s_head.get_outputs()) != 1 or len(s_tail.get_inputs()) != 1:
        raise OnnxCutError("head must have exactly one output and tail exactly one input "
                           "(use a pair written by `cut`)")
    latent_in = s_tail.get_inputs()[0].name
    out_names = [o.name for o in s_full.get_outputs()]
    if sorted(out_names) != sorted(o.name for o in s_tail.get_outputs()):
        raise OnnxCutError("the tail's outputs differ from the full model's; "
                           "was this pair cut from this model?")
    head_in = {i.name for i in s_head.get_inputs()}
    rng = np.random.default_rng(seed)
    feeds = [dict(inputs)] if inputs is not None else [_random_feed(s_full, rng)
                                                        for _ in range(samples)]
    exact, worst = True, 0.0
    for feed in feeds:
        want = s_full.run(out_names, feed)
        latent = s_head.run(None, {k: v for k, v in feed.items() if k in head_in})
        got = s_tail.run(out_names, {latent_in: latent[0]})
        for a, b in zip(want, got, strict=True):
            same, diff = _compare(np.asarray(a), np.asarray(b))
            exact, worst = exact and same, max(worst, diff)
    return VerifyResult(samples=len(feeds), max_abs_diff=worst, bit_exact=exact,
                        tolerance=tolerance)
