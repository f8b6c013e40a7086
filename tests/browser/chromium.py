"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright.

Never ``playwright install``: it downloads a browser, which this network refuses. The flags
are the ones that work as root in a container (see ../shared/NOTES.md); a fake camera can be
fed a chosen .y4m file.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
# what the pages load from node_modules (signaling/static.py serves them under /vendor/)
VENDOR_FILES = ("socket.io-client/dist/socket.io.esm.min.js", "onnxruntime-web/dist/ort.wasm.min.mjs",
                "uplot/dist/uPlot.esm.js")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None. Checked before anything starts, so a
    machine without Chromium, Playwright or node_modules skips at once with the reason
    instead of failing after a long wait for a page that cannot load."""
    if not Path(CHROMIUM).exists():
        return f"Chromium is missing ({CHROMIUM}): `make setup-dev` installs Debian's chromium package"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing: pip install -r requirements-dev.txt"
    absent = [f for f in VENDOR_FILES if not (ROOT / "node_modules" / f).is_file()]
    if absent:
        return f"node_modules lacks {', '.join(absent)}: run `npm ci` in {ROOT}"
    return None


MISSING = missing()
# every browser test module applies this: `pytestmark = needs_browser`
needs_browser = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@contextmanager
def chromium(fake_video: Path | None = None) -> Iterator[object]:
    """A Playwright Browser; with ``fake_video`` every getUserMedia camera plays that file."""
    if MISSING is not None:
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright
    flags = list(FLAGS)
    if fake_video is not None:
        flags += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={fake_video}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            yield browser
        finally:
            browser.close()


def write_y4m(frames_rgb, path: Path, fps: int = 30) -> Path:
    """YUV4MPEG2 (4:2:0, the layout Chromium's fake camera reads) of RGB uint8 frames
    (N, H, W, 3) with even H and W; the fake camera plays it in a loop."""
    import cv2
    n, h, w, _ = frames_rgb.shape
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames_rgb:
            f.write(b"FRAME\n" + cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
