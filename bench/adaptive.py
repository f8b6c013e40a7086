"""python -m bench.adaptive: adaptive vs fixed operating points under a stepped link rate.

Two namespaces and a veth pair (``bench.netem``), tbf on the device side; server.py and the
receiver in the server namespace, the sender (pattern source, 30 fps) in the device one. The
cap steps 20 -> 0.5 -> 5 -> 20 Mbit/s, ``--phase`` seconds each, once per policy. Per phase
and policy it prints fps answered, replies/s, p50/p99 capture-to-reply latency (without the
first second after a step), frames dropped by the sender, payload bytes/s, the points in use
and how long after a step the new point was in use; writes results/adaptive/results.json,
README.md and a plot of latency and the chosen point over time.

    sudo nice -n 10 python -m bench.adaptive --phase 20

The adaptive run decides with a slower device's profile (``results/adaptive/slow-device.json``)
while every frame is made at this machine's speed: its latencies do not include that device's
head time, and the fixed points run at this machine's speed too.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.netem import SERVER_IP, Pair, unavailable_reason
from splitcore.process.children import PY, ROOT
from splitcore.runtime.operating import OperatingPoints

RATES = (20.0, 0.5, 5.0, 20.0)
FIXED = ("stage1/float32/float32", "stage1/clip4+zlib/float32", "features/clip4+zlib/float32")
OUT = ROOT / "results" / "adaptive"


def run_policy(policy: str, phase: float, fps: float, work: Path, extra: list[str]) -> dict:
    """One run of the rate steps with ``policy`` ("adaptive" or split/codec/head)."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "frames.jsonl"
    if policy == "adaptive":
        args = ["--split", "adaptive", *extra]
    else:
        split, codec, head = policy.split("/")
        args = ["--split", split, "--codec", codec, *(["--int8-head"] if head == "int8" else [])]
    frames = int(len(RATES) * phase * fps)
    with Pair(RATES[0]) as net:
        url = f"http://{SERVER_IP}:8080"
        net.spawn(net.server, [PY, "server.py", "--host", SERVER_IP, "--port", "8080"], work / "server.log")
        _wait_http_ns(net, url)
        net.spawn(net.server, [PY, "-m", "receiver", "--server", url, "--room", "bench"], work / "receiver.log")
        time.sleep(2.0)
        sender = net.spawn(net.device, [PY, "sender.py", "--server", url, "--room", "bench", "--json", "--quiet",
                                        "--fps", str(fps), "--frames", str(frames), "--log", str(log),
                                        "--log-level", "warning", *args], work / "sender.out")
        while not (log.exists() and log.stat().st_size > 0):
            if sender.poll() is not None:
                raise RuntimeError(f"sender ended: {(work / 'sender.out').read_text()[-2000:]}")
            time.sleep(0.01)
        t0 = time.monotonic()
        steps = []
        for k, rate in enumerate(RATES[1:], 1):
            time.sleep(max(0.0, t0 + k * phase - time.monotonic()))
            net.set_rate(rate)
            steps.append(round(time.monotonic() - t0, 3))
        sender.wait(timeout=phase * len(RATES) + 120)
        qdisc = net.qdisc_stats()
    out_text = (work / "sender.out").read_text()
    summary = json.loads([ln for ln in out_text.splitlines() if ln.startswith("{")][-1])
    return {"policy": policy, "summary": summary, "steps_s": steps, "qdisc": qdisc,
            "frames": [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]}


def _wait_http_ns(net: Pair, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = net.spawn(net.device, [PY, "-c", f"import urllib.request as u; u.urlopen('{url}/healthz', timeout=2)"],
                          Path("/dev/null"))
        if probe.wait(10) == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"server.py did not answer at {url}")


def analyse(run: dict, phase: float, fps: float, payload: dict[str, float]) -> list[dict]:
    """Per phase: fps answered, latency, drops, bytes/s, points and switch delay."""
    fixed = None if run["policy"] == "adaptive" else run["policy"]
    rows: list[dict] = []
    by_frame = {f["frame"]: f for f in run["frames"]}
    for k, rate in enumerate(RATES):
        lo, hi = int(k * phase * fps), int((k + 1) * phase * fps)
        fr = [by_frame[i] for i in range(lo, hi) if i in by_frame]
        replies = [f for f in fr if "latency_ms" in f]
        steady = [f["latency_ms"] for f in replies if f["frame"] >= lo + fps]
        keys = [fixed or f"{f.get('split')}/{f.get('codec')}/{f.get('head')}" for f in fr]
        points = sorted(set(keys), key=keys.index)
        # after a step: seconds (frame index / fps) until the first frame made by another point
        # than the one in use at the step; None when the phase kept that point throughout
        before = rows[-1]["last_point"] if rows else None
        switch_s = None
        if k and not fixed:
            switch_s = next((round((f["frame"] - lo) / fps, 2) for f, kk in zip(fr, keys, strict=True)
                             if kk != before), None)
        rows.append({"phase": k, "rate_mbit": rate, "fps_answered": round(len(replies) / phase, 2),
                     "replies_per_s": round(len(replies) / phase, 2),
                     "p50_ms": round(float(np.percentile(steady, 50)), 1) if steady else None,
                     "p99_ms": round(float(np.percentile(steady, 99)), 1) if steady else None,
                     "not_sent": (hi - lo) - len(fr), "not_answered": len(fr) - len(replies),
                     "payload_Bps": round(sum(payload.get(kk, 0.0) for kk in keys) / phase),
                     "points": points, "last_point": keys[-1] if keys else None,
                     "new_point_after_s": switch_s})
    return rows


