"""The browser sender page with ``split=adaptive`` against a real server and Python receiver,
in a real Chromium, over real WebRTC (no bandwidth cap: the Python suite covers caps).

The page loads models/operating_points.json, loads and profiles every candidate head (float32
and INT8 in onnxruntime-web), keeps the Pareto set and streams with the controller choosing
split, codec and head per frame. What must hold: every frame is accounted for (replied,
dropped by the receiver, refused, dropped by the sender, or in flight), each settled frame's
record names a candidate point, the receiver answers, and the stats the page publishes carry
the point in use (``split``, ``codec``, ``head``, ``operating_point``), the switch count and
the point's leakage from models/operating_points.json (or null), as the Python sender's do.
A short fixed-split run checks the same stats fields without the controller. A screenshot of
the page goes to test-artifacts/.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import cv2
import numpy as np
import pytest

from splitcore.process.children import ROOT, process, receiver_args, server
from tests.browser.chromium import ARTIFACTS, chromium, needs_browser, write_y4m
from tests.harness import Dashboard, noise_images

pytestmark = needs_browser  # skip at once, with the reason, without Chromium or node_modules

POINTS_FILE = ROOT / "models" / "operating_points.json"
FRAMES = 60          # frames the adaptive page sends
FIXED_FRAMES = 15
PAGE_TIMEOUT = 240_000  # loading and profiling eight heads on a shared CPU comes first
POINT_KEYS = {"split", "codec", "head", "operating_point", "leakage"}

needs_points = pytest.mark.skipif(not POINTS_FILE.is_file(),
                                  reason=f"no {POINTS_FILE}: run the study (python -m bench.study) and "
                                         "python -m splitcore.offline.operating")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sender-adaptive")


@pytest.fixture(scope="module")
def url(workdir: Path):
    with server(workdir) as u:
        yield u


@pytest.fixture(scope="module")
def browser(workdir: Path):
    big = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_NEAREST) for im in noise_images(20)])
    y4m = write_y4m(big, workdir / "camera.y4m")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(fake_video=y4m) as b:
        yield b


def leakage_of(split: str, codec: str, head: str) -> dict | None:
    """The point's leakage as models/operating_points.json has it (None: not measured)."""
    raw = json.loads(POINTS_FILE.read_text())
    found = [p for p in raw["points"] if (p["split"], p["codec"], p["head"]) == (split, codec, head)]
    return found[0].get("leakage") if found else None


def run_page(browser, url: str, errors: list[str], **params) -> dict:
    """Open the sender page with ``params``, wait until its run is done; its snapshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    query = urlencode({**params, "debug": 1, "autostart": 1})
    try:
        page.goto(f"{url}/sender?{query}")
        page.wait_for_function("() => window.splitrtc && ['done', 'error'].includes(window.splitrtc.state.phase)",
                               timeout=PAGE_TIMEOUT)
        snap = page.evaluate("window.splitrtc.snapshot()")
        shown = {k: page.inner_text(f"#m-{k}") for k in ("point", "switches")}
        page.screenshot(path=str(ARTIFACTS / f"sender-{params['split']}-python-receiver.png"), full_page=True)
    finally:
        page.close()
    assert snap["phase"] == "done", (snap["phase"], snap["error"], errors)
    snap["shown"] = shown
    return snap


def check_books(s: dict, frames: int) -> None:
    """Every frame accounted for, all answered or dropped by the receiver, none left in flight."""
    assert s["accounted"] and s["frames_sent"] == frames, s
    assert s["in_flight_at_exit"] == 0 and not s["errors"] and s["unmatched_messages"] == 0 and s["lost"] == 0, s
    assert s["replies"] + sum(s["dropped_by_receiver"].values()) == frames, s
    assert s["frames_sent"] + sum(s["dropped_by_sender"].values()) == s["frames_captured"], s
    assert s["replies"] >= 1, s  # how many are answered, not dropped stale, is the machine's figure


def sender_stats(dash: Dashboard, frames: int, name: str) -> dict:
    """The app stats the page published last (after its final publish at the end of the run)."""
    assert dash.wait_for(lambda: any(m["role"] == "sender" and m.get("name") == name
                                     and m["app"].get("frames") == frames for m in dash.latest.values())), dash.latest
    (stats,) = [m for m in dash.latest.values() if m["role"] == "sender" and m.get("name") == name]
    return stats["app"]


def stream(browser, url: str, workdir: Path, errors: list[str], room: str, frames: int,
           **params: Any) -> tuple[dict, dict]:
    """The sender page named ``room`` streaming ``frames`` to a Python receiver in room
    ``room`` with the page's ``params``: what the page shows and the stats it published."""
    dash = Dashboard(url, room)
    try:
        with process(receiver_args(url, room, "--name", "py-recv"), workdir / f"receiver-{room}.log"):
            snap = run_page(browser, url, errors, room=room, receiver="py-recv", frames=frames, name=room, **params)
            return snap, sender_stats(dash, frames, room)
    finally:
        dash.close()


