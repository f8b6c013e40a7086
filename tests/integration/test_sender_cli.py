"""The sender refuses bad set-ups with one clear line and exit code 2, before connecting."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitcore.process.children import wait_http
from tests.harness import ROOT, free_port, process


def sender(*args: str) -> subprocess.CompletedProcess:
    # port 9 (discard): nothing listens; every case must fail before it matters
    return subprocess.run([sys.executable, "sender.py", "--server", "http://127.0.0.1:9", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def assert_refused(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "Unclosed" not in p.stderr
    assert p.stderr.startswith("sender: ")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr  # one line, nothing else
    for w in words:
        assert w in p.stderr, p.stderr


def test_unknown_split() -> None:
    assert_refused(sender("--split", "nosuch"), "unknown split 'nosuch'", "stage1")


@pytest.mark.parametrize("camera,where", [("/dev/video99", "/dev/video99"), ("63", "/dev/video63")])
def test_missing_camera(camera: str, where: str) -> None:
    """Refused before OpenCV probes it (which printed its own warnings and took seconds)."""
    assert_refused(sender("--camera", camera), where, "does not exist")


@pytest.mark.parametrize("args,words", [
    (("--fps", "0"), ("--fps", "> 0")), (("--fps", "nan"), ("--fps",)), (("--frames", "-5"), ("--frames", ">= 0")),
    (("--frames", "2.5"), ("--frames",)), (("--reconnect-timeout", "0"), ("--reconnect-timeout",)),
    (("--threads", "0"), ("--threads",)), (("--nosuch",), ("unrecognized arguments",))])
def test_bad_options_are_refused_at_parse_time(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_refused(sender(*args), *words)


def test_signaling_timeout_during_a_busy_join(tmp_path: Path) -> None:
    """A server that takes the connection but never answers ``join``: one line, not a traceback."""
    port = free_port()
    mute = tmp_path / "mute.py"
    mute.write_text(MUTE_SERVER)
    with process([sys.executable, str(mute), str(port)], tmp_path / "mute.log") as p:
        wait_http(f"http://127.0.0.1:{port}/healthz", p)
        got = subprocess.run([sys.executable, "sender.py", "--server", f"http://127.0.0.1:{port}", "--frames", "1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_refused(got, "did not answer")


MUTE_SERVER = """
import asyncio, sys
import socketio
from aiohttp import web
sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)
app.router.add_get("/healthz", lambda request: web.Response(text="ok"))

@sio.on("join")
async def join(sid, data):
    await asyncio.sleep(3600)  # busy: never acknowledges

web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@pytest.mark.parametrize("name,content", [("missing.mp4", None), ("text.mp4", b"not a video\n")])
def test_unreadable_video(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert_refused(sender("--video", str(path)), str(path))


def test_model_file_that_does_not_match_the_manifest(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    manifest = json.loads((models / "manifest.json").read_text())
    head = models / manifest["splits"][1]["head"]["file"]
    head.write_bytes(head.read_bytes()[:-1] + b"\0")
    assert_refused(sender("--manifest", str(models / "manifest.json"), "--split", manifest["splits"][1]["id"]),
                   str(head), "does not match the manifest")


def test_unreachable_server() -> None:
    assert_refused(sender("--frames", "1"), "cannot reach the signaling server")


def test_help_explains_every_option() -> None:
    p = subprocess.run([sys.executable, "sender.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0
    for opt in ("--camera", "--video", "--split", "--frames", "--json", "--log", "--verify"):
        assert opt in p.stdout


def test_auto_split_refuses_an_explicit_codec() -> None:
    assert_refused(sender("--split", "auto", "--codec", "float16"), "--split auto chooses the codec")


def test_unknown_codec() -> None:
    assert_refused(sender("--codec", "int3"), "unknown codec 'int3'")


def test_a_leakage_limit_no_point_meets_is_one_line() -> None:
    """--max-ssim below every measured point's leakage: refused before the camera opens."""
    assert_refused(sender("--split", "auto", "--max-ssim", "0"), "with attack SSIM <= 0.0")