def plot(runs: list[dict], phase: float, fps: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for run in runs:
        fr = [f for f in run["frames"] if "latency_ms" in f]
        ax.plot([f["frame"] / fps for f in fr], [f["latency_ms"] for f in fr], ".", ms=2, label=run["policy"])
    ad = next((r for r in runs if r["policy"] == "adaptive"), None)
    if ad:
        keys = [f"{f.get('split')}/{f.get('codec')}/{f.get('head')}" for f in ad["frames"]]
        names = sorted(set(keys))
        bx.plot([f["frame"] / fps for f in ad["frames"]], [names.index(k) for k in keys], "-", lw=1)
        bx.set_yticks(range(len(names)), names, fontsize=7)
    for k in range(1, len(RATES)):
        for a in (ax, bx):
            a.axvline(k * phase, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_ylabel("capture-to-reply ms")
    ax.legend(fontsize=7)
    ax.set_title("rates " + " -> ".join(f"{r:g}" for r in RATES) + " Mbit/s")
    bx.set_xlabel("s (frame index / fps)")
    bx.set_ylabel("adaptive: point in use")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.adaptive", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", type=float, default=20.0, help="seconds per rate (default 20)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--fixed", default=",".join(FIXED), help="fixed points split/codec/head, comma-separated ('' for none)")
    ap.add_argument("--adaptive-args", default=f"--device-profile {OUT / 'slow-device.json'}",
                    help="extra sender options for the adaptive run (default: the slow device's profile, "
                         "results/adaptive/slow-device.json; '' for this machine's own)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    why = unavailable_reason()
    if why:
        print(f"bench.adaptive: {why}")
        return 2
    payload = {f"{p.split}/{p.codec}/{p.head}": p.payload_bytes
               for p in OperatingPoints.load(ROOT / "models" / "operating_points.json").points}
    policies = ["adaptive", *[p for p in args.fixed.split(",") if p]]
    args.out.mkdir(parents=True, exist_ok=True)
    runs, table = [], {}
    for pol in policies:
        run = run_policy(pol, args.phase, args.fps, args.out / "runs" / pol.replace("/", "_"), args.adaptive_args.split())
        runs.append(run)
        table[pol] = analyse(run, args.phase, args.fps, payload)
        s = run["summary"]
        print(f"\n{pol}: accounted {s['accounted']}, sent {s['frames_sent']}, replies {s['replies']}, "
              f"dropped by sender {s['dropped_by_sender']}, by receiver {s['dropped_by_receiver']}, lost {s['lost']}, "
              f"switches {s.get('switches', 0)}")
        for r in table[pol]:
            print(f"  {r['rate_mbit']:5g} Mbit/s  {r['fps_answered']:5.1f} fps answered  p50 {r['p50_ms']} p99 {r['p99_ms']} ms  "
                  f"not sent {r['not_sent']}  unanswered {r['not_answered']}  {r['payload_Bps'] / 1e3:7.1f} kB/s  "
                  f"new point after {r['new_point_after_s']} s  {r['points']}")
    (args.out / "results.json").write_text(json.dumps(
        {"phase_s": args.phase, "fps": args.fps, "rates_mbit": RATES, "table": table,
         "summaries": {r["policy"]: r["summary"] for r in runs}, "steps_s": {r["policy"]: r["steps_s"] for r in runs}},
        indent=1))
    plot(runs, args.phase, args.fps, args.out / "adaptive.png")
    lines = ["# Adaptive operating point under stepped link rates", "",
             f"`python -m bench.adaptive --phase {args.phase:g}` ({args.fps:g} fps; "
             "p50/p99 without the first second of a phase)", "",
             "| policy | Mbit/s | fps answered | p50 ms | p99 ms | not sent | unanswered | kB/s | new point after s | points |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for pol, rows in table.items():
        lines += [f"| {pol} | {r['rate_mbit']:g} | {r['fps_answered']} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{r['not_sent']} | {r['not_answered']} | {r['payload_Bps'] / 1e3:.1f} | {r['new_point_after_s']} | "
                  f"{', '.join(r['points'])} |"
                  for r in rows]
    lines += ["", "![latency and chosen point](adaptive.png)", ""]
    (args.out / "README.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
