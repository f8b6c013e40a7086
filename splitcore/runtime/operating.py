"""Operating points: which split, codec and head to use for an accuracy budget.

``models/operating_points.json`` is written from the split study (``bench/study.py``, then
``python -m splitcore.offline.operating``) and
shipped with the models, so ``--split auto --max-drop 1.0`` chooses from measured figures,
never from guesses: the fewest payload bytes per frame whose top-1 accuracy on the CIFAR-10
test set is within ``max_drop`` points of the full float32 model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from splitcore.wire.codecs import PORTABLE_COMPRESSORS


@dataclass(frozen=True)
class OperatingPoint:
    split: str
    codec: str
    head: str            # "float32" or "int8"
    payload_bytes: float  # mean bytes a frame on the data channel (headers included)
    top1: float           # on the 10,000 test images

    def describe(self, full_top1: float) -> str:
        return (f"split {self.split}, codec {self.codec}, {self.head} head: "
                f"{self.payload_bytes:,.0f} B/frame, top-1 {self.top1 * 100:.2f}% "
                f"({(self.top1 - full_top1) * 100:+.2f} points vs the full model)")


@dataclass(frozen=True)
class OperatingPoints:
    full_top1: float
    points: tuple[OperatingPoint, ...]
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> OperatingPoints:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            pts = tuple(OperatingPoint(p["split"], p["codec"], p["head"], float(p["payload_bytes"]),
                                       float(p["top1"])) for p in raw["points"])
            return cls(float(raw["full_top1"]), pts, raw.get("source", ""))
        except FileNotFoundError:
            raise ValueError(f"no operating points at {path}: run the study (python -m bench.study) "
                             "and python -m splitcore.offline.operating, or give --split and --codec") from None
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a valid operating-points file: {exc}") from None

    def choose(self, max_drop: float, splits: set[str] | None = None, int8_head: bool | None = None,
               portable: bool = True) -> OperatingPoint:
        """Fewest bytes with top-1 >= full - max_drop points; ties go to the higher accuracy.
        ``portable`` keeps to codecs every receiver decodes (browsers have no zstd)."""
        floor = self.full_top1 - max_drop / 100.0
        ok = [p for p in self.points if p.top1 >= floor - 1e-12
              and (splits is None or p.split in splits)
              and (int8_head is None or (p.head == "int8") == int8_head)
              and (not portable or _portable(p.codec))]
        if not ok:
            raise ValueError(f"no operating point within {max_drop} points of the full model's "
                             f"{self.full_top1 * 100:.2f}%")
        return min(ok, key=lambda p: (p.payload_bytes, -p.top1))


def _portable(codec: str) -> bool:
    _, plus, comp = codec.partition("+")
    return not plus or comp in PORTABLE_COMPRESSORS
