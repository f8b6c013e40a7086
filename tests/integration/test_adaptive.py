"""``--split adaptive`` over a real rate-limited link: two namespaces, a veth pair, tbf on the
device side (``bench.netem``), server.py and the receiver in one namespace, sender.py in the
other with a slower device's profile (on this machine device and server share one CPU, so
with its own profile the late split wins at every rate and nothing would switch).

High cap, then a low one, then high again: the controller must move to a smaller stream
under the low cap and back to a larger one after it, every frame accounted, each switch in
the ``--json`` summary and each ``--log`` line naming its frame's split, codec and head.
The way back up is a probe's train kept (``probe_ok``) or a ``better`` switch, never a train
alone (a few frames of a rung, then the point in use again: not a move). No timing
assertions: the phases are long enough for the controller's reaction and its probes
(``sender.adaptive``: a train every ``PROBE_WAIT_S`` plus its judging) with margin.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.netem import SERVER_IP, Pair, unavailable_reason
from splitcore.process.children import PY

WHY = unavailable_reason()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"network namespaces and tc: {WHY}")

FPS = 30.0
PHASES = ((20.0, 6.0), (0.3, 10.0), (20.0, 14.0))  # Mbit/s, seconds
# A device much slower than this machine on the late splits: stage1 then beats the features
# split whenever the link carries it (see sender.adaptive's latency model), by more than this
# shared machine's swings in the receiver's reply time.
SLOW_DEVICE = Path(__file__).resolve().parents[2] / "results" / "adaptive" / "slow-device.json"


def _wait_http(net: Pair, url: str, work: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = net.spawn(net.device, [PY, "-c", f"import urllib.request as u; u.urlopen('{url}/healthz', timeout=2)"],
                          work / "probe.log")
        if probe.wait(10) == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"server.py did not answer at {url}")


def test_moves_to_a_smaller_point_under_a_low_cap_and_back(tmp_path: Path) -> None:
    profile = SLOW_DEVICE
    log = tmp_path / "frames.jsonl"
    frames = int(sum(s for _, s in PHASES) * FPS)
    with Pair(PHASES[0][0]) as net:
        url = f"http://{SERVER_IP}:8080"
        net.spawn(net.server, [PY, "server.py", "--host", SERVER_IP, "--port", "8080"], tmp_path / "server.log")
        _wait_http(net, url, tmp_path)
        net.spawn(net.server, [PY, "-m", "receiver", "--server", url, "--room", "adapt", "--workers", "1"],
                  tmp_path / "receiver.log")
        sender = net.spawn(net.device, [PY, "sender.py", "--server", url, "--room", "adapt", "--json", "--quiet",
                                        "--fps", str(FPS), "--frames", str(frames), "--log", str(log),
                                        "--log-level", "warning", "--split", "adaptive",
                                        "--device-profile", str(profile)], tmp_path / "sender.out")
        deadline = time.monotonic() + 60
        while not (log.exists() and log.stat().st_size > 0):  # streaming: the phases start now
            assert sender.poll() is None, (tmp_path / "sender.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "no frame answered within 60 s"
            time.sleep(0.05)
        t0 = time.monotonic()
        elapsed = 0.0
        for k in range(1, len(PHASES)):
            elapsed += PHASES[k - 1][1]
            time.sleep(max(0.0, t0 + elapsed - time.monotonic()))
            net.set_rate(PHASES[k][0])
        rc = sender.wait(timeout=sum(s for _, s in PHASES) + 60)
    out = (tmp_path / "sender.out").read_text()
    assert rc == 0, out[-3000:]
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert summary["accounted"] is True
    assert summary["split"] == "adaptive" and summary["switches"] == len(summary["switch_log"]) > 0
    trains = [s for s in summary["switch_log"] if s["why"] == "probe"]
    assert all(s["frames"] > 0 for s in trains)
    lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
    assert len(lines) == summary["frames_sent"]
    assert all({"split", "codec", "head"} <= ln.keys() for ln in lines)
    payload = {f"{p.split}/{p.codec}/{p.head}": p.payload_bytes for p in _points()}
    log_sw = summary["switch_log"]
    down = [s for s in log_sw if s["why"] == "congested"]
    assert down, f"no congestion switch under {PHASES[1][0]} Mbit/s: {log_sw}"
    low = down[0]["to"]
    assert payload[low] < payload[down[0]["from"]]
    later = [s for s in log_sw if s["t"] > down[-1]["t"] and s["why"] in ("probe_ok", "better")
             and payload[s["to"]] > payload[low]]
    assert later, f"never back to a larger point than {low} after the cap rose: {log_sw}"
    assert payload[summary["final_point"]] > payload[low], log_sw
    keys = {f"{ln['split']}/{ln['codec']}/{ln['head']}" for ln in lines}
    assert low in keys and summary["final_point"] in keys


def _points() -> list:
    from splitcore.runtime.operating import OperatingPoints
    from tests.harness import ROOT
    return list(OperatingPoints.load(ROOT / "models" / "operating_points.json").points)
