"""The adaptive controller (sender.adaptive): pure logic, driven by synthetic observations of
a link whose capacity steps down and back up, and the shared vectors of tests/vectors/adaptive.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sender.adaptive import PROBE_TRIAL_S, PROBE_WAIT_MAX_S, TICK_S, Controller, Estimates, Observation, Point

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "adaptive.json"
# A device slow enough that the late split costs more than sending an early one on a fast link.
POINTS = [Point("stage1", "clip4+zlib", "float32", 2916.4), Point("stage2", "clip4+zlib", "int8", 1609.7),
          Point("features", "clip4+zlib", "int8", 500.9)]
DEVICE = {"stage1/float32": 3.0, "stage2/int8": 10.0, "features/int8": 18.0}
ENCODE = {"stage1/clip4+zlib": 0.5, "stage2/clip4+zlib": 0.3, "features/clip4+zlib": 0.2}
SERVER = {"stage1": 2.5, "stage2": 0.6, "features": 0.05}


def link(ctl: Controller, cap_bps: float, t: float, seconds: float, queue: list[float]) -> tuple[float, list[str]]:
    """Feed ``seconds`` of a link of ``cap_bps``: what we send beyond it queues."""
    seen = []
    for _ in range(int(seconds / TICK_S)):
        t += TICK_S
        sent = ctl.current.bps(ctl.fps) * TICK_S / 8
        queue[0] += sent
        out = min(queue[0], cap_bps * TICK_S / 8)
        queue[0] -= out
        sw = ctl.observe(Observation(t, int(sent), int(out), int(queue[0] + sent / 3), server_ms=SERVER,
                                     buffered_bytes=int(queue[0])))
        if sw is not None:
            seen.append(f"{sw.why}:{sw.new.key}")
    return t, seen


def test_moves_down_under_a_low_cap_and_back_up_under_a_high_one() -> None:
    ctl = Controller(POINTS, 30.0, Estimates(DEVICE, ENCODE, SERVER))
    q = [0.0]
    t, _ = link(ctl, 20e6, 0.0, 5, q)
    assert ctl.current.split == "stage1"  # fastest on a fast link with this device
    t, seen = link(ctl, 0.5e6, t, 5, q)
    assert ctl.current.split in ("stage2", "features") and any(s.startswith("congested") for s in seen)
    low = ctl.current
    t, seen = link(ctl, 20e6, t, 20, q)
    assert ctl.current.split == "stage1" and ctl.current.payload_bytes > low.payload_bytes
    assert any(s.startswith("probe") for s in seen)


def test_no_flapping_on_a_steady_link() -> None:
    ctl = Controller(POINTS, 30.0, Estimates(DEVICE, ENCODE, SERVER))
    q = [0.0]
    t, _ = link(ctl, 20e6, 0.0, 3, q)
    n = ctl.switches
    link(ctl, 20e6, t, 30, q)
    assert ctl.switches == n


def test_a_slow_receiver_is_not_a_congested_link() -> None:
    """Replies late (a CPU-starved receiver): the bytes wait for their reply, not in our send
    queue, which drains as fast as we fill it. That is server time, not link capacity: no
    congestion verdict and no switch down (the case that failed on a shared 2-core machine)."""
    ctl = Controller(POINTS, 30.0, Estimates(DEVICE, ENCODE, SERVER))
    t, _ = link(ctl, 20e6, 0.0, 3, [0.0])
    start, n = ctl.current, ctl.switches
    assert start.split == "stage1"
    for i in range(100):  # 10 s: replies come in bursts at a quarter of the send rate, 5 frames outstanding
        t += TICK_S
        sent = int(start.bps(30.0) * TICK_S / 8)
        ctl.observe(Observation(t, sent, sent // 4 if i % 4 else sent * 7 // 4, int(5 * start.payload_bytes),
                                rtt_ms=3.0, server_ms=SERVER, buffered_bytes=0 if i % 3 else sent // 3))
        assert not ctl.est.congested
    assert ctl.current == start and ctl.switches == n


def test_a_failed_probe_is_short_and_backs_off() -> None:
    """On a steady low link every probe ends within its trial and the waits between them grow:
    a bounded number of switches, never a frame rate of them."""
    ctl = Controller(POINTS, 30.0, Estimates(DEVICE, ENCODE, SERVER))
    q = [0.0]
    t, _ = link(ctl, 0.5e6, 0.0, 5, q)
    t0 = t
    trials: list[tuple[float, str]] = []
    for _ in range(int(30 / TICK_S)):
        t, seen = link(ctl, 0.5e6, t, TICK_S, q)
        trials += [(t, s) for s in seen]
    probes = [tt for tt, s in trials if s.startswith("probe:")]
    fails = [tt for tt, s in trials if s.startswith("probe_failed")]
    assert fails, "a probe beyond a 0.5 Mbit/s link must fail"
    for f in fails:  # each failure ends the trial that started before it, within the trial
        start = max(p for p in probes if p <= f)
        assert f - start <= PROBE_TRIAL_S + TICK_S + 1e-9
    assert len(probes) <= 30 / PROBE_WAIT_MAX_S * 2 + 2
    assert ctl.current.bps(30.0) * 1.0 <= 0.5e6 and t - t0 >= 30 - 1e-6


def test_vectors() -> None:
    """Every case: observations in, the decisions (tick index, why, to) out; the JS twin reads the same file."""
    data = json.loads(VECTORS.read_text())
    for case in data["cases"]:
        pts = [Point(**p) for p in case["points"]]
        ctl = Controller(pts, case["fps"], Estimates(case["device_ms"], case["encode_ms"], case["server_ms"]))
        got = []
        for i, o in enumerate(case["observations"]):
            sw = ctl.observe(Observation(**o))
            if sw is not None:
                got.append({"tick": i, "why": sw.why, "to": sw.new.key})
        assert got == case["decisions"], case["name"]


def make_vectors() -> dict:
    """Regenerate tests/vectors/adaptive.json (python -m tests.unit.test_adaptive)."""
    cases = []
    for name, caps in (("step_down_up", [(20e6, 5), (0.5e6, 5), (20e6, 15)]), ("low_steady", [(0.5e6, 20)]),
                       ("steady", [(20e6, 10)])):
        obs: list[dict] = []
        ctl = Controller(POINTS, 30.0, Estimates(DEVICE, ENCODE, SERVER))
        q, t, decisions = 0.0, 0.0, []
        for cap, seconds in caps:
            for _ in range(int(seconds / TICK_S)):
                t = round(t + TICK_S, 6)
                sent = ctl.current.bps(30.0) * TICK_S / 8
                q += sent
                out = min(q, cap * TICK_S / 8)
                q -= out
                o: dict[str, Any] = {"t": t, "sent_bytes": int(sent), "delivered_bytes": int(out),
                                     "queued_bytes": int(q + sent / 3), "server_ms": SERVER, "buffered_bytes": int(q)}
                sw = ctl.observe(Observation(**o))
                if sw is not None:
                    decisions.append({"tick": len(obs), "why": sw.why, "to": sw.new.key})
                obs.append(o)
        cases.append({"name": name, "fps": 30.0, "points": [p.__dict__ for p in POINTS], "device_ms": DEVICE,
                      "encode_ms": ENCODE, "server_ms": SERVER, "observations": obs, "decisions": decisions})
    return {"about": "sender/adaptive.py: observations (one per 0.1 s tick) -> decisions; docs/adaptive.md",
            "cases": cases}


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(make_vectors(), indent=0) + "\n")
