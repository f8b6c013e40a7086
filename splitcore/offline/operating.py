"""Writes ``models/operating_points.json`` from a split-study result (``bench/study.py``):
the figures ``--split auto`` chooses from at run time (``splitcore.runtime.operating``).

    python -m splitcore.offline.operating [--study results/study.json] [--out models/operating_points.json]
"""
from __future__ import annotations

import json
from pathlib import Path

from splitcore.runtime.operating import OperatingPoints


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
    p = argparse.ArgumentParser(prog="python -m splitcore.offline.operating",
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