@needs_points
def test_browser_sender_adaptive_to_python_receiver(browser, url: str, workdir: Path) -> None:
    errors: list[str] = []
    snap, app = stream(browser, url, workdir, errors, "br-adaptive", FRAMES, split="adaptive", maxDrop=1.0)
    s = snap["summary"]
    check_books(s, FRAMES)

    # the controller's run: candidates from the file, profiled here, the final point one of them
    raw = json.loads(POINTS_FILE.read_text())
    floor = raw["full_top1"] - 1.0 / 100
    allowed = {f"{p['split']}/{p['codec']}/{p['head']}" for p in raw["points"]
               if p["top1"] >= floor - 1e-12 and not p["codec"].endswith("+zstd")}
    assert s["split"] == "adaptive" and s["codec"] is None and s["head"] is None
    cands = set(s["candidates"])
    assert cands and cands <= allowed, cands - allowed
    assert s["final_point"] in cands and s["switches"] == len(s["switch_log"])
    prof = s["profile"]
    assert {f"{c.split('/')[0]}/{c.split('/')[2]}" for c in cands} <= prof["device_ms"].keys(), prof
    assert all(v > 0 for v in prof["device_ms"].values()), prof
    for sw in s["switch_log"]:
        assert sw["from"] in cands and sw["to"] in cands and sw["why"] in ("congested", "better", "probe", "probe_failed")

    # every settled frame's record names the point that made it, one of the candidates
    records = snap["records"]
    assert len(records) == FRAMES
    assert all(f"{r['split']}/{r['codec']}/{r['head']}" in cands for r in records), records[:3]
    replies = [r for r in records if "label" in r]
    assert len(replies) == s["replies"] and all(0 <= r["label"] < 10 for r in replies)

    # the published stats: the point in use, its switch count and leakage, the estimates
    assert POINT_KEYS | {"switches", "adaptive", "frames"} <= app.keys(), app
    assert app["operating_point"] == f"{app['split']}/{app['codec']}/{app['head']}" == s["final_point"]
    assert app["switches"] == s["switches"] and app["head"] in ("float32", "int8")
    assert app["leakage"] == leakage_of(app["split"], app["codec"], app["head"])
    assert {"capacity_kbps", "queue_ms", "congested"} <= app["adaptive"].keys()
    assert snap["shown"]["point"] == s["final_point"] and snap["shown"]["switches"] == str(s["switches"])
    assert not [e for e in errors if e.startswith("uncaught:")], errors


def test_browser_sender_fixed_stats_name_the_point(browser, url: str, workdir: Path) -> None:
    """A fixed split publishes the same point fields (float32 head, the page's codec), no switches."""
    errors: list[str] = []
    snap, app = stream(browser, url, workdir, errors, "br-fixed", FIXED_FRAMES, split="stage2", codec="clip4+zlib")
    check_books(snap["summary"], FIXED_FRAMES)
    assert POINT_KEYS <= app.keys() and "switches" not in app, app
    assert (app["split"], app["codec"], app["head"]) == ("stage2", "clip4+zlib", "float32")
    assert app["operating_point"] == "stage2/clip4+zlib/float32"
    expected = leakage_of("stage2", "clip4+zlib", "float32") if POINTS_FILE.is_file() else None
    assert app["leakage"] == expected
    assert snap["shown"]["point"] == "stage2/clip4+zlib/float32" and snap["shown"]["switches"] == "–"


def test_browser_sender_streams_the_defended_split(browser, url: str, workdir: Path) -> None:
    """The defended split (python -m training.defend) streams from the browser like the others:
    its head in onnxruntime-web, a calibrated quantizing codec, the Python receiver's tail."""
    errors: list[str] = []
    snap, app = stream(browser, url, workdir, errors, "br-private", FIXED_FRAMES, split="stage1-private",
                       codec="int8-channel+zlib")
    check_books(snap["summary"], FIXED_FRAMES)
    assert app["operating_point"] == "stage1-private/int8-channel+zlib/float32", app
    assert app["leakage"] == leakage_of("stage1-private", "int8-channel+zlib", "float32")
    assert not [e for e in errors if e.startswith("uncaught:")], errors
