"""Tests for splitcore.offline.onnxcut: which tensors are cuts, that cuts are exact, errors, costs.

Models are real ONNX graphs: a tiny torch CNN exported with the TorchScript exporter, and
hand-built onnx.helper graphs whose tensor names we choose so the residual-branch
expectations can be stated by name.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from splitcore.offline import onnxcut as oc

REPO = Path(__file__).resolve().parents[2]
OPSET = [helper.make_opsetid("", 17)]


def _init(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    """Random float32 initializer (values matter only for the exactness checks)."""
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    """Checked opset-17 model with metadata so we can see it survives the cut."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="test")
    model.ir_version = 8
    helper.set_model_props(model, {"purpose": "onnxcut-test"})
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def seq_model() -> onnx.ModelProto:
    """Conv-Relu-Conv-Relu-Flatten-Linear exported from torch (a plain chain)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    ).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), buf, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return onnx.load_from_string(buf.getvalue())


BRANCH = ("c1", "r1", "c2")  # tensors inside the residual branch: never valid cuts


@pytest.fixture(scope="module")
def res_model() -> onnx.ModelProto:
    """x -> c0 -> r0 -> [c1 -> r1 -> c2] + r0 -> add -> relu -> pool -> gemm -> y.

    A Constant node ``k`` is read both before the cut (Mul after c0) and after it (Mul
    before the pool), so it must be duplicated into both halves.
    """
    conv = dict(pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Constant", [], ["k"], name="k_const",
                         value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Conv", ["x", "W0", "B0"], ["c0"], name="conv0", **conv),
        helper.make_node("Mul", ["c0", "k"], ["m0"], name="mul0"),
        helper.make_node("Relu", ["m0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "W1"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], name="conv2", **conv),
        helper.make_node("Add", ["r0", "c2"], ["add"], name="add"),
        helper.make_node("Relu", ["add"], ["r2"], name="relu2"),
        helper.make_node("Mul", ["r2", "k"], ["m2"], name="mul2"),
        helper.make_node("GlobalAveragePool", ["m2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "Wf", "Bf"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("W0", (8, 3, 3, 3), 1), _init("B0", (8,), 2), _init("W1", (8, 8, 3, 3), 3),
             _init("W2", (8, 8, 3, 3), 4), _init("Wf", (10, 8), 5), _init("Bf", (10,), 6)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


def _names(model: onnx.ModelProto) -> list[str]:
    return [c.name for c in oc.candidate_cuts(model)]


def _intermediates(model: onnx.ModelProto) -> list[str]:
    """Outputs of non-Constant nodes that are not graph outputs."""
    outs = {o.name for o in model.graph.output}
    return [o for n in model.graph.node if n.op_type != "Constant" for o in n.output
            if o not in outs]


# ---------------------------------------------------------------------- candidate cuts


def test_every_intermediate_of_a_chain_is_a_candidate(seq_model):
    assert _names(seq_model) == _intermediates(seq_model)


def test_residual_branch_is_not_a_candidate_but_its_ends_are(res_model):
    names = _names(res_model)
    assert not set(BRANCH) & set(names)
    for outside in ("c0", "m0", "r0", "add", "r2", "flat"):
        assert outside in names


def test_candidate_sizes_match_what_the_head_actually_outputs(res_model):
    sess_inputs = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    for c in oc.candidate_cuts(res_model):
        head, _ = oc.cut(res_model, c.name)
        sess = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
        (latent,) = sess.run(None, sess_inputs)
        assert c.elements == latent.size and c.float32_bytes == 4 * latent.size
        assert c.dtype == latent.dtype.name
        assert c.head_nodes == len(head.graph.node)
        assert c.op_type == res_model.graph.node[c.index].op_type


@pytest.mark.parametrize("which", ["seq_model", "res_model"])
def test_every_candidate_cut_is_bit_exact(which, request):
    model = request.getfixturevalue(which)
    cuts = oc.candidate_cuts(model)
    assert cuts
    for c in cuts:
        head, tail = oc.cut(model, c.name)
        res = oc.verify(model, head, tail, samples=3, opt_level="disable")
        assert res.bit_exact and res.max_abs_diff == 0.0, c.name


def test_chain_cuts_are_bit_exact_with_default_ort_optimizations(seq_model):
    # Sender and receiver run ORT with default options; that must not break exactness here.
    for c in oc.candidate_cuts(seq_model):
        head, tail = oc.cut(seq_model, c.name)
        assert oc.verify(seq_model, head, tail, samples=2).bit_exact, c.name


def test_verify_detects_a_tampered_tail(res_model):
    head, tail = oc.cut(res_model, "r2")
    bias = next(t for t in tail.graph.initializer if t.name == "Bf")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 1e-3, "Bf"))
    res = oc.verify(res_model, head, tail, samples=2)
    assert not res.bit_exact and not res.ok
    assert res.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert oc.verify(res_model, head, tail, samples=2, tolerance=1e-2).ok


# ------------------------------------------------------------------- structure of halves


def test_halves_keep_interface_order_constants_and_metadata(res_model):
    head, tail = oc.cut(res_model, "add")
    assert [i.name for i in head.graph.input] == ["x"]
    assert [o.name for o in head.graph.output] == ["add"]
    assert head.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [i.name for i in tail.graph.input] == ["add"]
    assert [o.name for o in tail.graph.output] == ["y"]
    original = [n.name for n in res_model.graph.node]
    for part in (head, tail):
        names = [n.name for n in part.graph.node]
        assert names == [n for n in original if n in names]  # order preserved
        assert "k_const" in names  # Constant used on both sides goes to both
        used = {x for n in part.graph.node for x in n.input}
        assert {t.name for t in part.graph.initializer} == used & {
            t.name for t in res_model.graph.initializer}
        assert part.ir_version == res_model.ir_version
        assert part.opset_import == res_model.opset_import
        assert part.metadata_props == res_model.metadata_props
    assert set(original) == {n.name for n in head.graph.node} | {n.name for n in tail.graph.node}


def test_rename_gives_both_halves_the_new_name(res_model):
    head, tail = oc.cut(res_model, "r2", rename="latent")
    assert head.graph.output[0].name == "latent" and tail.graph.input[0].name == "latent"
    assert "r2" not in {x for n in [*head.graph.node, *tail.graph.node] for x in n.input}
    assert oc.verify(res_model, head, tail, samples=2, opt_level="disable").bit_exact
    with pytest.raises(oc.OnnxCutError, match="already has a tensor"):
        oc.cut(res_model, "r2", rename="flat")


# ------------------------------------------------------------------------------ errors


def test_every_non_candidate_is_refused_with_nearby_valid_cuts(res_model):
    valid = set(_names(res_model))
    refused = [t for t in _intermediates(res_model) + ["y", "x", "W0", "k"] if t not in valid]
    assert set(BRANCH) <= set(refused)
    for t in refused:
        with pytest.raises(oc.NotACutError) as err:
            oc.cut(res_model, t)
        assert "valid cuts nearby" in str(err.value)
        assert any(repr(v) in str(err.value) for v in valid)


def test_branch_error_names_the_skip_connection(res_model):
    with pytest.raises(oc.NotACutError, match="'r0' from before the cut"):
        oc.cut(res_model, "r1")


def test_graph_output_is_refused(res_model):
    with pytest.raises(oc.NotACutError, match="graph output"):
        oc.cut(res_model, "y")


def test_cut_after_an_early_graph_output_is_refused():
    # "a" is both a graph output and an input of the rest: a cut after it would leave
    # the tail unable to produce "a", so the model has no valid cut at all.
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [4])  # noqa: E731
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    model = _model(nodes, [vi("x")], [vi("a"), vi("y")])
    assert oc.candidate_cuts(model) == []
    with pytest.raises(oc.NotACutError, match="graph output 'a' would not be computed"):
        oc.cut(model, "b")


def test_unknown_tensor_suggests_similar_names(res_model):
    with pytest.raises(oc.NotACutError, match="no tensor by that name") as err:
        oc.cut(res_model, "ad")
    assert "'add'" in str(err.value)


def test_control_flow_models_are_not_supported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    branch = lambda name: helper.make_graph(  # noqa: E731 - tiny one-node subgraph
        [helper.make_node("Identity", ["r"], [name + "_out"])], name, [],
        [helper.make_tensor_value_info(name + "_out", TensorProto.FLOAT, [1])])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ReduceSum", ["r"], ["s"], keepdims=0),
             helper.make_node("Cast", ["s"], ["c"], to=TensorProto.BOOL),
             helper.make_node("If", ["c"], ["y"], name="cond",
                              then_branch=branch("a"), else_branch=branch("b"))]
    model = _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(oc.UnsupportedModelError, match="not supported"):
        oc.candidate_cuts(model)


# -------------------------------------------------------------------------------- cost


def test_macs_and_params_match_a_hand_count():
    conv = helper.make_node("Conv", ["x", "W", "B"], ["c"], group=2)  # 4->6 ch, 6x6 -> 4x4
    nodes = [conv, helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "Wg"], ["g"], transB=1),
             helper.make_node("Reshape", ["g", "shape"], ["g3"]),
             helper.make_node("MatMul", ["g3", "Wm"], ["y"])]
    inits = [_init("W", (6, 2, 3, 3), 0), _init("B", (6,), 1), _init("Wg", (6, 96), 2),
             numpy_helper.from_array(np.array([1, 2, 3], np.int64), "shape"),
             _init("Wm", (3, 4), 3)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4])], inits)
    conv_macs = (6 * 4 * 4) * (4 // 2) * 3 * 3      # out elements x Cin/group x kH x kW
    gemm_macs = 1 * 6 * 96                          # M x N x K
    matmul_macs = (2 * 4) * 3                       # [1,2,3] @ [3,4]: M x N x K
    got = oc.cost(model)
    assert got.macs == conv_macs + gemm_macs + matmul_macs
    assert got.params == 6 * 2 * 3 * 3 + 6 + 6 * 96 + 3 + 3 * 4
    assert got.uncounted == ()
    head, tail = oc.cut(model, "g")
    assert oc.cost(head).macs == conv_macs + gemm_macs
    assert oc.cost(tail).macs == matmul_macs


def test_head_and_tail_costs_add_up_to_the_full_model(seq_model):
    full = oc.cost(seq_model)
    for c in oc.candidate_cuts(seq_model):
        head, tail = oc.cut(seq_model, c.name)
        h, t = oc.cost(head), oc.cost(tail)
        assert h.macs == c.head_macs
        assert h.macs + t.macs == full.macs and h.params + t.params == full.params


# ---------------------------------------------------------------------------------- CLI


def test_cli_list_cut_verify_round_trip(res_model, tmp_path, capsys):
    full, head, tail = (tmp_path / f"{n}.onnx" for n in ("full", "head", "tail"))
    onnx.save(res_model, full)
    assert oc.main(["list", str(full)]) == 0
    table = capsys.readouterr().out
    assert all(n in table for n in _names(res_model))
    assert oc.main(["list", str(full), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == _names(res_model)
    assert oc.main(["cut", str(full), "add", "--head", str(head), "--tail", str(tail),
                    "--rename", "latent"]) == 0
    assert oc.load_model(head).graph.output[0].name == "latent"
    assert oc.main(["verify", str(full), str(head), str(tail), "--samples", "2",
                    "--opt-level", "disable"]) == 0
    assert "bit-exact" in capsys.readouterr().out


def test_cli_verify_exits_1_on_mismatch(res_model, tmp_path, capsys):
    head, tail = oc.cut(res_model, "r2")
    tail.graph.initializer[-1].CopyFrom(_init(tail.graph.initializer[-1].name, (10,), 99))
    paths = [tmp_path / f"{n}.onnx" for n in ("full", "head", "tail")]
    for m, p in zip((res_model, head, tail), paths, strict=True):
        onnx.save(m, p)
    assert oc.main(["verify", *map(str, paths), "--samples", "1"]) == 1
    assert "NOT" in capsys.readouterr().out


def test_cli_unknown_tensor_exits_2(res_model, tmp_path, capsys):
    onnx.save(res_model, tmp_path / "m.onnx")
    code = oc.main(["cut", str(tmp_path / "m.onnx"), "nope", "--head", str(tmp_path / "h"),
                    "--tail", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and "'nope'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"definitely not a protobuf \xff\xfe", None])
def test_cli_bad_file_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "splitcore.offline.onnxcut", "list", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(path) in proc.stderr


# ------------------------------------------------------- random DAGs vs a naive oracle


def _naive_is_cut(model: onnx.ModelProto, t: str) -> bool:
    """Definition straight from the spec, with plain sets (independent of the bitmasks)."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    const = set()  # spec: Constant nodes and nodes fed only by constants are duplicated
    for n in g.node:
        if all(x in const for x in n.input):
            const.update(n.output)
    outputs = {o.name for o in g.output}
    if t not in prod or t in const or t in outputs:
        return False
    head, todo = set(), [prod[t]]
    while todo:
        n = todo.pop()
        if n.name not in head:
            head.add(n.name)
            todo += [prod[x] for x in n.input if x in prod and x not in const]
    head_out = {o for n in g.node if n.name in head for o in n.output}
    tail = [n for n in g.node if n.name not in head and n.output[0] not in const]
    read = {x for n in tail for x in n.input}
    tail_out = {o for n in tail for o in n.output}
    return (read & head_out == {t} and "x" not in read and outputs <= tail_out)


