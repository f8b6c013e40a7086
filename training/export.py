"""Export a trained SplitNet to ONNX: the full model and a head/tail pair at every boundary.

    python -m training.export build/splitnet.pt --out models/

The full model is exported once; each pair is then *cut out of that one graph* with
``splitcore.offline.onnxcut`` (the same tool users run on their own models), so head and tail carry
exactly the full model's nodes and weights, and head -> tail equals the full model bit for
bit in ONNX Runtime. Each tail is then made batchable (``splitcore.offline.batchable``: its
batch dimension is the symbolic ``N``, checked to give single-frame logits row by row), so
the receiver can run the frames of one split that are ready together in one call; heads
stay batch 1. ``models/manifest.json`` describes every file (see README).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import sys
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from splitcore.offline import batchable, onnxcut  # noqa: E402
from splitcore.offline.datasets import CIFAR10_CLASSES  # noqa: E402
from training.net import Scale, SplitNet  # noqa: E402

INPUT, OUTPUT = "input", "logits"
# split id -> (block index whose scope holds the cut, op type of the cut node; None: the
# block's last node, whichever op ends it: a Relu, or a Conv where the boundary is linear)
BOUNDARIES = {"stem": (0, None), "stage1": (1, None), "stage2": (2, None),
              "features": (4, "Flatten")}


def fold_logit_scale(model: SplitNet) -> SplitNet:
    """Fold the fixed 1/8 logit scale into the last Linear: a power of two, so exact."""
    model = copy.deepcopy(model).eval()
    classifier = model.blocks[-1]
    for i, mod in enumerate(classifier):
        if isinstance(mod, Scale):
            linear = classifier[i - 1]
            with torch.no_grad():
                linear.weight.mul_(mod.factor)
                linear.bias.mul_(mod.factor)
            classifier[i] = torch.nn.Identity()
    return model


def export_full(model: torch.nn.Module) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), buf, input_names=[INPUT],
                      output_names=[OUTPUT], opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def name_boundaries(model: onnx.ModelProto) -> None:
    """Rename each boundary tensor to its split id, so users see 'stage1', not '/blocks.1/...'."""
    renames = {}
    for split_id, (block, op) in BOUNDARIES.items():
        scope = f"/blocks.{block}/"
        nodes = [n for n in model.graph.node if n.name.startswith(scope) and op in (None, n.op_type)]
        node = nodes[-1] if op is None else nodes[0]
        renames[node.output[0]] = split_id
    rename_tensors(model, renames)


def rename_tensors(model: onnx.ModelProto, renames: dict[str, str]) -> None:
    for node in model.graph.node:
        node.input[:] = [renames.get(t, t) for t in node.input]
        node.output[:] = [renames.get(t, t) for t in node.output]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(model: onnx.ModelProto, path: Path) -> dict:
    onnx.save(model, path)
    cost = onnxcut.cost(model)
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size,
            "params": cost.params, "macs": cost.macs}


def split_entry(full: onnx.ModelProto, split_id: str, out: Path, name: str) -> dict:
    """Cut ``full`` at the tensor ``split_id``, make the tail batchable (checked), write both
    files under ``out`` and return the split's manifest entry."""
    head, tail = onnxcut.cut(full, split_id)
    tail = batchable.batchable(tail)
    batchable.check(tail.SerializeToString(), f"{split_id} tail")
    point = next(c for c in onnxcut.candidate_cuts(full) if c.name == split_id)
    if point.shape is None:
        raise RuntimeError(f"cut {split_id} has no static shape")
    return {"id": split_id, "tensor": split_id, "shape": list(point.shape), "dtype": "float32",
            "bytes": point.float32_bytes,
            "head": file_entry(head, out / f"{name}.{split_id}.head.onnx"),
            "tail": file_entry(tail, out / f"{name}.{split_id}.tail.onnx")}


def export(ckpt: Path, out: Path, name: str = "splitnet") -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    net = SplitNet.from_checkpoint(state)
    full = export_full(fold_logit_scale(net))
    name_boundaries(full)
    onnx.checker.check_model(full)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1, "name": name, "classes": list(CIFAR10_CLASSES),
        "input": {"name": INPUT, "shape": [1, 3, 32, 32], "dtype": "float32",
                  "layout": "NCHW, RGB, values in [0,1]; normalisation is inside the graph"},
        "output": {"name": OUTPUT, "shape": [1, len(CIFAR10_CLASSES)], "dtype": "float32"},
        "full": file_entry(full, out / f"{name}.onnx"),
        "training": state.get("report", {}),
        "splits": [],
    }
    for split_id in BOUNDARIES:
        manifest["splits"].append(split_entry(full, split_id, out, name))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by training.train")
    p.add_argument("--out", type=Path, default=Path("models"))
    args = p.parse_args(argv)
    manifest = export(args.checkpoint, args.out)
    print(f"{'split':<10}{'latent shape':<18}{'bytes':>8}{'head params':>13}{'head MACs':>12}"
          f"{'tail params':>13}{'tail MACs':>12}")
    for s in manifest["splits"]:
        print(f"{s['id']:<10}{'x'.join(map(str, s['shape'][1:])):<18}{s['bytes']:>8}"
              f"{s['head']['params']:>13,}{s['head']['macs']:>12,}{s['tail']['params']:>13,}"
              f"{s['tail']['macs']:>12,}")
    full = manifest["full"]
    print(f"full model: {full['params']:,} params, {full['macs']:,} MACs, {full['bytes']:,} bytes")


if __name__ == "__main__":
    main()
