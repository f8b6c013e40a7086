"""python -m bench.adaptive: adaptive vs fixed operating points under a stepped link rate.

Two namespaces and a veth pair (``bench.netem``), tbf on the device side; server.py and the
receiver in the server namespace, the sender (pattern source, 30 fps) in the device one. The
cap steps 20 -> 0.5 -> 5 -> 20 Mbit/s, ``--phase`` seconds each, once per policy. Per phase
and policy it prints fps answered, replies/s, p50/p99 capture-to-reply latency (without the
first second after a step), frames dropped by the sender, payload bytes/s, the points in use
and how long after a step the new point was in use (the first frame of a point other than
the one in use at the step that then holds for a second: a probe's train of a few frames is
not a new point), the controller's decisions per phase, and the issue's targets met or not;
writes results/adaptive/results.json, README.md and a plot of latency and the chosen point.

    sudo nice -n 10 python -m bench.adaptive --phase 20

The adaptive run decides with a slower device's profile (``results/adaptive/slow-device.json``)
while every frame is made at this machine's speed: its latencies do not include that device's
head time, and the fixed points run at this machine's speed too. A second table adds each
frame's slow-device head time to its latency (every policy alike: an upper bound, it keeps
this machine's own head time too) and compares each p99 with the best fixed point's.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
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
    log.unlink(missing_ok=True)  # a previous run's log would start the phases before this sender streams
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
        net.spawn(net.server, [PY, "-m", "receiver", "--server", url, "--room", "bench", "--workers", "1"], work / "receiver.log")
        time.sleep(2.0)
        sender = net.spawn(net.device, [PY, "sender.py", "--server", url, "--room", "bench", "--json", "--quiet",
                                        "--fps", str(fps), "--frames", str(frames), "--log", str(log),
                                        "--log-level", "warning", *args], work / "sender.out")
        while not (log.exists() and log.stat().st_size > 0):
            if sender.poll() is not None:
                raise RuntimeError(f"sender ended: {(work / 'sender.out').read_text()[-2000:]}")
            time.sleep(0.01)
        t0, wall0 = time.monotonic(), time.time()
        steps, walls = [], [wall0]
        for k, rate in enumerate(RATES[1:], 1):
            time.sleep(max(0.0, t0 + k * phase - time.monotonic()))
            net.set_rate(rate)
            steps.append(round(time.monotonic() - t0, 3))
            walls.append(time.time())
        sender.wait(timeout=phase * len(RATES) + 120)
        qdisc = net.qdisc_stats()
    out_text = (work / "sender.out").read_text()
    summary = json.loads([ln for ln in out_text.splitlines() if ln.startswith("{")][-1])
    return {"policy": policy, "summary": summary, "steps_s": steps, "steps_wall": walls,
            "t0_mono": t0, "steps_mono": [t0 + s for s in steps], "qdisc": qdisc,
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


def analyse(run: dict, phase: float, fps: float, payload: dict[str, float], head_ms: dict[str, float]) -> list[dict]:
    """Per phase: fps answered, latency (also with the slow device's head time added), drops,
    bytes/s, points, switch delay and the controller's decisions. A frame belongs to the phase
    its capture time fell in (the log's ``capture_ms`` against the steps' monotonic times; by
    frame index / fps when the log has no capture times: that drifts when the sender runs
    below its frame rate)."""
    fixed = None if run["policy"] == "adaptive" else run["policy"]
    rows: list[dict] = []
    frames = run["frames"]
    by_frame = {f["frame"]: f for f in frames}
    mono = run.get("steps_mono")
    if mono is not None and frames and all("capture_ms" in f for f in frames):
        starts = [min(f["capture_ms"] for f in frames) / 1000, *mono]

        def where(f: dict) -> tuple[int, float]:
            t = f["capture_ms"] / 1000
            k = sum(1 for s in mono if s <= t)
            return k, t - starts[k]
    else:
        def where(f: dict) -> tuple[int, float]:
            k = min(len(RATES) - 1, int(f["frame"] // (phase * fps)))
            return k, (f["frame"] - k * phase * fps) / fps
    at = {i: where(f) for i, f in by_frame.items()}
    walls = run.get("steps_wall", [])
    log = run["summary"].get("switch_log", [])
    # the frames in the order they were sent: a switch decided after n frames applies from the n-th
    fr_all = sorted(by_frame)
    kept = [(fr_all[sw["after_frame"]], sw["to"]) for sw in log
            if sw["why"] in ("congested", "better", "probe_ok") and sw["after_frame"] < len(fr_all)]
    f0 = by_frame[fr_all[0]] if fr_all else {}
    first = f"{f0.get('split')}/{f0.get('codec')}/{f0.get('head')}" if f0 else None
    for k, rate in enumerate(RATES):
        fr = [by_frame[i] for i in fr_all if at[i][0] == k]
        keys = [fixed or f"{f.get('split')}/{f.get('codec')}/{f.get('head')}" for f in fr]
        replies = [(f, kk) for f, kk in zip(fr, keys, strict=True) if "latency_ms" in f]
        steady = [f["latency_ms"] for f, _ in replies if at[f["frame"]][1] >= 1.0]
        slow = [f["latency_ms"] + _head(kk, head_ms) for f, kk in replies if at[f["frame"]][1] >= 1.0]
        points = sorted(set(keys), key=keys.index)
        # after a step: seconds until the first frame made by the point a switch after the step
        # chose (congested, better, probe_ok: a probe's train of a few frames is not a new
        # point); None when the phase kept the point in use at the step
        switch_s = first_other = None
        if k and not fixed and fr:
            lo = fr[0]["frame"]
            before = _steady_at(lo, kept, first)
            first_other = next((round(at[f["frame"]][1], 2) for f, kk in zip(fr, keys, strict=True)
                                if kk != before), None)
            chosen = next(((i, to) for i, to in kept if i in at and at[i][0] == k and to != before), None)
            if chosen is not None:
                switch_s = next((round(at[f["frame"]][1], 2) for f, kk in zip(fr, keys, strict=True)
                                 if f["frame"] >= chosen[0] and kk == chosen[1]), None)
        whys: dict[str, int] = {}
        if walls:
            start, end = walls[k], walls[k + 1] if k + 1 < len(walls) else float("inf")
            for sw in log:
                if start <= sw.get("wall", 0.0) < end:
                    whys[sw["why"]] = whys.get(sw["why"], 0) + 1
        rows.append({"phase": k, "rate_mbit": rate, "fps_answered": round(len(replies) / phase, 2),
                     "replies_per_s": round(len(replies) / phase, 2),
                     "p50_ms": round(float(np.percentile(steady, 50)), 1) if steady else None,
                     "p99_ms": round(float(np.percentile(steady, 99)), 1) if steady else None,
                     "p50_slow_ms": round(float(np.percentile(slow, 50)), 1) if slow else None,
                     "p99_slow_ms": round(float(np.percentile(slow, 99)), 1) if slow else None,
                     "not_sent": max(0, round(phase * fps) - len(fr)), "not_answered": len(fr) - len(replies),
                     "payload_Bps": round(sum(payload.get(kk, 0.0) for kk in keys) / phase),
                     "points": points, "last_point": keys[-1] if keys else None,
                     "new_point_after_s": switch_s, "first_other_point_after_s": first_other,
                     "decisions": whys})
    return rows


def _steady_at(frame: int, kept: list[tuple[int, str]], first: str | None) -> str | None:
    """The point in use (not a train's) before ``frame``: the last switch's, else the first frame's."""
    last = [to for i, to in kept if i < frame]
    return last[-1] if last else first


def _head(key: str, head_ms: dict[str, float]) -> float:
    split, _, head = key.split("/")
    return head_ms.get(f"{split}/{head}", 0.0)


def targets(table: dict[str, list[dict]], runs: list[dict], fps: float) -> list[str]:
    """The issue's targets against this run: lines for the README."""
    ad = table.get("adaptive")
    fixed = {p: rows for p, rows in table.items() if p != "adaptive"}
    if ad is None or not fixed:
        return []
    out = ["## Against the issue's targets (this run)", ""]
    low = min(r["fps_answered"] for r in ad)
    out.append(f"- (a) >= {fps - 1:g} fps answered in every phase: {'met' if low >= fps - 1 else 'NOT met'} "
               f"({', '.join(str(r['fps_answered']) for r in ad)})")
    waits = []
    for k, r in enumerate(ad[1:], 1):
        changed = r["new_point_after_s"]
        waits.append(f"{ad[k - 1]['rate_mbit']:g} -> {r['rate_mbit']:g}: "
                     + (f"{changed} s" if changed is not None else "no change (the point in use stayed)"))
    ok_b = all(r["new_point_after_s"] is None or r["new_point_after_s"] <= 1.0 for r in ad[1:])
    out.append(f"- (b) the new point in use within 1 s of each step: {'met' if ok_b else 'NOT met'} "
               f"({'; '.join(waits)})")
    for label, key in (("with the slow device's head time added", "p99_slow_ms"), ("at this machine's speed", "p99_ms")):
        ratios = []
        for k, r in enumerate(ad):
            best = min((rows[k][key] for rows in fixed.values() if rows[k][key] is not None), default=None)
            ratios.append(round(r[key] / best, 2) if r[key] is not None and best else None)
        ok_c = all(x is not None and x <= 1.5 for x in ratios)
        out.append(f"- (c) p99 per phase <= 1.5x the best fixed point's, {label}: "
                   f"{'met' if ok_c else 'NOT met'} ({', '.join(f'{x}x' for x in ratios)})")
    acc = [(r["policy"], r["summary"]["accounted"], r["summary"]["lost"]) for r in runs]
    ok_d = all(a and not lost for _, a, lost in acc)
    out.append(f"- (d) zero frames unaccounted: {'met' if ok_d else 'NOT met'} "
               f"({', '.join(f'{p}: accounted {a}, lost {lost}' for p, a, lost in acc)})")
    return [*out, ""]


def _seconds(run: dict, fps: float) -> Callable[[dict], float]:
    """A frame's time on the plot: its capture time since the rates began (the run's ``t0``,
    or, for runs read back by ``--replot``, the first reply's arrival), else its index / fps
    (which runs ahead of time when the sender skips frames)."""
    frames = run["frames"]
    if frames and all("capture_ms" in f for f in frames):
        t0 = run.get("t0_mono")
        if t0 is None:
            first = min((f for f in frames if "latency_ms" in f), key=lambda f: f["capture_ms"], default=None)
            t0 = (first["capture_ms"] + first["latency_ms"]) / 1000 if first else frames[0]["capture_ms"] / 1000
        return lambda f: f["capture_ms"] / 1000 - t0
    return lambda f: f["frame"] / fps


def plot(runs: list[dict], phase: float, fps: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for run in runs:
        at = _seconds(run, fps)
        fr = [f for f in run["frames"] if "latency_ms" in f]
        ax.plot([at(f) for f in fr], [f["latency_ms"] for f in fr], ".", ms=2, label=run["policy"])
    ad = next((r for r in runs if r["policy"] == "adaptive"), None)
    if ad:
        at = _seconds(ad, fps)
        keys = [f"{f.get('split')}/{f.get('codec')}/{f.get('head')}" for f in ad["frames"]]
        names = sorted(set(keys))
        bx.plot([at(f) for f in ad["frames"]], [names.index(k) for k in keys], "-", lw=1)
        bx.set_yticks(range(len(names)), names, fontsize=7)
    for k in range(1, len(RATES)):
        for a in (ax, bx):
            a.axvline(k * phase, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_ylabel("capture-to-reply ms")
    ax.legend(fontsize=7)
    ax.set_title("rates " + " -> ".join(f"{r:g}" for r in RATES) + " Mbit/s")
    bx.set_xlabel("s since the rates began (frame capture time)")
    bx.set_ylabel("adaptive: point in use")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replot(out: Path, phase: float, fps: float) -> int:
    """The figure again from ``out/runs/POLICY/frames.jsonl`` (the adaptive run first)."""
    runs = []
    for d in sorted((out / "runs").glob("*/frames.jsonl"), key=lambda p: (p.parent.name != "adaptive", p.parent.name)):
        policy = d.parent.name if d.parent.name == "adaptive" else d.parent.name.replace("_", "/")
        runs.append({"policy": policy, "frames": [json.loads(ln) for ln in d.read_text().splitlines() if ln.strip()]})
    if not runs:
        print(f"bench.adaptive: no runs under {out / 'runs'}")
        return 2
    plot(runs, phase, fps, out / "adaptive.png")
    print(f"wrote {out / 'adaptive.png'} from {len(runs)} runs")
    return 0


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
    ap.add_argument("--replot", action="store_true",
                    help="measure nothing: draw adaptive.png again from the frames logged under --out/runs/")
    args = ap.parse_args(argv)
    if args.replot:
        return replot(args.out, args.phase, args.fps)
    why = unavailable_reason()
    if why:
        print(f"bench.adaptive: {why}")
        return 2
    payload = {f"{p.split}/{p.codec}/{p.head}": p.payload_bytes
               for p in OperatingPoints.load(ROOT / "models" / "operating_points.json").points}
    policies = ["adaptive", *[p for p in args.fixed.split(",") if p]]
    args.out.mkdir(parents=True, exist_ok=True)
    extra = args.adaptive_args.split()
    profile = Path(extra[extra.index("--device-profile") + 1]) if "--device-profile" in extra[:-1] else None
    head_ms = json.loads(profile.read_text())["device_ms"] if profile is not None else {}
    runs, table = [], {}
    for pol in policies:
        run = run_policy(pol, args.phase, args.fps, args.out / "runs" / pol.replace("/", "_"), extra)
        runs.append(run)
        table[pol] = analyse(run, args.phase, args.fps, payload, head_ms)
        s = run["summary"]
        print(f"\n{pol}: accounted {s['accounted']}, sent {s['frames_sent']}, replies {s['replies']}, "
              f"dropped by sender {s['dropped_by_sender']}, by receiver {s['dropped_by_receiver']}, lost {s['lost']}, "
              f"switches {s.get('switches', 0)}")
        for r in table[pol]:
            print(f"  {r['rate_mbit']:5g} Mbit/s  {r['fps_answered']:5.1f} fps answered  p50 {r['p50_ms']} p99 {r['p99_ms']} ms  "
                  f"(+slow head p50 {r['p50_slow_ms']} p99 {r['p99_slow_ms']})  "
                  f"not sent {r['not_sent']}  unanswered {r['not_answered']}  {r['payload_Bps'] / 1e3:7.1f} kB/s  "
                  f"new point after {r['new_point_after_s']} s  {r['decisions'] or ''}  {r['points']}")
    (args.out / "results.json").write_text(json.dumps(
        {"phase_s": args.phase, "fps": args.fps, "rates_mbit": RATES, "table": table, "slow_head_ms": head_ms,
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
    shown = profile.relative_to(ROOT) if profile is not None and profile.is_relative_to(ROOT) else profile
    lines += ["", f"With the slow device's head time added to every frame ({shown}; an upper bound: "
              "this machine's own head time stays in), and the controller's decisions per phase:", "",
              "| policy | Mbit/s | p50 ms + slow head | p99 ms + slow head | p99 / best fixed p99 (both + slow head) "
              "| decisions |", "|---|---:|---:|---:|---:|---|"]
    fixed_rows = [rows for p, rows in table.items() if p != "adaptive"]
    for pol, rows in table.items():
        for k, r in enumerate(rows):
            best = min((fr[k]["p99_slow_ms"] for fr in fixed_rows if fr[k]["p99_slow_ms"] is not None), default=None)
            ratio = round(r["p99_slow_ms"] / best, 2) if best and r["p99_slow_ms"] is not None else None
            whys = ", ".join(f"{w} {n}" for w, n in r["decisions"].items())
            lines.append(f"| {pol} | {r['rate_mbit']:g} | {r['p50_slow_ms']} | {r['p99_slow_ms']} | {ratio} | {whys} |")
    met = targets(table, runs, args.fps)
    lines += ["", *met, "![latency and chosen point](adaptive.png)", ""]
    print("\n" + "\n".join(met))
    (args.out / "README.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
