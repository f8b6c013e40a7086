"""The sender's models: the preprocessor, the head of the split, and the full model for --verify.

Loaded once, before the first frame; ``sender.pipeline`` runs them, on the capture thread so
the event loop (aiortc's SCTP stack, replies, signaling) never waits on inference. Their
output buffers are preallocated and reused for every frame.
"""
from __future__ import annotations

from splitcore.runtime.models import Manifest, Runner, full_runner, head_runner
from splitcore.runtime.preprocess import ColorOrder, Preprocessor


class HeadCompute:
    """Everything the per-frame compute needs, checked against the manifest at load."""

    def __init__(self, manifest: Manifest, split_id: str, color: ColorOrder = "bgr",
                 verify: bool = False, threads: int = 1, int8: bool = False) -> None:
        self.split = manifest.split(split_id)
        self.int8 = int8
        self.head: Runner = head_runner(manifest, split_id, threads, int8=int8)
        if tuple(self.head.output.shape) != self.split.shape:
            raise ValueError(f"head of {split_id} outputs {self.head.output.shape}, "
                             f"manifest says {self.split.shape}")
        self.full: Runner | None = full_runner(manifest, threads, split_id) if verify else None
        self.pre = Preprocessor(color)
