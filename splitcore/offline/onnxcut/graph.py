"""Reading a model and indexing its main graph: which tensors are cuts, and why not.

Constants are not part of the data path: initializers, ``Constant`` nodes and any node whose
inputs are all constants are copied into whichever side needs them (both if both do), so
they never count as "crossing" the cut. Control-flow subgraphs (If/Loop/Scan) are refused
because their bodies can read outer tensors implicitly, which this analysis cannot see.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from .errors import OnnxCutError, UnsupportedModelError

# Ops whose output is not a function of their inputs: duplicating them into both halves
# would give two different draws, so they are never treated as constants.
_RANDOM_OPS = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
    "Multinomial", "Bernoulli",
})


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
