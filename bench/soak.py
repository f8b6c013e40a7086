"""Soak: one stream for a long time, every process's memory sampled, latency per minute.

    python -m bench.soak [--minutes 30] [--split stage1] [--codec float32] [--out results/soak]

Starts ``server.py``, a receiver and a sender (the built-in pattern) as separate processes on
127.0.0.1, streams ``minutes`` of frames at ``--fps``, samples the resident memory (VmRSS) of
the three processes every ``--every`` seconds, and reads the sender's per-frame log. It
prints, and writes under ``--out`` (``soak.json``, ``soak.md``, ``soak.png``):

- per process: RSS at the start of the measured window and at the end, its min and max, and
  the fitted trend in MB per hour with a 95% confidence interval (least squares over the
  samples after ``--warmup`` minutes; "no growth beyond noise" means the interval includes 0
  or the trend is below the sampling noise);
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
    memory = {}
    for role, pts in samples.items():
        t = np.asarray([p[0] for p in pts])
        mb = np.asarray([p[1] for p in pts])
        keep = t >= args.warmup * 60
        memory[role] = {"samples": len(pts), "start_mb": round(float(mb[keep][0]), 1) if keep.any() else None,
                        "end_mb": round(float(mb[keep][-1]), 1) if keep.any() else None,
                        "min_mb": round(float(mb.min()), 1) if len(mb) else None,
                        "max_mb": round(float(mb.max()), 1) if len(mb) else None,
                        **{k: round(v, 3) for k, v in trend(t[keep], mb[keep]).items()},
                        "series": [[round(a, 1), round(b, 2)] for a, b in pts]}
    return {"args": {k: v for k, v in vars(args).items() if k != "out"}, "memory": memory,
            "minutes": per_minute(log, args.fps) if log.exists() else [], "sender_summary": summary}


def report(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [f"# Soak: {a['minutes']} min, {a['split']} {a['codec']}, {a['fps']} fps\n",
             f"RSS sampled every {a['every']} s; trend fitted after {a['warmup']} min of warm-up.\n",
             "| process | start MB | end MB | min MB | max MB | trend MB/h | 95% CI | noise MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for role, m in result["memory"].items():
        lines.append(f"| {role} | {m['start_mb']} | {m['end_mb']} | {m['min_mb']} | {m['max_mb']} | "
                     f"{m['slope_mb_per_h']:+.2f} | ±{m['ci95_mb_per_h']:.2f} | {m['noise_mb']:.2f} |")
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
    for role, m in result["memory"].items():
        s = np.asarray(m["series"]) if m["series"] else np.zeros((0, 2))
        ax1.plot(s[:, 0] / 60, s[:, 1], label=f"{role} ({m['slope_mb_per_h']:+.1f} MB/h)")
    ax1.set_xlabel("minutes")
    ax1.set_ylabel("RSS MB")
    ax1.legend(fontsize=8)
    ax1.set_title("resident memory of each process")
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
    args = p.parse_args(argv)
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
