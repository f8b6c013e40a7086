"""The sender's per-frame compute: preprocess and head, plus the full model for --verify.

Runs on one worker thread so the event loop (aiortc's SCTP stack, replies, signaling)
never waits on inference. Buffers are preallocated; ``process`` returns views that are
valid until the next call, which is safe because the caller encodes the latent into the
outgoing message before it asks for the next frame.
"""
from __future__ import annotations

import numpy as np

from splitcore.runtime.models import Manifest, full_runner, head_runner
from splitcore.runtime.preprocess import Preprocessor


class HeadCompute:
    def __init__(self, manifest: Manifest, split_id: str, color: str = "bgr",
                 verify: bool = False, threads: int = 1, int8: bool = False) -> None:
        self.split = manifest.split(split_id)
        self.head = head_runner(manifest, split_id, threads, int8=int8)
        if tuple(self.head.output.shape) != self.split.shape:
            raise ValueError(f"head of {split_id} outputs {self.head.output.shape}, "
                             f"manifest says {self.split.shape}")
        self.full = full_runner(manifest, threads) if verify else None
        self.pre = Preprocessor(color)

    def process(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Latent for one camera frame, and (with --verify) a copy of the full model's logits."""
        x = self.pre(image)
        latent = self.head.run(x)
        reference = self.full.run(x)[0].copy() if self.full is not None else None
        return latent, reference
