"""Cut any ONNX model at one tensor into a head (sender) and a tail (receiver).

SplitRTC sends exactly one tensor over the wire, so a usable cut point is a tensor that
separates the graph completely: the head is everything that tensor depends on, the tail is
everything else, and nothing but that tensor may cross from head to tail. Tensors inside a
residual branch fail this (the skip connection crosses the cut as well) and are rejected.

Constants are not part of the data path: initializers, ``Constant`` nodes and any node whose
inputs are all constants are copied into whichever side needs them (both if both do), so
they never count as "crossing" the cut. Control-flow subgraphs (If/Loop/Scan) are refused
because their bodies can read outer tensors implicitly, which this analysis cannot see.

Nodes keep their order, names and attributes, so ONNX Runtime picks the same kernels and
head->tail is bit-exact with the full model (``verify`` checks that; ORT fusions across the
cut, e.g. Conv+BatchNormalization folding, can break it, see ``verify(opt_level=...)``).

Library: ``candidate_cuts``, ``cut``, ``verify``, ``cost``, ``load_model``.
CLI: ``python -m splitcore.onnxcut {list,cut,verify} --help``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "OnnxCutError", "UnsupportedModelError", "NotACutError", "CutPoint", "Cost",
    "VerifyResult", "load_model", "candidate_cuts", "cut", "verify", "cost", "main",
]

# Ops whose output is not a function of their inputs: duplicating them into both halves
# would give two different draws, so they are never treated as constants.
_RANDOM_OPS = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
    "Multinomial", "Bernoulli",
})
# op type -> index of the weight input, for ops whose MACs = out elements x prod(W[1:]).
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})


class OnnxCutError(ValueError):
    """Base error: the model or the requested cut cannot be used; the message says why."""


class UnsupportedModelError(OnnxCutError):
    """The model uses a construct (control-flow subgraphs, unsorted nodes) we cannot cut."""


class NotACutError(OnnxCutError):
    """The named tensor does not exist or does not split the graph into head and tail."""


@dataclass(frozen=True)
class CutPoint:
    """One valid cut; sizes treat symbolic dims (batch) as 1, i.e. per batch item."""

    name: str
    shape: tuple[int | str | None, ...] | None  # None: rank unknown; str: symbolic dim
    dtype: str | None            # numpy name, e.g. "float32"
    elements: int | None         # None when the rank is unknown
    float32_bytes: int | None    # what the latent costs on the wire before any codec
    op_type: str                 # op of the node producing the tensor
    index: int                   # that node's position in the model's (topological) order
    head_nodes: int              # node count of the head model, constants included
    head_macs: int               # multiply-adds the sender must run (see ``cost``)


@dataclass(frozen=True)
class Cost:
    """Parameter and multiply-add counts; ``uncounted`` lists MAC ops with unknown shapes."""

    params: int
    macs: int
    uncounted: tuple[str, ...] = ()


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


# --------------------------------------------------------------------------- graph analysis


@dataclass
class _Graph:
    """Index of a model's main graph, built once so each cut test is cheap."""

    model: onnx.ModelProto
    nodes: list[onnx.NodeProto]
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    const_nodes: frozenset[int]
    const_tensors: frozenset[str]
    real_inputs: tuple[str, ...]     # graph inputs that are not initializers
    outputs: tuple[str, ...]
    ancestors: dict[int, int]        # dynamic node -> bitmask of dynamic ancestors + itself
    parents: dict[int, int]          # dynamic node -> bitmask of dynamic direct producers


def _reject_subgraphs(model: onnx.ModelProto) -> None:
    """Subgraph bodies may read outer-scope tensors by name, invisible to the edge analysis."""
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UnsupportedModelError(
                    f"node {node.name or '(unnamed)'!r} is a {node.op_type} with a control-flow "
                    "subgraph; models with If/Loop/Scan are not supported. Cut a model "
                    "exported without control flow (e.g. with fixed shapes / unrolled loops)."
                )


