"""The privacy frontier: SSIM of the best attack against top-1 and bytes, for the shipped
splits and every defended variant tried (``python -m training.defend``).

    python -m training.privacy.frontier --variant NAME=CKPT_JSON,PRIVACY_JSON [...] [--out results/]

Each variant is recorded from its own files, never retyped: ``CKPT_JSON`` is the report
``training.defend`` writes beside its checkpoint (settings, test top-1), ``PRIVACY_JSON`` the
``privacy.json`` of ``python -m training.privacy --manifest <a models/ copy with that variant
exported> --splits stage1-private`` (its attack rows). They are kept in
``results/defended/NAME.json``; the plot ``privacy_frontier.png`` and the table
``privacy_frontier.md`` are drawn from those files and ``results/privacy.json`` +
``results/study.json`` (the shipped splits: their smallest codec and its top-1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def best_attack(rows: list[dict], split: str, head: str = "float32", quantizer: str = "float32") -> dict:
    """The attack row with the highest SSIM on (split, head, quantizer)."""
    mine = [r for r in rows if (r["split"], r["head"], r["quantizer"]) == (split, head, quantizer)]
    if not mine:
        raise ValueError(f"no attack on {split}/{head}/{quantizer}")
    return max(mine, key=lambda r: r["ssim"])


def record(name: str, report_path: Path, privacy_path: Path) -> dict:
    report = json.loads(report_path.read_text())
    privacy = json.loads(privacy_path.read_text())
    rows = privacy["inverse"] + privacy["whitebox"]
    split = report.get("split", "stage1-private")
    best = best_attack(rows, split)
    run = next((x for x in privacy["meta"].get("merged", []) if split in x["splits"]), privacy["meta"])
    c, h = report["channels"], report.get("size", 8)
    return {"name": name, "split": split, "latent": [c, h, h], "values": c * h * h,
            "int8_payload_bytes": c * h * h, "test_top1": report["test_top1"],
            "best_attack": {k: best[k] for k in ("attack", "ssim", "psnr_db", "recon_top1")},
            "attacks": [{k: r[k] for k in ("attack", "ssim", "psnr_db", "recon_top1")}
                        for r in rows if r["split"] == split],
            "attacker": {"train_images": run["train_images"], "test_images": run["test_images"],
                         "command": run["command"]},
            "training": {k: v for k, v in report.items() if k != "history"}}


def _attacker(command: str, images: int) -> str:
    """'10,000 x 4' from a privacy run's command line (its --epochs, default 3)."""
    words = command.split()
    epochs = words[words.index("--epochs") + 1] if "--epochs" in words else "3"
    return f"{images:,} x {epochs}"


def shipped(privacy: dict, study: dict) -> list[dict]:
    """Each shipped split at its smallest codec: bytes, top-1, and its best attack."""
    out = []
    rows = privacy["inverse"] + privacy["whitebox"]
    for split in dict.fromkeys(r["split"] for r in privacy["inverse"]):
        lat = [r for r in study["rows"] if r.get("kind") == "latent" and r["split"] == split and r["head"] == "float32"]
        if not lat:
            continue
        small = min(lat, key=lambda r: r["payload_bytes"])
        best = best_attack(rows, split, "float32", small["quantizer"])
        run = next((x for x in privacy["meta"].get("merged", []) if split in x["splits"]), privacy["meta"])
        out.append({"name": split, "codec": small["codec"], "payload_bytes": small["payload_bytes"],
                    "test_top1": small["top1"], "ssim": best["ssim"], "attack": best["attack"],
                    "attacker": _attacker(run["command"], run["train_images"])})
    return out


def draw(base: list[dict], variants: list[dict], full_top1: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for b in base:
        ax.scatter(b["test_top1"] * 100, b["ssim"], marker="o", color="tab:blue", s=30)
        ax.annotate(f"{b['name']} ({b['payload_bytes']:,.0f} B)", (b["test_top1"] * 100, b["ssim"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    for v in variants:
        ax.scatter(v["test_top1"] * 100, v["best_attack"]["ssim"], marker="D", color="tab:red", s=30)
        ax.annotate(f"{v['name']} ({v['int8_payload_bytes']:,} B int8)", (v["test_top1"] * 100, v["best_attack"]["ssim"]),
                    fontsize=7, xytext=(4, -9), textcoords="offset points")
    ax.axhline(0.3, color="grey", ls="--", lw=0.8)
    ax.axvline((full_top1 - 0.01) * 100, color="grey", ls=":", lw=0.8)
    ax.text((full_top1 - 0.01) * 100, 1.0, " full model - 1 pt", fontsize=7, va="top")
    ax.text(ax.get_xlim()[0], 0.31, " SSIM 0.3", fontsize=7)
    ax.set_xlabel("top-1 on the 10,000 CIFAR-10 test images (%)")
    ax.set_ylabel("SSIM of the best attack")
    ax.set_ylim(0, 1.05)
    ax.set_title("shipped splits (circles) and defended variants (diamonds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(base: list[dict], variants: list[dict], full_top1: float) -> str:
    lines = ["# Privacy frontier: leakage against accuracy and bytes", "",
             f"Full model top-1: {full_top1 * 100:.2f} %. Target of issue 15: SSIM < 0.3, top-1 >= "
             f"{(full_top1 - 0.01) * 100:.2f} %, <= 2,048 B a frame, at stem or stage1.", "",
             "| point | latent | bytes a frame | top-1 % | best attack | SSIM | PSNR dB | attacker's training images x epochs |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for b in base:
        lines.append(f"| {b['name']} (`{b['codec']}`) | shipped | {b['payload_bytes']:,.0f} | {b['test_top1'] * 100:.2f} | "
                     f"{b['attack']} | {b['ssim']:.3f} | | {b['attacker']} |")
    for v in variants:
        a = v["best_attack"]
        lines.append(f"| {v['name']} | {'x'.join(map(str, v['latent']))} | {v['int8_payload_bytes']:,} + header (int8) | "
                     f"{v['test_top1'] * 100:.2f} | {a['attack']} | {a['ssim']:.3f} | {a['psnr_db']:.2f} | "
                     f"{_attacker(v['attacker']['command'], v['attacker']['train_images'])} |")
    lines += ["", "Variants: settings and attacks in `results/defended/*.json` (each names the commands)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.privacy.frontier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=REPORT_JSON,PRIVACY_JSON")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    store = args.out / "defended"
    store.mkdir(parents=True, exist_ok=True)
    for spec in args.variant:
        name, _, files = spec.partition("=")
        rep, _, priv = files.partition(",")
        (store / f"{name}.json").write_text(json.dumps(record(name, Path(rep), Path(priv)), indent=1) + "\n")
    variants = [json.loads(f.read_text()) for f in sorted(store.glob("*.json"))]
    privacy = json.loads((args.out / "privacy.json").read_text())
    study = json.loads((args.out / "study.json").read_text())
    full = next(r for r in study["rows"] if r.get("kind") == "baseline" and r["codec"] == "input-float32")["top1"]
    base = shipped(privacy, study)
    draw(base, variants, full, args.out / "privacy_frontier.png")
    (args.out / "privacy_frontier.md").write_text(markdown(base, variants, full))
    print(markdown(base, variants, full))


if __name__ == "__main__":
    main()
