"""Operating points: which split, codec and head to use for an accuracy budget.

``models/operating_points.json`` is written from the split study (``bench/study.py``, then
``python -m splitcore.offline.operating``) and
shipped with the models, so ``--split auto --max-drop 1.0`` chooses from measured figures,
never from guesses: the fewest payload bytes per frame whose top-1 accuracy on the CIFAR-10
test set is within ``max_drop`` points of the full float32 model.

Where the privacy study (``python -m training.privacy``) attacked a point, it carries its
``leakage``: the worst case over the attacks (the highest SSIM of their reconstructions of
test images), so ``max_ssim`` limits what an attacker who holds the latents could see
(He et al. count SSIM below 0.3 as unrecognisable). A point never attacked has no figure and
is refused under a limit: unmeasured is not private.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from splitcore.wire.codecs import PORTABLE_COMPRESSORS


@dataclass(frozen=True)
class Leakage:
    """The best inversion attack on a point's latents (``results/privacy.json``)."""

    ssim: float          # structural similarity of its reconstructions (1: the frame itself)
    psnr_db: float
    recon_top1: float    # the full model's top-1 on the reconstructions
    attack: str          # which attack reached ``ssim`` ("inverse", "whitebox-rml")

    @classmethod
    def parse(cls, raw: object) -> Leakage | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise TypeError(f"leakage must be an object, got {type(raw).__name__}")
        return cls(float(raw["ssim"]), float(raw["psnr_db"]), float(raw["recon_top1"]), str(raw["attack"]))

    def as_dict(self) -> dict[str, float | str]:
        return {"ssim": self.ssim, "psnr_db": self.psnr_db, "recon_top1": self.recon_top1, "attack": self.attack}


@dataclass(frozen=True)
class OperatingPoint:
    split: str
    codec: str
    head: str            # "float32" or "int8"
    payload_bytes: float  # mean bytes a frame on the data channel (headers included)
    top1: float           # on the 10,000 test images
    leakage: Leakage | None = None  # None: never attacked

    @property
    def key(self) -> str:
        return f"{self.split}/{self.codec}/{self.head}"

    def private(self, max_ssim: float | None) -> bool:
        """Within the leakage limit (no limit: always); an unmeasured point never is."""
        return max_ssim is None or (self.leakage is not None and self.leakage.ssim <= max_ssim)

    def describe(self, full_top1: float) -> str:
        leak = (f", attack SSIM {self.leakage.ssim:.2f}" if self.leakage is not None else ", leakage not measured")
        return (f"split {self.split}, codec {self.codec}, {self.head} head: "
                f"{self.payload_bytes:,.0f} B/frame, top-1 {self.top1 * 100:.2f}% "
                f"({(self.top1 - full_top1) * 100:+.2f} points vs the full model){leak}")


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
                                       float(p["top1"]), Leakage.parse(p.get("leakage"))) for p in raw["points"])
            return cls(float(raw["full_top1"]), pts, raw.get("source", ""))
        except FileNotFoundError:
            raise ValueError(f"no operating points at {path}: run the study (python -m bench.study) "
                             "and python -m splitcore.offline.operating, or give --split and --codec") from None
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a valid operating-points file: {exc}") from None

    def find(self, split: str, codec: str, head: str) -> OperatingPoint | None:
        """The point of that split, codec and head, if the study measured it."""
        return next((p for p in self.points if (p.split, p.codec, p.head) == (split, codec, head)), None)

    def choose(self, max_drop: float, splits: set[str] | None = None, int8_head: bool | None = None,
               portable: bool = True, max_ssim: float | None = None) -> OperatingPoint:
        """Fewest bytes with top-1 >= full - max_drop points; ties go to the higher accuracy.
        ``portable`` keeps to codecs every receiver decodes (browsers have no zstd)."""
        floor = self.full_top1 - max_drop / 100.0
        ok = [p for p in self.points if p.top1 >= floor - 1e-12
              and (splits is None or p.split in splits)
              and (int8_head is None or (p.head == "int8") == int8_head)
              and (not portable or _portable(p.codec)) and p.private(max_ssim)]
        if not ok:
            leak = f" with attack SSIM <= {max_ssim}" if max_ssim is not None else ""
            raise ValueError(f"no operating point within {max_drop} points of the full model's "
                             f"{self.full_top1 * 100:.2f}%{leak}")
        return min(ok, key=lambda p: (p.payload_bytes, -p.top1))


def _portable(codec: str) -> bool:
    _, plus, comp = codec.partition("+")
    return not plus or comp in PORTABLE_COMPRESSORS