def _index(model: onnx.ModelProto) -> _Graph:
    """Build producer/consumer maps, classify constants and precompute ancestry bitmasks."""
    _reject_subgraphs(model)
    g = model.graph
    inits = {t.name for t in g.initializer}
    nodes = list(g.node)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    const_nodes: set[int] = set()
    const_tensors = set(inits)
    known = set(inits) | {v.name for v in g.input}
    for i, node in enumerate(nodes):
        ins = [x for x in node.input if x]
        missing = [x for x in ins if x not in known]
        if missing:
            raise UnsupportedModelError(
                f"node {node.name or i!r} reads {missing[0]!r} before any node produces it: "
                "the nodes are not topologically sorted (or the tensor is undefined). "
                "Re-export the model or sort it before cutting."
            )
        for x in ins:
            consumers.setdefault(x, []).append(i)
        if node.op_type not in _RANDOM_OPS and all(x in const_tensors for x in ins):
            const_nodes.add(i)
            const_tensors.update(o for o in node.output if o)
        for o in node.output:
            if o:
                producer[o] = i
                known.add(o)
    ancestors, parents = _ancestry(nodes, producer, const_nodes)
    return _Graph(
        model=model, nodes=nodes, producer=producer, consumers=consumers,
        const_nodes=frozenset(const_nodes), const_tensors=frozenset(const_tensors),
        real_inputs=tuple(v.name for v in g.input if v.name not in inits),
        outputs=tuple(v.name for v in g.output), ancestors=ancestors, parents=parents,
    )


def _ancestry(
    nodes: Sequence[onnx.NodeProto], producer: Mapping[str, int], const_nodes: set[int]
) -> tuple[dict[int, int], dict[int, int]]:
    """Ancestor sets as int bitmasks: one forward pass, cheap set algebra per cut test."""
    ancestors: dict[int, int] = {}
    parents: dict[int, int] = {}
    for i, node in enumerate(nodes):
        if i in const_nodes:
            continue
        par = 0
        for x in node.input:
            p = producer.get(x)
            if p is not None and p not in const_nodes:
                par |= 1 << p
        anc = 1 << i
        bits = par
        while bits:
            low = bits & -bits
            anc |= ancestors[low.bit_length() - 1]
            bits ^= low
        ancestors[i], parents[i] = anc, par
    return ancestors, parents


def _cut_problem(g: _Graph, tensor: str) -> str | None:
    """Why ``tensor`` is not a valid single-tensor cut, or None if it is."""
    if tensor in g.real_inputs:
        return "it is a graph input (the head would be empty)"
    if tensor in g.const_tensors:
        return "it is a constant (initializer or computed from constants only)"
    if tensor in g.outputs:
        return "it is a graph output, so the tail would have nothing left to compute"
    if not g.consumers.get(tensor):
        return "no node consumes it"
    p = g.producer[tensor]
    head = g.ancestors[p]
    for out in g.outputs:
        q = g.producer.get(out)
        if q is None or q in g.const_nodes or head >> q & 1:
            return f"graph output {out!r} would not be computed by the tail"
    for i, par in g.parents.items():
        if head >> i & 1:
            continue
        problem = _tail_node_problem(g, i, par & head, tensor)
        if problem:
            return problem
    return None


def _tail_node_problem(g: _Graph, i: int, from_head: int, tensor: str) -> str | None:
    """A tail node may read only ``tensor`` from the head (not even another output of its
    producer), and never a graph input."""
    node = g.nodes[i]
    label = f"node {node.name or i!r} ({node.op_type})"
    for x in node.input:
        if x in g.real_inputs:
            return f"{label} after the cut also reads graph input {x!r}"
    if not from_head:
        return None
    for x in node.input:
        q = g.producer.get(x)
        if q is not None and from_head >> q & 1 and x != tensor:
            return (f"{label} after the cut also needs {x!r} from before the cut "
                    "(e.g. a skip connection or a second branch)")
    return None


def _dynamic_tensors(g: _Graph) -> list[tuple[int, str]]:
    """(producer index, name) for every non-constant node output, in node order."""
    return [(i, o) for i, n in enumerate(g.nodes) if i not in g.const_nodes
            for o in n.output if o]


# ------------------------------------------------------------------------ shapes and cost


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
        return y * _numel(a[:1] if trans_a else a[1:])
    if node.op_type in _MATMUL_OPS:
        a = shape(0)
        return None if a is None or y is None or not a else y * _numel(a[-1:])
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


# ---------------------------------------------------------------------------- public API


def load_model(path: str | Path) -> onnx.ModelProto:
    """Load and check a model, turning the many low-level failures into one clear error."""
    p = Path(path)
    if not p.is_file():
        raise OnnxCutError(f"{p}: no such file; give the path of an .onnx model")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, external-data errors...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxCutError(f"{p}: not a valid ONNX model ({first})") from exc
    if not model.graph.node:
        raise OnnxCutError(f"{p}: not a valid ONNX model (its graph has no nodes)")
    return model


