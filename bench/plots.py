"""The study's two figures (matplotlib, Agg backend, PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

QUANT_COLORS = {"float32": "#1f77b4", "float16": "#2ca02c", "int8-tensor": "#ff7f0e",
                "int8-channel": "#d62728", "clip4": "#9467bd"}
COMP_MARKERS = {"none": "o", "zlib": "s", "zstd": "^"}
COMP_STYLES = {"none": "-", "zlib": "--", "zstd": ":"}
SPLIT_LABELS = {"stem": "stem", "stage1": "s1", "stage2": "s2", "features": "feat"}


def _latent(result: dict, head: str) -> list[dict]:
    return [r for r in result["rows"] if r["kind"] == "latent" and r["head"] == head]


def _baselines(result: dict) -> dict[str, dict]:
    return {r["codec"]: r for r in result["rows"] if r["kind"] == "baseline"}


def _mark_baselines(ax, base: dict[str, dict], y_floor: float | None = None) -> None:
    style = {"raw-uint8": ("*", "black", 16), "input-float32": ("P", "dimgray", 12)}
    jpegs = sorted((n for n in base if n.startswith("jpeg")), key=lambda n: base[n]["payload_bytes"])
    for name, r in base.items():
        marker, color, size = style.get(name, ("X", "saddlebrown", 11))
        y = 100 * r["top1"]
        if y_floor is not None and y < y_floor:  # off the zoomed axis: an arrow at the bottom edge
            ax.annotate(f"{name}: {y:.1f} %", (r["payload_bytes"], y_floor), xytext=(0, 16),
                        textcoords="offset points", ha="center", fontsize=8, color=color,
                        arrowprops={"arrowstyle": "->", "color": color})
            continue
        ax.plot(r["payload_bytes"], y, marker=marker, color=color, ms=size, ls="none", zorder=5,
                mec="white", mew=0.8)
        label, offset = name, (6, -12)
        if name in jpegs:  # JPEGs sit close together: short labels, staggered
            k = jpegs.index(name)
            label, offset = "JPEG " + name.split("-")[1], (0, -16 if k % 2 else 9)
        ax.annotate(label, (r["payload_bytes"], 100 * r["top1"]), textcoords="offset points", xytext=offset,
                    fontsize=8, color=color, ha="center" if name in jpegs else "left")


def bytes_vs_accuracy(result: dict, path: Path) -> None:
    """Payload bytes a frame (log x) against top-1, one panel per split point: colour =
    quantizer, marker = compressor, filled = float32 head, hollow = INT8 head (each codec's
    two heads joined by a line); baselines and the full model's accuracy in every panel.
    The y axis is zoomed on the full model's accuracy; points below it are listed at the
    bottom edge instead of stretching the axis."""
    rows = [r for r in result["rows"] if r["kind"] == "latent"]
    base = _baselines(result)
    full = 100 * result["headline"]["full_top1"]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    ys = [100 * r["top1"] for r in rows] + [100 * r["top1"] for r in base.values()]
    y_lo = max(min(ys) - 0.15, full - 1.3)
    y_hi = max(max(ys), full) + 0.25
    xs = [r["payload_bytes"] for r in rows] + [r["payload_bytes"] for r in base.values()]
    x_lo, x_hi = min(xs) / 1.6, max(xs) * 1.6
    ncol = 2 if len(splits) > 1 else 1
    nrow = -(-len(splits) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2 * ncol, 4.6 * nrow + 0.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax in list(axes.flat)[len(splits):]:  # an odd number of splits leaves one panel empty
        ax.set_visible(False)
    for ax, split in zip(axes.flat, splits, strict=False):
        sr = [r for r in rows if r["split"] == split]
        for codec in dict.fromkeys(r["codec"] for r in sr):
            pts = [r for r in sr if r["codec"] == codec]
            q, c = pts[0]["quantizer"], pts[0]["compression"]
            col = QUANT_COLORS[q]
            ax.plot([r["payload_bytes"] for r in pts], [100 * r["top1"] for r in pts], color=col, lw=0.7, alpha=0.5)
            for r in pts:
                ax.plot(r["payload_bytes"], 100 * r["top1"], marker=COMP_MARKERS[c], color=col, ls="none",
                        ms=6.5, mfc=col if r["head"] == "float32" else "white", mew=1.3, alpha=0.9)
        _mark_baselines(ax, base, y_lo)
        ax.axhline(full, color="black", lw=1, ls="--")
        ax.axhline(full - 1, color="gray", lw=0.8, ls=":")
        ax.axvline(2048, color="gray", lw=0.8, ls=":")
        ax.text(2048 * 1.04, y_hi - 0.05, "2,048 B", fontsize=8, color="gray", va="top")
        ax.text(x_lo * 1.1, full + 0.03, f"full model {full:.2f} %", fontsize=8, va="bottom")
        ax.text(x_lo * 1.1, full - 1 + 0.03, "full model - 1 point", fontsize=8, color="gray", va="bottom")
        below = [r for r in sr if 100 * r["top1"] < y_lo]
        if below:  # off the zoomed axis: said in words rather than stretching every panel
            lo, hi = min(100 * r["top1"] for r in below), max(100 * r["top1"] for r in below)
            b_lo, b_hi = min(r["payload_bytes"] for r in below), max(r["payload_bytes"] for r in below)
            ax.text(x_lo * 1.1, y_lo + 0.45, f"{len(below)} points below this axis: top-1 {lo:.2f}-{hi:.2f} %,\n"
                    f"{b_lo:,.0f}-{b_hi:,.0f} B (results/study.md)", fontsize=8, color="darkred", va="bottom")
        shape = "x".join(map(str, sr[0]["shape"][1:]))
        ax.set_title(f"split {split} (latent {shape})", fontsize=11)
        ax.set_xscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.grid(True, which="both", alpha=0.25)
    for ax in axes[-1]:
        ax.set_xlabel("payload bytes per frame (log scale)")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 on CIFAR-10 test (%)")
    for ax in list(axes.flat)[len(splits):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=col, marker="o", ls="none", label=q) for q, col in QUANT_COLORS.items()]
    handles += [Line2D([], [], color="gray", marker=m, mfc="gray", ls="none",
                       label=f"+{c}" if c != "none" else "no compression") for c, m in COMP_MARKERS.items()]
    handles += [Line2D([], [], color="gray", marker="o", ls="none", mfc="gray", label="float32 head"),
                Line2D([], [], color="gray", marker="o", ls="none", mfc="white", label="INT8 head")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=9, frameon=False)
    fig.suptitle(f"Bytes per frame vs top-1 accuracy, {result['meta']['images']:,} test images; baselines "
                 "(black/brown) send pixels to the full model", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def bytes_per_split(result: dict, path: Path) -> None:
    """Payload bytes a frame at each split point, one line per codec (float32 head; the INT8
    head's compressed sizes differ, shown in the second panel when present)."""
    heads = [h for h in ("float32", "int8") if _latent(result, h)]
    base = _baselines(result)
    fig, axes = plt.subplots(1, len(heads), figsize=(7.5 * len(heads), 6.2), sharey=True, squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        hr = _latent(result, head)
        splits = list(dict.fromkeys(r["split"] for r in hr))
        xs = range(len(splits))
        for codec in dict.fromkeys(r["codec"] for r in hr):
            by = {r["split"]: r for r in hr if r["codec"] == codec}
            q, c = next(iter(by.values()))["quantizer"], next(iter(by.values()))["compression"]
            ax.plot(list(xs), [by[s]["payload_bytes"] if s in by else float("nan") for s in splits],
                    ls=COMP_STYLES[c], marker=COMP_MARKERS[c], color=QUANT_COLORS[q],
                    mfc=QUANT_COLORS[q] if c == "none" else "none", lw=1.2, ms=6)
        for name, r in base.items():
            if name in ("raw-uint8", "jpeg-q90", "input-float32"):
                ax.axhline(r["payload_bytes"], color="black" if name == "raw-uint8" else "saddlebrown", lw=0.9,
                           ls="--" if name == "raw-uint8" else ":")
                ax.text(len(splits) - 1 + 0.05, r["payload_bytes"], f" {name} {r['payload_bytes']:,.0f} B",
                        fontsize=8, va="bottom")
        shapes = {r["split"]: "x".join(map(str, r["shape"][1:])) for r in hr}
        ax.set_xticks(list(xs), [f"{s}\n{shapes[s]}" for s in splits])
        ax.set_xlim(-0.3, len(splits) - 1 + 1.1)
        ax.set_yscale("log")
        ax.set_title(f"{head} head", fontsize=11)
        ax.set_xlabel("split point (latent shape)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("payload bytes per frame (log scale)")
    handles = [Line2D([], [], color=col, marker="o", ls="-", label=q) for q, col in QUANT_COLORS.items()]
    handles += [Line2D([], [], color="gray", marker=m, mfc="gray" if c == "none" else "none", ls=COMP_STYLES[c],
                       label=f"+{c}" if c != "none" else "no compression") for c, m in COMP_MARKERS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=9, fontsize=9, frameon=False)
    fig.suptitle("Bytes per frame at each split point, per codec (mean over test images)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=130)
    plt.close(fig)
