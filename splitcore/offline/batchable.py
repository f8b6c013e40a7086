"""Batchable tails: a tail's batch dimension made the symbolic ``N``.

    python -m splitcore.offline.batchable [--manifest models/manifest.json]

The receiver runs the frames of one split that are ready together as one ONNX Runtime call
(``receiver/engine.py``), which needs a tail whose input and output take any number of rows.
A tail cut from a model traced at batch 1 declares batch 1, so this rewrites that dimension
to ``N`` and fixes the ops that would otherwise pin it: a ``Reshape`` to a constant shape
starting with 1 (its 1 becomes 0, "keep the input's batch") and a ``Flatten`` on axis 0
(becomes axis 1, the same result at batch 1). Heads stay batch 1: a sender runs one frame
at a time.

A rewritten tail is checked before it is used: a batch of random latents must give every
row's single-frame logits (within ``TOLERANCE``), so a graph that still mixes its batch
some other way is refused, not written. ``training.export`` makes every tail it cuts
batchable, so a re-export needs no extra step; this command converts a ``models/``
directory exported before that, in place, and rewrites only the ``tail`` entries'
``sha256`` and ``bytes`` in the manifest. Running it again changes nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from splitcore.runtime.models import DEFAULT_MANIFEST

BATCH = "N"
TOLERANCE = 1e-5   # largest |batched - single| logit allowed
CHECK_ROWS = 5     # rows in the check's batch


class BatchableError(ValueError):
    """A tail that cannot be made batchable, or whose rewrite does not give single-frame logits."""


def _constant_shape(model: onnx.ModelProto, name: str) -> onnx.TensorProto | None:
    """The tensor ``name`` if it is an initializer or a Constant node's value, else None."""
    for t in model.graph.initializer:
        if t.name == name:
            return t
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return a.t
    return None


def _unpin_ops(model: onnx.ModelProto) -> None:
    """Reshape to a constant (1, ...) -> (0, ...); Flatten axis 0 -> axis 1 (in place)."""
    users: dict[str, int] = {}
    for node in model.graph.node:
        for t in node.input:
            users[t] = users.get(t, 0) + 1
    for node in model.graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1:
            t = _constant_shape(model, node.input[1])
            if t is None:
                continue  # a computed shape follows the input's batch already
            shape = numpy_helper.to_array(t)
            if shape.ndim != 1 or not len(shape) or shape[0] != 1:
                continue
            if users[node.input[1]] > 1:
                raise BatchableError(f"Reshape {node.name!r} pins the batch to 1 with a shape "
                                     f"({node.input[1]}) that other nodes use too")
            shape = shape.copy()
            shape[0] = 0
            t.CopyFrom(numpy_helper.from_array(shape, t.name))
        elif node.op_type == "Flatten":
            for a in node.attribute:
                if a.name == "axis" and a.i == 0:
                    a.i = 1


def batchable(tail: onnx.ModelProto) -> onnx.ModelProto:
    """``tail`` with its one input's and its outputs' first dimension the symbolic ``N``
    (a copy; a tail that is batchable already comes back equal)."""
    model = onnx.ModelProto()
    model.CopyFrom(tail)
    g = model.graph
    initializers = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in initializers]
    if len(inputs) != 1:
        raise BatchableError(f"a tail has one input; this graph has {len(inputs)}")
    for v in [*inputs, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if not dims:
            raise BatchableError(f"{v.name} has no declared shape")
        if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
            raise BatchableError(f"{v.name} has batch {dims[0].dim_value}; expected 1 or {BATCH}")
        dims[0].dim_param = BATCH
    del g.value_info[:]   # intermediate shapes recorded at batch 1 would contradict N
    _unpin_ops(model)
    return model


def check(data: bytes, name: str = "tail", rows: int = CHECK_ROWS, seed: int = 0) -> float:
    """Run ``rows`` random latents as one batch and one by one; the largest logit difference.
    BatchableError if it exceeds TOLERANCE or the model does not take a batch."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several private exception types
        raise BatchableError(f"{name}: ONNX Runtime cannot load the rewritten tail: {exc}") from None
    (inp,) = session.get_inputs()
    x = np.random.default_rng(seed).standard_normal((rows, *inp.shape[1:])).astype(np.float32)
    try:
        batched = session.run(None, {inp.name: x})[0]
    except Exception as exc:
        raise BatchableError(f"{name}: the rewritten tail does not run on a batch of {rows}: {exc}") from None
    single = np.concatenate([session.run(None, {inp.name: x[i:i + 1]})[0] for i in range(rows)])
    if batched.shape != single.shape:
        raise BatchableError(f"{name}: a batch of {rows} gives {batched.shape}, not {single.shape}: "
                             "the graph mixes its batch")
    diff = float(np.abs(batched - single).max())
    if not diff <= TOLERANCE:
        raise BatchableError(f"{name}: batched logits differ from single-frame ones by {diff:.3g} "
                             f"(> {TOLERANCE:g}): the graph mixes its batch")
    return diff


def convert(manifest: Path = DEFAULT_MANIFEST) -> list[tuple[str, bool, float]]:
    """Make every tail listed in ``manifest`` batchable, in place; (split, rewritten, check
    difference) per split. Every tail is rewritten and checked before any file is written,
    and the manifest is written only if a tail entry changed."""
    raw = json.loads(manifest.read_text())
    tails: list[tuple[dict, Path, bytes, bytes, float]] = []
    for split in raw["splits"]:
        path = manifest.parent / split["tail"]["file"]
        old = path.read_bytes()
        data = batchable(onnx.load_from_string(old)).SerializeToString()
        tails.append((split, path, old, data, check(data, path.name)))
    changed = False
    for split, path, old, data, _ in tails:
        if data != old:
            path.write_bytes(data)
        entry = split["tail"]
        digest = hashlib.sha256(data).hexdigest()
        if (entry["sha256"], entry["bytes"]) != (digest, len(data)):
            entry["sha256"], entry["bytes"] = digest, len(data)
            changed = True
    if changed:
        manifest.write_text(json.dumps(raw, indent=2) + "\n")
    return [(split["id"], data != old, diff) for split, _, old, data, diff in tails]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = p.parse_args(argv)
    try:
        done = convert(args.manifest)
    except BatchableError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{'split':<12}{'tail':<12}{'max |batched - single|':>24}")
    for sid, rewritten, diff in done:
        print(f"{sid:<12}{'rewritten' if rewritten else 'unchanged':<12}{diff:>24.3g}")


if __name__ == "__main__":
    main()