def candidate_cuts(model: onnx.ModelProto) -> list[CutPoint]:
    """Every tensor at which ``cut`` succeeds, in node order, with its size and head cost.

    Quadratic in the node count (each tensor is tested against the whole graph): instant
    for CNNs of a few hundred nodes, about 0.6 s for a 500-node chain.
    """
    g = _index(model)
    types = _infer_types(model)
    macs = _macs_by_node(g, types)
    cuts = []
    for i, name in _dynamic_tensors(g):
        if _cut_problem(g, name) is None:
            cuts.append(_cut_point(g, types, macs, i, name))
    return cuts


def _cut_point(g: _Graph, types: Mapping[str, onnx.TypeProto],
               macs: Mapping[int, int | None], i: int, name: str) -> CutPoint:
    """Describe the cut at ``name`` (already known to be valid)."""
    shape = _dims(types.get(name))
    dtype = _np_dtype(types.get(name))
    n = _numel(shape)
    head = _side_nodes(g, g.ancestors[i])
    return CutPoint(
        name=name, shape=shape, dtype=dtype, elements=n,
        float32_bytes=None if n is None else 4 * n, op_type=g.nodes[i].op_type, index=i,
        head_nodes=len(head), head_macs=sum(macs.get(k) or 0 for k in head),
    )


def _side_nodes(g: _Graph, mask: int) -> list[int]:
    """Dynamic nodes in ``mask`` plus the constant nodes they need, in original order."""
    chosen = {i for i in g.ancestors if mask >> i & 1}
    stack = list(chosen)
    while stack:
        for x in g.nodes[stack.pop()].input:
            q = g.producer.get(x)
            if q is not None and q in g.const_nodes and q not in chosen:
                chosen.add(q)
                stack.append(q)
    return sorted(chosen)


def _nearby(g: _Graph, tensor: str) -> str:
    """A hint naming valid cuts close to ``tensor`` (by position, else by spelling)."""
    valid = [(i, n) for i, n in _dynamic_tensors(g) if _cut_problem(g, n) is None]
    if not valid:
        return "this model has no valid single-tensor cut"
    names = [n for _, n in valid]
    if tensor in g.producer:
        pos = g.producer[tensor]
        near = sorted(valid, key=lambda v: abs(v[0] - pos))[:4]
        names = [n for _, n in sorted(near)]
    else:
        names = difflib.get_close_matches(tensor, names, n=4, cutoff=0.3) or names[:4]
    return "valid cuts nearby: " + ", ".join(repr(n) for n in names)


def _check_cut(g: _Graph, tensor: str) -> None:
    """Raise NotACutError with the reason and valid alternatives."""
    if tensor not in {*g.producer, *g.real_inputs, *g.const_tensors}:
        problem = "the model has no tensor by that name"
    else:
        problem = _cut_problem(g, tensor)
    if problem:
        raise NotACutError(f"cannot cut at {tensor!r}: {problem}; {_nearby(g, tensor)}")


