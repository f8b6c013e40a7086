"""Batched tails (issue 16): every shipped tail takes a batch, a batch's rows are the
single-frame logits, ``python -m splitcore.offline.batchable`` is what made the shipped
tails (and changes nothing run again), and the engine runs a gathered batch as one ONNX
Runtime call with the right reply for every frame, also on an older batch-1 ``models/``."""
from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from receiver.engine import GATHER_S, TailEngine, TailResult, _Job, _Queue
from receiver.splits import TailRunner
from splitcore.offline import batchable
from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, ModelError, ModelFile, head_runner
from splitcore.runtime.preprocess import to_input
from tests.harness import noise_images

MANIFEST = Manifest.load()
SPLITS = sorted(MANIFEST.splits)


def latents(split: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` real latents of ``split``: its head run on blurred-noise images, (n, 1, ...)."""
    head = head_runner(MANIFEST, split)
    return np.stack([head.run(x[None]).copy() for x in to_input(noise_images(n, seed))])


def batch1_models(tmp: Path) -> Path:
    """A models/ directory as exported before batchable tails: the manifest, and every tail
    with its batch dimension fixed at 1 again (its entry saying so)."""
    raw = json.loads(DEFAULT_MANIFEST.read_text())
    for s in raw["splits"]:
        tail = onnx.load(DEFAULT_MANIFEST.parent / s["tail"]["file"])
        for v in [*tail.graph.input, *tail.graph.output]:
            v.type.tensor_type.shape.dim[0].dim_value = 1
        data = tail.SerializeToString()
        (tmp / s["tail"]["file"]).write_bytes(data)
        s["tail"]["sha256"], s["tail"]["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (tmp / "manifest.json").write_text(json.dumps(raw, indent=2) + "\n")
    return tmp / "manifest.json"


# ----------------------------------------------------------------------------- the models


@pytest.mark.parametrize("split", SPLITS)
def test_a_batch_gives_every_rows_single_frame_logits(split: str) -> None:
    point = MANIFEST.split(split)
    runner = TailRunner(point.tail, point.shape, max_batch=32)
    assert runner.batchable, f"{point.tail.path} has a fixed batch: run python -m splitcore.offline.batchable"
    x = latents(split, 32)
    single = np.empty((32, *runner.output.shape[1:]), np.float32)
    for i in range(32):
        runner.input[0] = x[i, 0]
        single[i] = runner.run(1)[0]
    for k in (4, 16, 32):
        runner.input[:k] = x[:k, 0]
        got = runner.run(k)
        assert got.shape == (k, *single.shape[1:])
        assert np.abs(got - single[:k]).max() <= batchable.TOLERANCE, (split, k)
        assert np.array_equal(got.argmax(1), single[:k].argmax(1))


def test_the_tool_made_the_shipped_tails_and_run_again_changes_nothing(tmp_path: Path) -> None:
    manifest = batch1_models(tmp_path)
    before = json.loads(manifest.read_text())
    done = batchable.convert(manifest)
    assert [(sid, rewritten) for sid, rewritten, _ in done] == [(s["id"], True) for s in before["splits"]]
    after = json.loads(manifest.read_text())
    shipped = json.loads(DEFAULT_MANIFEST.read_text())
    for b, a, s in zip(before["splits"], after["splits"], shipped["splits"], strict=True):
        # byte for byte the shipped tail, and only the tail entry's sha256 and bytes changed
        assert (tmp_path / a["tail"]["file"]).read_bytes() == (DEFAULT_MANIFEST.parent / s["tail"]["file"]).read_bytes()
        assert a["tail"] == s["tail"]
        assert {**a, "tail": b["tail"]} == b
    assert {k: v for k, v in after.items() if k != "splits"} == {k: v for k, v in before.items() if k != "splits"}
    text = manifest.read_text()
    assert [rewritten for _, rewritten, _ in batchable.convert(manifest)] == [False] * len(done)
    assert manifest.read_text() == text


def _model(nodes: list[onnx.NodeProto], inits: list[TensorProto], out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_reshape_or_flatten_that_pins_batch_1_is_fixed_and_batch_mixing_is_refused() -> None:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 16], np.int64), "shape")
    for pin, inits in (([helper.make_node("Reshape", ["x", "shape"], ["f"])], [w, shape]),
                       ([helper.make_node("Flatten", ["x"], ["f"], axis=0)], [w])):
        model = _model([*pin, helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)], inits, [1, 3])
        with pytest.raises(batchable.BatchableError):
            batchable.check(model.SerializeToString())   # as it was: batch 1 only
        assert batchable.check(batchable.batchable(model).SerializeToString()) <= batchable.TOLERANCE
    mixing = _model([helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),   # y = x + sum over the batch
                     helper.make_node("Add", ["x", "s"], ["y"])],
                    [numpy_helper.from_array(np.array([0], np.int64), "axes")], [1, 4, 2, 2])
    with pytest.raises(batchable.BatchableError, match="mixes its batch"):
        batchable.check(batchable.batchable(mixing).SerializeToString())


# ----------------------------------------------------------------------------- the engine


class CountingSession:
    """A real ONNX Runtime session that counts its calls."""

    def __init__(self, session) -> None:
        self.session, self.calls = session, 0

    def __getattr__(self, name: str):
        return getattr(self.session, name)

    def run_with_iobinding(self, binding) -> None:
        self.calls += 1
        self.session.run_with_iobinding(binding)


def sessions(engine: TailEngine, split: str, x: np.ndarray, rounds: int) -> list[list[TailResult]]:
    """``len(x)`` sessions on one loop, session i submitting ``x[i]`` ``rounds`` times, one
    frame in the engine at a time as SenderSession does; every session's replies."""
    async def one(i: int) -> list[TailResult]:
        buf = x[i].copy()   # the session's own decode buffer
        return [await engine.submit(split, buf, probs=r % 2 == 0) for r in range(rounds)]

    async def main() -> list[list[TailResult]]:
        return list(await asyncio.gather(*(one(i) for i in range(len(x)))))
    return asyncio.run(main())


def singles(engine: TailEngine, split: str, x: np.ndarray) -> np.ndarray:
    """Each latent's logits from a job of its own, (n, classes); rows told apart."""
    got = np.array([asyncio.run(engine.infer(split, xi)).logits for xi in x], np.float32)
    gaps = np.abs(got[:, None] - got[None]).max(-1) + np.eye(len(x))
    assert gaps.min() > 1e-3, "the latents should give different logits, so a mix-up shows"
    return got


@pytest.mark.parametrize("split", ["stage2", "features"])
def test_concurrent_sessions_get_one_call_a_batch_and_their_own_results(split: str) -> None:
    engine = TailEngine(MANIFEST, max_batch=8)
    try:
        runner = engine.splits[split].runner
        counter = CountingSession(runner.session)
        runner.session = counter
        x = latents(split, 12, seed=3)
        expected = singles(engine, split, x)
        counter.calls, engine.stats.calls = 0, 0
        for i, replies in enumerate(sessions(engine, split, x, rounds=5)):
            for r, reply in enumerate(replies):
                assert np.abs(np.array(reply.logits, np.float32) - expected[i]).max() <= batchable.TOLERANCE
                assert reply.label == expected[i].argmax() and len(reply.probs) == (10 if r % 2 == 0 else 0)
                assert reply.tail_ms >= 0
        s = engine.stats
        assert s.frames == 12 * 5 and counter.calls == s.jobs == s.calls < s.frames
        assert 1 < s.largest <= 8   # gathered, at most max_batch a job
    finally:
        engine.close()


def test_batch_1_tails_still_work_one_call_a_frame(tmp_path: Path) -> None:
    engine = TailEngine(Manifest.load(batch1_models(tmp_path)), max_batch=8)
    try:
        runner = engine.splits["features"].runner
        assert not runner.batchable
        counter = CountingSession(runner.session)
        runner.session = counter
        x = latents("features", 12, seed=4)
        expected = singles(engine, "features", x)
        counter.calls = 0
        for i, replies in enumerate(sessions(engine, "features", x, rounds=2)):
            assert all(np.array_equal(np.array(r.logits, np.float32), expected[i]) for r in replies)
        s = engine.stats
        assert s.largest > 1 and counter.calls == s.calls == s.frames == 24 and s.jobs < s.frames
    finally:
        engine.close()


def test_a_bad_latent_fails_its_own_frame_not_its_batch() -> None:
    engine = TailEngine(MANIFEST, max_batch=8)
    x = latents("features", 2)

    async def main() -> None:
        good, bad, other = (engine.submit("features", a) for a in (x[0], np.zeros((1, 7), np.float32), x[1]))
        assert (await good).logits == (await engine.infer("features", x[0])).logits
        with pytest.raises(ValueError, match="latent of shape"):
            await bad
        assert (await other).logits == (await engine.infer("features", x[1])).logits
        assert engine.stats.largest == 3
    try:
        asyncio.run(main())
    finally:
        engine.close()


def at(t: float) -> _Job:
    return _Job(np.zeros(1, np.float32), False, None, t)  # type: ignore[arg-type]


def test_a_batch_waits_only_while_more_frames_are_likely() -> None:
    """The gather rule on a made-up clock (no timing): a single stream never waits, however
    fast; two streams whose frames come faster than GATHER_S wait for each other, at most
    GATHER_S and never past max_batch; once frames come slower, nothing waits."""
    q, t = _Queue(), 0.0
    for _ in range(20):   # one stream: its next frame comes after its reply, never alongside
        t += 0.0005
        q.arrived(t)
        q.jobs.append(at(t))
        assert q.due(32) == t
        q.jobs.clear()
    q.running = 1         # another stream's frame comes while the first's runs
    t += 0.0005
    q.arrived(t)
    q.jobs.append(at(t))
    q.running = 0
    assert q.due(32) == t + GATHER_S
    assert q.due(1) == t
    q.arrived(t + 0.0004)
    q.jobs.append(at(t + 0.0004))
    assert q.due(32) == t              # both streams are in: nothing more to wait for
    q.jobs.clear()
    t += 0.05                          # frames come slower than one a GATHER_S
    q.arrived(t)
    q.jobs.append(at(t))
    assert q.due(32) == t


def test_a_tail_that_is_not_the_manifests_is_refused() -> None:
    point = MANIFEST.split("features")
    with pytest.raises(ModelError, match="does not match the manifest"):
        TailRunner(ModelFile(point.tail.path, "0" * 64, 0, 0), point.shape, 4)
