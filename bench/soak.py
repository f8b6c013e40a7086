"""Soak: one stream for a long time, every process's memory sampled, latency per minute.

    python -m bench.soak [--minutes 30] [--split stage1] [--codec float32] [--out results/soak]
    python -m bench.soak --from results/soak/soak.json   # the report again, from a run's samples

Starts ``server.py``, a receiver and a sender (the built-in pattern) as separate processes on
127.0.0.1, streams ``minutes`` of frames at ``--fps``, samples the resident memory (VmRSS) of
the three processes every ``--every`` seconds, and reads the sender's per-frame log. It
prints, and writes under ``--out`` (``soak.json``, ``soak.md``, ``soak.png``):

- per process: RSS at the start of the measured window and at the end, its min and max, and
  the fitted trend in MB per hour with a 95% confidence interval (least squares over the
  samples after ``--warmup`` minutes; "no growth beyond noise" means the interval includes 0
  or the trend is below the sampling noise); the same fit over the first and the second half
  of the window alone, and the growth of each quarter of it, tell a leak (the same slope all
  along) from memory that settles (a second half flatter than the first, later quarters
  growing less);
- per minute: frames answered, p50 and p99 capture-to-reply latency, and frames dropped
  (by the sender's pacer as stale, and by the receiver), so a build-up of stale frames or of
  latency shows as a trend too;
- the sender's final summary (every frame accounted for or not).
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from splitcore.process.children import PY, free_port, process, receiver_args, sender_args, wait_http

ROLES = ("server", "receiver", "sender")


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (VmRSS), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def trend(t_s: np.ndarray, mb: np.ndarray) -> dict[str, float]:
    """Least-squares slope in MB/hour with its 95% confidence half-width, and the residual
    noise (standard deviation of the samples around the line, MB)."""
    if len(t_s) < 3:
        return {"slope_mb_per_h": math.nan, "ci95_mb_per_h": math.nan, "noise_mb": math.nan}
    a, b = np.polyfit(t_s, mb, 1)
    resid = mb - (a * t_s + b)
    s = float(np.sqrt(np.sum(resid ** 2) / (len(t_s) - 2)))
    se = s / float(np.sqrt(np.sum((t_s - t_s.mean()) ** 2))) if np.ptp(t_s) > 0 else math.nan
    return {"slope_mb_per_h": float(a * 3600), "ci95_mb_per_h": float(1.96 * se * 3600), "noise_mb": s}


def views(t_s: np.ndarray, mb: np.ndarray) -> dict[str, Any]:
    """The same samples seen piecewise: the trend of each half of the window, and the growth
    of each quarter (mean of its last minute minus mean of its first, MB), so a plateau is
    told from a steady leak without a model of either."""
    if len(t_s) < 8:
        return {"first_half": trend(t_s[:0], mb[:0]), "second_half": trend(t_s[:0], mb[:0]), "quarters_mb": []}
    mid = t_s[0] + (t_s[-1] - t_s[0]) / 2
    h1, h2 = t_s <= mid, t_s >= mid
    edges = np.linspace(t_s[0], t_s[-1], 5)
    quarters = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        first = mb[(t_s >= lo) & (t_s <= min(hi, lo + 60))]
        last = mb[(t_s <= hi) & (t_s >= max(lo, hi - 60))]
        quarters.append(round(float(last.mean() - first.mean()), 3) if len(first) and len(last) else math.nan)
    return {"first_half": {k: round(v, 3) for k, v in trend(t_s[h1], mb[h1]).items()},
            "second_half": {k: round(v, 3) for k, v in trend(t_s[h2], mb[h2]).items()},
            "quarters_mb": quarters}


def per_minute(log: Path, fps: float) -> list[dict[str, Any]]:
    """Replies, latency percentiles and drops per minute of stream, from the sender's --log.
    A frame's minute comes from its source index (the pacer's 30 fps grid), so the pacer's
    skipped frames (gaps in the index) are counted as stale drops of that minute."""
    per: dict[int, dict[str, Any]] = {}
    last_frame = -1
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        frame = int(rec.get("frame", -1))
        minute = int(frame // (fps * 60)) if frame >= 0 else 0
        m = per.setdefault(minute, {"lat": [], "replies": 0, "stale": 0, "receiver_drops": 0, "errors": 0})
        if frame > last_frame + 1:
            m["stale"] += frame - last_frame - 1
        last_frame = max(last_frame, frame)
        if "latency_ms" in rec:
            m["replies"] += 1
            m["lat"].append(rec["latency_ms"])
        elif rec.get("status") == "dropped":
            m["receiver_drops"] += 1
        else:
            m["errors"] += 1
    out = []
    for minute in sorted(per):
        m = per[minute]
        lat = np.asarray(m.pop("lat"), float)
        p50, p99 = (np.percentile(lat, [50, 99]) if len(lat) else (math.nan, math.nan))
        out.append({"minute": minute, **m, "p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2)})
    return out


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    frames = int(args.minutes * 60 * args.fps)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "frames.jsonl"
    samples: dict[str, list[tuple[float, float]]] = {r: [] for r in ROLES}
    with process([PY, "server.py", "--port", str(port)], work / "server.log") as srv:
        wait_http(f"{url}/healthz", srv)
        with process(receiver_args(url, "soak"), work / "receiver.log") as recv, \
                process(sender_args(url, "soak", "--split", args.split, "--codec", args.codec,
                                    "--frames", str(frames), "--fps", str(args.fps), "--json", "--quiet",
                                    "--log", str(log)), work / "sender.out") as snd:
            pids = {"server": srv.pid, "receiver": recv.pid, "sender": snd.pid}
            t0 = time.monotonic()
            deadline = t0 + args.minutes * 60 * 1.5 + 60
            with tqdm(total=round(args.minutes * 60), desc="soak", unit="s") as bar:
                while snd.poll() is None and time.monotonic() < deadline:
                    now = time.monotonic() - t0
                    for role, pid in pids.items():
                        rss = rss_mb(pid)
                        if rss is not None:
                            samples[role].append((now, rss))
                    bar.update(max(0, min(round(now), bar.total) - bar.n))
                    time.sleep(args.every)
            snd.wait(60)
    summary_lines = [ln for ln in (work / "sender.out").read_text().splitlines() if ln.startswith("{")]
    if not summary_lines:
        raise SystemExit(f"soak: the sender gave no summary (exit code {snd.returncode}):\n"
                         f"{(work / 'sender.out').read_text()[-3000:]}")
    summary = json.loads(summary_lines[-1])
    return {"args": {k: v for k, v in vars(args).items() if k not in ("out", "source")},
            "memory": fit(samples, args.warmup),
            "minutes": per_minute(log, args.fps) if log.exists() else [], "sender_summary": summary}


def refit(result: dict[str, Any]) -> dict[str, Any]:
    """A soak.json's memory fitted again from its samples (``--from``)."""
    samples = {role: [(a, b) for a, b in m["series"]] for role, m in result["memory"].items()}
    return {**result, "memory": fit(samples, result["args"]["warmup"])}


