"""Finding every valid cut point, and cutting a model into its head and tail models.

Nodes keep their order, names and attributes, so ONNX Runtime picks the same kernels and
head->tail is bit-exact with the full model (``verify`` checks that; ORT fusions across the
cut, e.g. Conv+BatchNormalization folding, can break it, see ``verify(opt_level=...)``).
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import onnx
from onnx import helper

from .costs import _dims, _infer_types, _macs_by_node, _np_dtype, _numel
from .errors import NotACutError, OnnxCutError
from .graph import _cut_problem, _dynamic_tensors, _Graph, _index


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
    problem: str | None
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
