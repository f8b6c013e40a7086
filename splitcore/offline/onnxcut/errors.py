"""The errors every part of onnxcut raises; all are ValueErrors with a message saying why."""
from __future__ import annotations


class OnnxCutError(ValueError):
    """Base error: the model or the requested cut cannot be used; the message says why."""


class UnsupportedModelError(OnnxCutError):
    """The model uses a construct (control-flow subgraphs, unsorted nodes) we cannot cut."""


class NotACutError(OnnxCutError):
    """The named tensor does not exist or does not split the graph into head and tail."""