def fit(samples: dict[str, list[tuple[float, float]]], warmup_min: float) -> dict[str, Any]:
    """Per process: the window's ends, extremes, trend and piecewise views, and the samples."""
    memory = {}
    for role, pts in samples.items():
        t = np.asarray([p[0] for p in pts])
        mb = np.asarray([p[1] for p in pts])
        keep = t >= warmup_min * 60
        memory[role] = {"samples": len(pts), "start_mb": round(float(mb[keep][0]), 1) if keep.any() else None,
                        "end_mb": round(float(mb[keep][-1]), 1) if keep.any() else None,
                        "min_mb": round(float(mb.min()), 1) if len(mb) else None,
                        "max_mb": round(float(mb.max()), 1) if len(mb) else None,
                        **{k: round(v, 3) for k, v in trend(t[keep], mb[keep]).items()},
                        **views(t[keep], mb[keep]),
                        "series": [[round(a, 1), round(b, 2)] for a, b in pts]}
    return memory


def report(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [f"# Soak: {a['minutes']} min, {a['split']} {a['codec']}, {a['fps']} fps\n",
             f"RSS sampled every {a['every']} s; trend fitted after {a['warmup']} min of warm-up.\n",
             "| process | start MB | end MB | min MB | max MB | trend MB/h | 95% CI | noise MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for role, m in result["memory"].items():
        lines.append(f"| {role} | {m['start_mb']} | {m['end_mb']} | {m['min_mb']} | {m['max_mb']} | "
                     f"{m['slope_mb_per_h']:+.2f} | ±{m['ci95_mb_per_h']:.2f} | {m['noise_mb']:.2f} |")
    lines += ["", "The same samples piecewise: the trend over each half of the measured window, and how "
                  "much each quarter of it grew (MB, its last minute's mean minus its first's). A leak keeps "
                  "its slope; memory that settles has a flatter second half.\n",
              "| process | 1st half MB/h | 2nd half MB/h | growth per quarter MB |", "|---|---:|---:|---|"]
    for role, m in result["memory"].items():
        if "first_half" not in m:  # a soak.json from before the piecewise view
            continue
        h1, h2 = m["first_half"], m["second_half"]
        lines.append(f"| {role} | {h1['slope_mb_per_h']:+.2f} ±{h1['ci95_mb_per_h']:.2f} | "
                     f"{h2['slope_mb_per_h']:+.2f} ±{h2['ci95_mb_per_h']:.2f} | "
                     f"{', '.join(f'{q:+.3f}' for q in m['quarters_mb'])} |")
    lines += ["", "| minute | replies | p50 ms | p99 ms | stale (sender) | dropped (receiver) | errors |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {m['minute']} | {m['replies']} | {m['p50_ms']} | {m['p99_ms']} | {m['stale']} | "
              f"{m['receiver_drops']} | {m['errors']} |" for m in result["minutes"]]
    s = result["sender_summary"]
    if s:
        lines += ["", f"Sender: {s.get('frames_captured')} captured, {s.get('frames_sent')} sent, "
                      f"{s.get('replies')} replies, dropped by sender {s.get('dropped_by_sender')}, by receiver "
                      f"{s.get('dropped_by_receiver')}, errors {s.get('errors')}, accounted: {s.get('accounted')}; "
                      f"latency p50 {s.get('latency_p50_ms')} ms, p99 {s.get('latency_p99_ms')} ms."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=False)
    warmup_s = result["args"]["warmup"] * 60
    for role, m in result["memory"].items():
        s = np.asarray(m["series"]) if m["series"] else np.zeros((0, 2))
        s = s[s[:, 0] >= warmup_s]
        if not len(s):
            continue
        half = f", 2nd half {m['second_half']['slope_mb_per_h']:+.2f}" if "second_half" in m else ""
        ax1.plot(s[:, 0] / 60, s[:, 1] - s[0, 1],
                 label=f"{role} ({s[0, 1]:.0f} MB at start; {m['slope_mb_per_h']:+.2f} MB/h{half})")
    ax1.set_xlabel("minutes")
    ax1.set_ylabel("RSS change, MB")
    ax1.legend(fontsize=8)
    ax1.set_title("resident memory of each process, after the warm-up")
    mins = result["minutes"]
    ax2.plot([m["minute"] for m in mins], [m["p50_ms"] for m in mins], "o-", label="p50")
    ax2.plot([m["minute"] for m in mins], [m["p99_ms"] for m in mins], "s-", label="p99")
    ax2.set_xlabel("minute of stream")
    ax2.set_ylabel("capture-to-reply ms")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="how long to stream (default 30)")
    p.add_argument("--split", default="stage1", help="split point (default stage1: the largest frames that hold 30 fps)")
    p.add_argument("--codec", default="float32", help="latent codec (default float32)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the trend (default 2)")
    p.add_argument("--out", type=Path, default=Path("results/soak"))
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="SOAK_JSON",
                   help="no run: fit and report again the samples of a soak.json (its own options apply)")
    args = p.parse_args(argv)
    if args.source is not None:
        result = refit(json.loads(args.source.read_text()))
        for k, v in result["args"].items():
            setattr(args, k, v)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    md = report(result)
    (args.out / "soak.md").write_text(md + f"\nGenerated by `python -m bench.soak --minutes {args.minutes:g} "
                                           f"--split {args.split} --codec {args.codec}`.\n")
    plot(result, args.out / "soak.png")
    print(md)
    print(f"wrote {args.out}/soak.json, soak.md and soak.png")


if __name__ == "__main__":
    main()