def cut(model: onnx.ModelProto, tensor: str,
        rename: str | None = None) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Split ``model`` at ``tensor`` into (head, tail), both checked by onnx.checker.

    ``rename`` gives the cut tensor a new name in both halves (e.g. "latent") so the
    sender and receiver need not know the exporter's internal tensor names.
    """
    g = _index(model)
    _check_cut(g, tensor)
    types = _infer_types(model)
    if _np_dtype(types.get(tensor)) is None:
        raise NotACutError(f"cannot cut at {tensor!r}: its element type is unknown even "
                           "after shape inference; add a value_info entry for it")
    head_mask = g.ancestors[g.producer[tensor]]
    tail_mask = sum(1 << i for i in g.ancestors) & ~head_mask
    cut_vi = helper.make_value_info(tensor, types[tensor])
    head = _build(g, _side_nodes(g, head_mask), list(_real_input_vis(g)), [cut_vi], "head")
    tail = _build(g, _side_nodes(g, tail_mask), [cut_vi], list(g.model.graph.output), "tail")
    if rename and rename != tensor:
        _rename(head, tensor, rename)
        _rename(tail, tensor, rename)
    for part, side in ((head, "head"), (tail, "tail")):
        _check(part, side)
    return head, tail


def _real_input_vis(g: _Graph) -> list[onnx.ValueInfoProto]:
    """The original non-initializer inputs, in their original order."""
    return [v for v in g.model.graph.input if v.name in g.real_inputs]


def _build(g: _Graph, node_ids: list[int], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], side: str) -> onnx.ModelProto:
    """One half: the chosen nodes plus just the initializers and value_info they use."""
    src = g.model
    nodes = [g.nodes[i] for i in node_ids]
    used = {x for n in nodes for x in n.input if x}
    produced = {o for n in nodes for o in n.output}
    inits = [t for t in src.graph.initializer if t.name in used]
    init_names = {t.name for t in inits}
    # Initializers listed as graph inputs (IR < 4 style) stay overridable on each side.
    inputs = inputs + [v for v in src.graph.input if v.name in init_names]
    out_names = {o.name for o in outputs}
    vinfo = [v for v in src.graph.value_info if v.name in produced and v.name not in out_names]
    graph = helper.make_graph(nodes, f"{src.graph.name or 'model'}_{side}", inputs, outputs,
                              initializer=inits, value_info=vinfo,
                              doc_string=src.graph.doc_string)
    out = helper.make_model(graph, opset_imports=list(src.opset_import),
                            functions=list(src.functions))
    for field in ("ir_version", "producer_name", "producer_version", "domain",
                  "model_version", "doc_string"):
        setattr(out, field, getattr(src, field))
    out.metadata_props.extend(src.metadata_props)
    return out


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a tensor everywhere in one half, refusing to shadow an existing name."""
    g = model.graph
    taken = ({v.name for v in [*g.input, *g.output, *g.value_info]}
             | {t.name for t in g.initializer}
             | {x for n in g.node for x in [*n.input, *n.output]})
    if new in taken:
        raise OnnxCutError(f"cannot rename {old!r} to {new!r}: the model already has a tensor "
                           "by that name; pick another --rename")
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for v in [*g.input, *g.output, *g.value_info]:
        if v.name == old:
            v.name = new


def _check(model: onnx.ModelProto, side: str) -> None:
    """A half that fails the checker is a bug here or in the source model: say which half."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxCutError(f"the {side} fails onnx.checker ({str(exc).splitlines()[0]}); "
                           "check that the full model passes onnx.checker first") from exc


# ------------------------------------------------------------------------------- verify


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
        for a, b in zip(want, got):
            same, diff = _compare(np.asarray(a), np.asarray(b))
            exact, worst = exact and same, max(worst, diff)
    return VerifyResult(samples=len(feeds), max_abs_diff=worst, bit_exact=exact,
                        tolerance=tolerance)


# ---------------------------------------------------------------------------------- CLI

_EPILOG = """\
subcommands:
  list    show every tensor the model can be cut at, with its size on the wire and the
          multiply-adds (MACs) the head would run:
            python -m splitcore.onnxcut list models/resnet.onnx
  cut     write head and tail models for one cut tensor, optionally renaming it:
            python -m splitcore.onnxcut cut models/resnet.onnx /layer2/Relu_output_0 \\
                --head head.onnx --tail tail.onnx --rename latent
  verify  check that head->tail gives the same outputs as the full model (exit 1 if not):
            python -m splitcore.onnxcut verify models/resnet.onnx head.onnx tail.onnx

