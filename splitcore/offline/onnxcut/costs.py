"""Tensor types and shapes, and parameter / multiply-add (MAC) counts of a model or half."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .graph import _Graph, _index

# op type -> index of the weight input, for ops whose MACs = out elements x prod(W[1:]).
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})


@dataclass(frozen=True)
class Cost:
    """Parameter and multiply-add counts; ``uncounted`` lists MAC ops with unknown shapes."""

    params: int
    macs: int
    uncounted: tuple[str, ...] = ()


def _infer_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Tensor name -> type; falls back to the model's own value_info if inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # custom ops / too-big models: sizes become "unknown", cuts still work
        inferred = model
    g = inferred.graph
    types = {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}
    for init in model.graph.initializer:
        types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type, init.dims))
    return types


def _dims(tp: onnx.TypeProto | None) -> tuple[int | str | None, ...] | None:
    """Shape with int dims, symbolic names as str, fully unknown dims as None."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tp.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return tuple(out)


def _numel(shape: Sequence[int | str | None] | None) -> int | None:
    """Element count with every non-numeric dim taken as 1 (i.e. per batch item)."""
    if shape is None:
        return None
    return int(np.prod([d if isinstance(d, int) else 1 for d in shape], dtype=np.int64))


def _np_dtype(tp: onnx.TypeProto | None) -> str | None:
    """numpy dtype name of a tensor type, None when unknown."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.elem_type:
        return None
    return np.dtype(helper.tensor_dtype_to_np_dtype(tp.tensor_type.elem_type)).name


def _node_macs(node: onnx.NodeProto, types: Mapping[str, onnx.TypeProto]) -> int | None:
    """MACs of one node; 0 for ops we do not count, None if a counted op lacks shapes."""
    def shape(k: int) -> tuple[int | str | None, ...] | None:
        return _dims(types.get(node.input[k])) if len(node.input) > k else None

    y = _numel(_dims(types.get(node.output[0]))) if node.output else None
    if node.op_type in _CONV_WEIGHT or node.op_type == "ConvTranspose":
        # Conv: each output element sums Cin/group x kernel products = prod(W.shape[1:]).
        # ConvTranspose: each *input* element scatters into prod(W.shape[1:]) outputs.
        w = shape(_CONV_WEIGHT.get(node.op_type, 1))
        n = _numel(shape(0)) if node.op_type == "ConvTranspose" else y
        return None if w is None or n is None else n * (_numel(w[1:]) or 0)
    if node.op_type == "Gemm":
        a = shape(0)
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        if a is None or y is None or len(a) != 2:
            return None
        return y * (_numel(a[:1] if trans_a else a[1:]) or 0)
    if node.op_type in _MATMUL_OPS:
        a = shape(0)
        return None if a is None or y is None or not a else y * (_numel(a[-1:]) or 0)
    return 0


def _macs_by_node(g: _Graph, types: Mapping[str, onnx.TypeProto]) -> dict[int, int | None]:
    """MACs of each input-dependent node (constant subgraphs are folded once at load)."""
    return {i: _node_macs(g.nodes[i], types) for i in g.ancestors}


def cost(model: onnx.ModelProto) -> Cost:
    """Parameters and multiply-adds (MACs) of a model, a head or a tail.

    params = element count of all initializers (Constant-node values are not counted).
    MACs count only the ops that dominate CNN compute: Conv/ConvInteger/QLinearConv
    (out elements x Cin/group x kernel size), ConvTranspose (in elements x Cout/group x
    kernel size), Gemm and MatMul variants (M x N x K, batched MatMul included).
    Elementwise ops, pooling, normalisation and activations count 0. Symbolic dims count
    as 1 (per batch item). Nodes computed from constants only are skipped since runtimes
    fold them once, which keeps cost(head) + cost(tail) == cost(full).
    """
    g = _index(model)
    per_node = _macs_by_node(g, _infer_types(model))
    params = sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer)
    uncounted = tuple(g.nodes[i].name or str(i) for i, m in per_node.items() if m is None)
    return Cost(params=params, macs=sum(m or 0 for m in per_node.values()),
                uncounted=uncounted)
