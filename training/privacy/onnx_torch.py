"""The shipped ONNX head as a differentiable PyTorch module, for the white-box attack.

There is no training checkpoint in the repository (``build/splitnet.pt`` is not committed),
so the white-box attacker takes the head's weights where a real one would: from the ONNX
file the device runs. This module interprets that graph with torch ops, reading every
weight from the file's initializers (nothing is re-fitted), for the op set the exporter and
``training.quantize`` produce: Conv, BatchNormalization, MaxPool, Relu, Add, Sub, Mul,
Flatten, Identity, Gemm (the tails' classifier: ``training.defend`` runs tails too), and the
INT8 heads' QuantizeLinear/DequantizeLinear. Quantisation is
simulated in float with a straight-through gradient (round half to even, as ONNX says,
saturated to the zero point's type), so the INT8 head is attacked as the INT8 head, not as
its float32 parent. ``tests/unit/test_privacy_pipeline.py`` checks it against ONNX Runtime.

Measured caveat: for the INT8 heads this equals ONNX Runtime with graph optimisations *off*
(bit for bit on the stem); with them on (as ``Runner`` runs them on the device), ORT fuses
the QDQ pairs into QLinearMul/QLinearConv and its latents differ from the QDQ semantics by
41-47 % relative L2 on test images (4-6 % for the QDQ semantics against the float32 head).
The white-box attack on an INT8 head therefore follows gradients of a slightly different
function than the one that made the observed latent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

_QRANGE: dict[int, tuple[float, float]] = {int(onnx.TensorProto.UINT8): (0.0, 255.0),
                                           int(onnx.TensorProto.INT8): (-128.0, 127.0)}


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    """Round half to even forward, identity backward (the straight-through estimator)."""
    return v + (torch.round(v) - v).detach()


def _per_axis(t: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    if t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return t.reshape(shape)


class OnnxModule(nn.Module):
    """Runs an ONNX graph of the ops above; inputs NCHW float32, any batch size."""

    SUPPORTED = {"Conv", "BatchNormalization", "MaxPool", "Relu", "Add", "Sub", "Mul", "Flatten",
                 "Identity", "Gemm", "QuantizeLinear", "DequantizeLinear"}

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        model = onnx.load(str(path))
        g = model.graph
        unknown = {n.op_type for n in g.node} - self.SUPPORTED
        if unknown:
            raise ValueError(f"{path}: ops {sorted(unknown)} are not supported by {__name__}")
        inits = {i.name for i in g.initializer}
        (self.input_name,) = [i.name for i in g.input if i.name not in inits]
        (self.output_name,) = [o.name for o in g.output]
        self._names: dict[str, str] = {}
        self._qtype: dict[str, int] = {}
        for k, init in enumerate(g.initializer):
            arr = numpy_helper.to_array(init)
            self._names[init.name] = f"w{k}"
            self._qtype[init.name] = init.data_type
            self.register_buffer(f"w{k}", torch.from_numpy(np.array(arr, dtype=np.float32)))
        self.nodes = [(n.op_type, list(n.input), list(n.output),
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in g.node]

    def _get(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self._names[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, ins, outs, at in self.nodes:
            a = [self._get(env, i) if i else None for i in ins]
            env[outs[0]] = self._op(op, a, ins, at)
        return env[self.output_name]

    def _op(self, op: str, a: list, ins: list[str], at: dict) -> torch.Tensor:  # noqa: C901 (a dispatch)
        if op == "Conv":
            x, w, b = a[0], a[1], a[2] if len(a) > 2 else None
            pads = list(at.get("pads", [0, 0, 0, 0]))
            stride = list(at.get("strides", [1, 1]))
            dil = list(at.get("dilations", [1, 1]))
            if pads[:2] == pads[2:]:
                return F.conv2d(x, w, b, stride, pads[:2], dil, int(at.get("group", 1)))
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            return F.conv2d(x, w, b, stride, 0, dil, int(at.get("group", 1)))
        if op == "BatchNormalization":
            x, scale, bias, mean, var = a
            return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(at.get("epsilon", 1e-5)))
        if op == "MaxPool":
            pads = list(at.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise ValueError("asymmetric MaxPool padding is not supported")
            return F.max_pool2d(a[0], list(at["kernel_shape"]), list(at.get("strides", at["kernel_shape"])), pads[:2])
        if op == "Relu":
            return F.relu(a[0])
        if op == "Add":
            return a[0] + a[1]
        if op == "Sub":
            return a[0] - a[1]
        if op == "Mul":
            return a[0] * a[1]
        if op == "Flatten":
            return torch.flatten(a[0], int(at.get("axis", 1)))
        if op == "Identity":
            return a[0]
        if op == "Gemm":  # y = x W^T + b, as the exporter writes a Linear
            y = a[0] @ (a[1].t() if int(at.get("transB", 0)) else a[1])
            return y + a[2] if len(a) > 2 and a[2] is not None else y
        axis = int(at.get("axis", 1))
        x, scale = a[0], _per_axis(a[1], a[0], axis)
        zp = _per_axis(a[2], a[0], axis) if len(a) > 2 and a[2] is not None else torch.zeros(())
        if op == "QuantizeLinear":
            lo, hi = _QRANGE[int(self._qtype.get(ins[2], onnx.TensorProto.UINT8))] if len(ins) > 2 else (0.0, 255.0)
            return torch.clamp(_round_ste(x / scale) + zp, lo, hi)
        return (x - zp) * scale  # DequantizeLinear
