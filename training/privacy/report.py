"""The study's outputs: ``privacy.json``, ``privacy.md``, the picture grid and the SSIM plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown(r: dict) -> str:
    m = r["meta"]
    lines = [
        "# Privacy: how well a latent turns back into the frame", "",
        f"{m['test_images']:,} CIFAR-10 test images (white-box: {m['whitebox_images']}); attacker trained on "
        f"{m['train_images']:,} CIFAR-10 training images; {m['date']}; {m['cpus']} CPUs; "
        f"{m['timings_s']['total_s']:.0f} s. Command: `{m['command']}`.", "",
        *[f"Rows of {', '.join(x['splits'])}" + (f" ({', '.join(x['quantizers'])})" if x.get("quantizers") else "")
          + " come from a later run (`--merge`): attacker trained on "
          f"{x['train_images']:,} training images, {x['test_images']:,} test images; {x['date']}; "
          f"{x['timings_s']['total_s']:.0f} s. Command: `{x['command']}`." for x in m.get("merged", [])],
        *([""] if m.get("merged") else []),
        f"- Metrics: {m['metrics']}. He et al. (ACSAC 2019) count SSIM < 0.3 as unrecognisable.",
        "- *recon top-1*: the full float32 model's top-1 on the reconstructions (how much content survives).",
        "- Every latent went through the shipped ONNX head (ONNX Runtime) and the wire codec (encode, frame, "
        "decode); the inverse network is retrained for every split x quantizer x head. Codecs that add "
        "zlib/zstd share their quantizer's attack (lossless).", "",
        "## Baselines: the frame a plain design sends", "",
        "| frame | bytes | PSNR dB | SSIM | recon top-1 % |", "|---|---|---|---|---|"]
    for b in r["baselines"]:
        lines.append(f"| `{b['codec']}` | {b['bytes']:,.0f} | {_f(b['psnr_db'], '.2f') if not b['exact'] == 1 else '∞'}"
                     f" | {b['ssim']:.3f} | {100 * b['recon_top1']:.2f} |")
    lines += ["", "## Inverse network (black-box), per split x quantizer x head", "",
              "| split | head | quantizer | PSNR dB | SSIM | SSIM < 0.3 | recon top-1 % | train MSE (last epoch) | train s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for a in r["inverse"]:
        lines.append(f"| {a['split']} | {a['head']} | `{a['quantizer']}` | {_f(a['psnr_db'], '.2f')} | {a['ssim']:.3f} | "
                     f"{100 * a['ssim_below_0_3']:.0f} % | {100 * a['recon_top1']:.2f} | "
                     f"{a['train']['train_mse_per_epoch'][-1]:.4f} | {a['train_s']:.0f} |")
    if r["whitebox"]:
        lines += ["", "## White-box rML (He et al. sec. 3, TV prior)", "",
                  "| split | head | quantizer | PSNR dB | SSIM | recon top-1 % | steps | TV weight | s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for a in r["whitebox"]:
            lines.append(f"| {a['split']} | {a['head']} | `{a['quantizer']}` | {_f(a['psnr_db'], '.2f')} | "
                         f"{a['ssim']:.3f} | {100 * a['recon_top1']:.2f} | {a['steps']} | {a['tv']} | {a['seconds']:.0f} |")
    if r["codecs"]:
        lines += ["", "## Every codec: bytes and accuracy (results/study.json) beside leakage (inverse network)", "",
                  "| split | head | codec | payload B | top-1 % | PSNR dB | SSIM | recon top-1 % |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in r["codecs"]:
            lines.append(f"| {c['split']} | {c['head']} | `{c['codec']}` | {c['payload_bytes']:,.0f} | "
                         f"{100 * c['top1']:.2f} | {_f(c['psnr_db'], '.2f')} | {c['ssim']:.3f} | "
                         f"{100 * c['recon_top1']:.2f} |")
    return "\n".join(lines) + "\n"


def grid_png(grid: dict, path: Path) -> None:
    """Rows: originals, then each reconstruction kind; columns: the same test images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(grid)
    n = len(next(iter(grid.values())))
    fig, axes = plt.subplots(len(names), 1, figsize=(n * 0.9 + 2.2, len(names) * 0.95 + 0.2), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        imgs = np.asarray(grid[name])
        imgs = imgs.astype(np.float32) / 255.0 if imgs.dtype == np.uint8 or imgs.max() > 1.5 else imgs
        if imgs.shape[1] == 3 and imgs.shape[-1] != 3:
            imgs = imgs.transpose(0, 2, 3, 1)
        ax.imshow(np.clip(np.concatenate(list(imgs), axis=1), 0, 1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ssim_plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    splits = list(dict.fromkeys(c["split"] for c in r["codecs"]))
    for split in splits:
        for head, marker in (("float32", "o"), ("int8", "x")):
            pts = [(c["payload_bytes"], c["ssim"]) for c in r["codecs"] if c["split"] == split and c["head"] == head]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=f"{split} ({head} head)", s=22)
    for b in r["baselines"]:
        ax.scatter(b["bytes"], b["ssim"], marker="s", color="k", s=18)
        ax.annotate(b["codec"], (b["bytes"], b["ssim"]), fontsize=6, xytext=(3, -3), textcoords="offset points")
    ax.axhline(0.3, color="grey", ls="--", lw=0.8)
    ax.text(120, 0.31, "SSIM 0.3 (He et al.: unrecognisable below)", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bytes a frame (payload, results/study.json; baselines: file bytes)")
    ax.set_ylabel("SSIM of the best attack (inverse network)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    grid = result.get("grid", {})
    body = {k: v for k, v in result.items() if k != "grid"}
    (out / "privacy.json").write_text(json.dumps(body, indent=1) + "\n")
    (out / "privacy.md").write_text(markdown(body))
    if grid:
        grid_png({k: np.asarray(v) for k, v in grid.items()}, out / "privacy_grid.png")
    ssim_plot(body, out / "privacy_ssim_vs_bytes.png")
