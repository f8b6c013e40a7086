"""Writes ``models/operating_points.json`` from a split-study result (``bench/study.py``):
the figures ``--split auto`` chooses from at run time (``splitcore.runtime.operating``).

    python -m splitcore.offline.operating [--study results/study.json] [--privacy results/privacy.json]
        [--out models/operating_points.json]

With the privacy study's result (``python -m training.privacy``), each point it attacked gains
its ``leakage``: the attack whose reconstructions came closest (highest SSIM) among those run
on that split, head and quantizer (a codec's compression is lossless, so every codec of a
quantizer shares its attack).
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


def leakage_of(privacy: dict) -> dict[tuple[str, str, str], dict]:
    """(split, head, quantizer) -> the worst case over the attacks run on it."""
    worst: dict[tuple[str, str, str], dict] = {}
    for row in [*privacy.get("inverse", []), *privacy.get("whitebox", [])]:
        key = (row["split"], row["head"], row["quantizer"])
        if key not in worst or row["ssim"] > worst[key]["ssim"]:
            worst[key] = {"ssim": round(row["ssim"], 4), "psnr_db": round(row["psnr_db"], 2),
                          "recon_top1": round(row["recon_top1"], 4), "attack": row["attack"]}
    return worst


def with_leakage(points: dict, privacy: dict) -> dict:
    """``points`` (``from_study``) with each attacked point's leakage added."""
    worst = leakage_of(privacy)
    for p in points["points"]:
        leak = worst.get((p["split"], p["head"], p["codec"].partition("+")[0]))
        if leak is not None:
            p["leakage"] = leak
    points["leakage_source"] = "results/privacy.json (python -m training.privacy)"
    return points


def main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m splitcore.offline.operating",
                                description="Write the operating points that --split auto reads, from a study result.")
    p.add_argument("--study", type=Path, default=Path("results/study.json"))
    p.add_argument("--privacy", type=Path, default=Path("results/privacy.json"),
                   help="the privacy study's result: adds each point's leakage (skipped when the file is absent)")
    p.add_argument("--out", type=Path, default=Path("models/operating_points.json"))
    args = p.parse_args(argv)
    data = from_study(json.loads(args.study.read_text()))
    if args.privacy.is_file():
        data = with_leakage(data, json.loads(args.privacy.read_text()))
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    best = OperatingPoints.load(args.out).choose(1.0)
    print(f"wrote {len(data['points'])} points to {args.out}; within 1.0 point: "
          f"{best.describe(data['full_top1'])}")


if __name__ == "__main__":
    main()