exit codes: 0 ok, 1 verify found a difference, 2 bad input (file, tensor name, ...)
"""


def _parser() -> argparse.ArgumentParser:
    """Argument parser; every subcommand carries its own example in --help."""
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m splitcore.onnxcut", formatter_class=fmt,
                                 description=__doc__.split("\n\n")[0], epilog=_EPILOG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="list valid cut tensors", formatter_class=fmt,
                       epilog="example: python -m splitcore.onnxcut list model.onnx --json")
    p.add_argument("model", help="full model (.onnx)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = sub.add_parser("cut", help="write head/tail models", formatter_class=fmt,
                       epilog="example: python -m splitcore.onnxcut cut model.onnx "
                              "/relu2/Relu_output_0 --head h.onnx --tail t.onnx --rename latent")
    p.add_argument("model", help="full model (.onnx)")
    p.add_argument("tensor", help="name of the tensor to cut at (see `list`)")
    p.add_argument("--head", required=True, help="output path of the head model")
    p.add_argument("--tail", required=True, help="output path of the tail model")
    p.add_argument("--rename", help="new name for the cut tensor in both halves, e.g. latent")
    p = sub.add_parser("verify", help="compare head->tail with the full model",
                       formatter_class=fmt,
                       epilog="example: python -m splitcore.onnxcut verify model.onnx "
                              "h.onnx t.onnx --samples 16\n\n"
                              "At --opt-level all, ORT may fuse or re-layout ops across the cut\n"
                              "in the full model (Conv+BatchNormalization, MatMul+Add, NCHWc)\n"
                              "but not in the halves, giving tiny differences; --opt-level\n"
                              "disable tells whether the cut itself is exact.")
    for name in ("full", "head", "tail"):
        p.add_argument(name, help=f"{name} model (.onnx)")
    p.add_argument("--samples", type=int, default=8, help="random inputs to try (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="max |diff| accepted when not bit-exact (default 0: bit-exact only)")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (default 1)")
    p.add_argument("--opt-level", default="all",
                   choices=["disable", "basic", "extended", "all"],
                   help="ORT graph optimization level for all three models (default all)")
    return ap


def _human(n: int | None, unit: str, base: int) -> str:
    """Compact size: 1536 -> '1.5 Ki' style, so the table stays narrow."""
    if n is None:
        return "?"
    prefixes = ["", "K", "M", "G", "T"]
    value, k = float(n), 0
    while value >= base and k < len(prefixes) - 1:
        value, k = value / base, k + 1
    suffix = prefixes[k] + ("i" if base == 1024 and k else "")
    return f"{value:.0f} {suffix}{unit}" if k == 0 else f"{value:.1f} {suffix}{unit}"


def _shape_str(shape: tuple[int | str | None, ...] | None) -> str:
    """[1, 16, 'N'] -> '1x16xN'; unknown dims print as '?'."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def _cmd_list(args: argparse.Namespace) -> int:
    """Print the candidate table (or JSON lines) for one model."""
    model = load_model(args.model)
    cuts = candidate_cuts(model)
    if args.json:
        for c in cuts:
            print(json.dumps(asdict(c)))
        return 0
    total = cost(model)
    print(f"{args.model}: {len(model.graph.node)} nodes, {_human(total.params, '', 1000)} "
          f"params, {_human(total.macs, '', 1000)} MACs, {len(cuts)} valid cuts")
    rows = [(str(c.index), c.name, c.op_type, _shape_str(c.shape),
             _human(c.float32_bytes, "B", 1024), _human(c.head_macs, "", 1000)) for c in cuts]
    header = ("idx", "tensor", "op", "shape", "f32 bytes", "head MACs")
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    right = (True, False, False, False, True, True)
    for r in [header, *rows]:
        print("  ".join(v.rjust(w) if a else v.ljust(w) for v, w, a in zip(r, widths, right)))
    return 0


def _cmd_cut(args: argparse.Namespace) -> int:
    """Cut and save both halves, then report their sizes."""
    model = load_model(args.model)
    head, tail = cut(model, args.tensor, rename=args.rename)
    for part, path in ((head, args.head), (tail, args.tail)):
        try:
            onnx.save(part, path)
        except OSError as exc:
            raise OnnxCutError(f"cannot write {path}: {exc.strerror or exc}") from exc
        c = cost(part)
        print(f"wrote {path}: {len(part.graph.node)} nodes, {c.params} params, {c.macs} MACs")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when head->tail matches the full model within tolerance, else 1."""
    full, head, tail = (load_model(p) for p in (args.full, args.head, args.tail))
    res = verify(full, head, tail, samples=args.samples, seed=args.seed,
                 tolerance=args.tolerance, threads=args.threads, opt_level=args.opt_level)
    verdict = "bit-exact" if res.bit_exact else (
        "NOT bit-exact, within tolerance" if res.ok else "NOT equal")
    print(f"{res.samples} samples: max |diff| = {res.max_abs_diff:.3g}: {verdict}")
    return 0 if res.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; user errors become one line on stderr and exit code 2."""
    args = _parser().parse_args(argv)
    handler = {"list": _cmd_list, "cut": _cmd_cut, "verify": _cmd_verify}[args.cmd]
    try:
        return handler(args)
    except OnnxCutError as exc:
        print(f"onnxcut: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `list ... | head` closed stdout: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