@st.composite
def _dags(draw) -> onnx.ModelProto:
    """Small random DAGs of Relu/Add/Mul over x and a shared Constant, one or two outputs."""
    nodes = [helper.make_node("Constant", [], ["k"], name="k",
                              value=numpy_helper.from_array(np.full(4, 0.5, np.float32)))]
    avail = ["x", "k"]
    for i in range(draw(st.integers(2, 7))):
        op = draw(st.sampled_from(["Relu", "Add", "Mul"]))
        ins = [draw(st.sampled_from(avail)) for _ in range(1 if op == "Relu" else 2)]
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"n{i}"))
        avail.append(f"t{i}")
    tensors = [n.output[0] for n in nodes[1:]]
    outs = {tensors[-1], draw(st.sampled_from(tensors))}
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [4])  # noqa: E731
    return _model(nodes, [vi("x")], [vi(o) for o in sorted(outs)])


@settings(max_examples=40, deadline=None)
@given(_dags())
def test_random_dags_agree_with_naive_definition_and_cut_exactly(model):
    valid = set(_names(model))
    for n in model.graph.node[1:]:
        t = n.output[0]
        assert (t in valid) == _naive_is_cut(model, t), t
        if t in valid:
            head, tail = oc.cut(model, t)
            assert oc.verify(model, head, tail, samples=1, opt_level="disable").bit_exact
        else:
            with pytest.raises(oc.NotACutError):
                oc.cut(model, t)
