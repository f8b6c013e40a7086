"""Cut any ONNX model at one tensor into a head (sender) and a tail (receiver).

SplitRTC sends exactly one tensor over the wire, so a usable cut point is a tensor that
separates the graph completely: the head is everything that tensor depends on, the tail is
everything else, and nothing but that tensor may cross from head to tail. Tensors inside a
residual branch fail this (the skip connection crosses the cut as well) and are rejected.

One concept per module, all re-exported here:

- ``errors``: ``OnnxCutError`` and its subclasses ``UnsupportedModelError``, ``NotACutError``.
- ``graph``: ``load_model``; the graph index, constants, ancestry and why a tensor is no cut.
- ``costs``: tensor types and shapes, parameter and MAC counts (``cost``, ``Cost``).
- ``cutting``: ``candidate_cuts`` (``CutPoint``) and ``cut``, building the two halves.
- ``verifying``: ``verify`` (``VerifyResult``), head->tail against the full model in ORT.
- ``cli``: the command line (``main``); ``__main__`` runs it.

Library: ``candidate_cuts``, ``cut``, ``verify``, ``cost``, ``load_model``.
CLI: ``python -m splitcore.offline.onnxcut {list,cut,verify} --help``.
"""
from __future__ import annotations

from .cli import main
from .costs import Cost, cost
from .cutting import CutPoint, candidate_cuts, cut
from .errors import NotACutError, OnnxCutError, UnsupportedModelError
from .graph import load_model
from .verifying import VerifyResult, verify

__all__ = [
    "OnnxCutError", "UnsupportedModelError", "NotACutError", "CutPoint", "Cost",
    "VerifyResult", "load_model", "candidate_cuts", "cut", "verify", "cost", "main",
]
