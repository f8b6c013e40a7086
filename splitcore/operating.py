"""Operating points: which split, codec and head to use for an accuracy budget.

``models/operating_points.json`` is written from the split study (``bench/study.py``) and
shipped with the models, so ``--split auto --max-drop 1.0`` chooses from measured figures,
never from guesses: the fewest payload bytes per frame whose top-1 accuracy on the CIFAR-10
test set is within ``max_drop`` points of the full float32 model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from splitcore.codecs import PORTABLE_COMPRESSORS


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
    def load(cls, path: str | Path) -> "OperatingPoints":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            pts = tuple(OperatingPoint(p["split"], p["codec"], p["head"], float(p["payload_bytes"]),
                                       float(p["top1"])) for p in raw["points"])
            return cls(float(raw["full_top1"]), pts, raw.get("source", ""))
        except FileNotFoundError:
            raise ValueError(f"no operating points at {path}: run the study (python -m bench.study) "
                             "and python -m splitcore.operating, or give --split and --codec") from None
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


def from_study(study: dict) -> dict:
    """The operating points of a ``bench.study`` result: every latent row, plus the full
    model's top-1 on the same images (the float32-input baseline row)."""
    rows = study["rows"]
    full = next(r for r in rows if r.get("kind") == "baseline" and r["codec"] == "input-float32")
    points = [{"split": r["split"], "codec": r["codec"], "head": r["head"],
               "payload_bytes": round(r["payload_bytes"], 1), "top1": r["top1"]}
              for r in rows if r.get("kind") == "latent"]
    return {"full_top1": full["top1"], "images": study["meta"].get("images"),
            "source": "results/study.json (python -m bench.study)", "points": points}


def main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m splitcore.operating",
                                description="Write the operating points that --split auto reads, from a study result.")
    p.add_argument("--study", type=Path, default=Path("results/study.json"))
    p.add_argument("--out", type=Path, default=Path("models/operating_points.json"))
    args = p.parse_args(argv)
    data = from_study(json.loads(args.study.read_text()))
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    best = OperatingPoints.load(args.out).choose(1.0)
    print(f"wrote {len(data['points'])} points to {args.out}; within 1.0 point: "
          f"{best.describe(data['full_top1'])}")


if __name__ == "__main__":
    main()
