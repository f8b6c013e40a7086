"""Frame sources, pacing and the async iterator, on real files written by OpenCV.

No webcam exists here, so the camera code is fed a video file (OpenCV opens both the same
way) and its error path is driven with a device that does not exist.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from pathlib import Path

import cv2
import numpy as np
import pytest

from sender.camera import CameraSource
from sender.capture import frames, open_source
from sender.pacer import Pacer, pacer_for
from sender.pattern import PatternSource
from sender.source import Captured, CaptureError, FrameSource
from sender.video import VideoFileSource

SIZE = (64, 48)  # width, height
N_FRAMES = 6
FILE_FPS = 25.0
# Distinct BGR colours per frame: decoding must give them back in order and channel order.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
CODEC_TOLERANCE = 40  # lossy codecs blur solid colours a little, never by this much


def write_video(folder: Path, colours: list[tuple[int, int, int]], fps: float) -> Path:
    """Write solid-colour frames with the first container/codec this OpenCV can write."""
    for fourcc, ext in (("mp4v", "mp4"), ("MJPG", "avi")):
        path = folder / f"clip_{len(colours)}_{fps:g}.{ext}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
        if writer.isOpened():
            for colour in colours:
                writer.write(np.full((SIZE[1], SIZE[0], 3), colour, np.uint8))
            writer.release()
            return path
    pytest.fail("this OpenCV cannot write mp4v or MJPG video")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video"), COLOURS, FILE_FPS)


def read_all(source: FrameSource, limit: int = 100) -> list[Captured]:
    """Copy each image: sources may reuse their buffer between reads."""
    out = []
    with source:  # type: ignore[attr-defined]
        while len(out) < limit and (frame := source.read()) is not None:
            out.append(Captured(frame.image.copy(), frame.timestamp, frame.index, frame.media_time))
    return out


def assert_colours(frames_: list[Captured], colours: list[tuple[int, int, int]]) -> None:
    for frame, colour in zip(frames_, colours, strict=True):
        mean = frame.image.reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colour).max() < CODEC_TOLERANCE, (frame.index, mean, colour)


# --- video files -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["auto", "pyav", "opencv"])
def test_video_file_frames_come_back_in_order(clip: Path, backend: str) -> None:
    source = VideoFileSource(clip, backend=backend)
    got = read_all(source)
    assert [f.index for f in got] == list(range(N_FRAMES))
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 for f in got)
    assert_colours(got, COLOURS)
    stamps = [f.timestamp for f in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    media = [f.media_time for f in got]
    assert media[0] == pytest.approx(0.0, abs=1e-6)
    assert media[-1] == pytest.approx((N_FRAMES - 1) / FILE_FPS, abs=1e-3)
    assert source.fps == pytest.approx(FILE_FPS)
    assert isinstance(source, FrameSource) and source.color == "bgr"


def test_video_file_loops_with_growing_index(clip: Path) -> None:
    got = read_all(VideoFileSource(clip, loop=True), limit=2 * N_FRAMES + 2)
    assert [f.index for f in got] == list(range(2 * N_FRAMES + 2))
    assert_colours(got, (COLOURS * 3)[: len(got)])
    assert got[N_FRAMES].media_time == pytest.approx(0.0, abs=1e-6)


def test_video_file_skip_discards_frames(clip: Path) -> None:
    with VideoFileSource(clip) as source:
        assert source.skip(2) == 2
        frame = source.read()
        assert frame is not None and frame.index == 2
        assert_colours([frame], [COLOURS[2]])
        assert source.skip(100) == N_FRAMES - 3
        assert source.read() is None


def test_missing_video_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not found"):
        VideoFileSource(tmp_path / "nope.mp4").open()


@pytest.mark.parametrize("backend", ["auto", "opencv"])
def test_text_file_named_mp4_is_not_a_video(tmp_path: Path, backend: str) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 10)
    with pytest.raises(CaptureError, match="is it a video file"):
        VideoFileSource(fake, backend=backend).open()


def test_read_before_open_is_an_error(clip: Path) -> None:
    with pytest.raises(CaptureError, match="not open"):
        VideoFileSource(clip).read()


# --- camera ------------------------------------------------------------------------------

def _absent_camera_index() -> int:
    index = next(i for i in range(64, 1024) if not Path(f"/dev/video{i}").exists())
    return index


def test_missing_camera_says_what_to_do_instead() -> None:
    index = _absent_camera_index()
    with pytest.raises(CaptureError, match=r"no camera at .*video FILE.*pattern"):
        CameraSource(index).open()
    with pytest.raises(CaptureError, match="no camera"):
        open_source(camera=str(index))


def test_camera_code_reads_a_video_file(clip: Path) -> None:
    """open() proves the device delivers by grabbing one frame, which is not returned."""
    source = CameraSource(str(clip))
    got = read_all(source)
    assert [f.index for f in got] == list(range(N_FRAMES - 1))
    assert_colours(got, COLOURS[1:])
    stamps = [f.timestamp for f in got]
    assert stamps == sorted(stamps)
    assert source.fps == pytest.approx(FILE_FPS) and source.skip(3) == 0


# --- pattern -----------------------------------------------------------------------------

def test_pattern_is_deterministic() -> None:
    a, b = PatternSource(), PatternSource()
    first = a.render(17).copy()
    a.render(18)
    np.testing.assert_array_equal(a.render(17), first)
    np.testing.assert_array_equal(b.render(17), first)
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8


def test_pattern_moves() -> None:
    source = PatternSource(160, 120)
    frame0 = source.read().image.copy()
    frame1 = source.read()
    assert frame1.index == 1
    changed = np.any(frame0 != frame1.image, axis=2).mean()
    assert changed > 0.05  # the whole scene moves, not just the frame counter
    apart = [source.render(i).copy() for i in (0, 30, 60)]
    assert not np.array_equal(apart[0], apart[1]) and not np.array_equal(apart[1], apart[2])


def test_pattern_skip_advances_the_scene() -> None:
    source = PatternSource(64, 48)
    assert source.skip(5) == 5
    frame = source.read()
    assert frame.index == 5
    np.testing.assert_array_equal(frame.image, PatternSource(64, 48).render(5))


def test_open_source_chooses(clip: Path) -> None:
    assert isinstance(open_source(), PatternSource)
    video = open_source(video=clip, loop=True)
    assert isinstance(video, VideoFileSource) and video.loop and video.fps == FILE_FPS
    video.close()
    with pytest.raises(ValueError, match="not both"):
        open_source(camera=0, video=clip)


# --- pacing ------------------------------------------------------------------------------

def test_pacer_deadlines_follow_the_grid_not_now() -> None:
    pacer = Pacer(fps=10.0)  # period 0.1 s
    assert pacer.schedule(100.0) == (0, 0.0, 0)
    slot = pacer.schedule(100.03)  # early: wait for the deadline 100.1
    assert slot.number == 1 and slot.delay == pytest.approx(0.07) and slot.skipped == 0
    slot = pacer.schedule(100.25)  # 0.05 late for 100.2: release at once, no skip
    assert slot == (2, 0.0, 0)
    slot = pacer.schedule(100.28)  # the next deadline is still 100.3, not 100.35
    assert slot.delay == pytest.approx(0.02)
    assert pacer.dropped == 0 and pacer.released == 4


def test_pacer_skips_ahead_and_counts_drops() -> None:
    pacer = Pacer(fps=10.0)
    pacer.schedule(0.0)
    slot = pacer.schedule(0.45)  # deadlines 0.1..0.4 passed: serve 0.4, drop 0.1..0.3
    assert slot.number == 4 and slot.skipped == 3 and slot.delay == 0.0
    assert pacer.dropped == 3
    slot = pacer.schedule(0.46)  # back on the grid
    assert slot.number == 5 and slot.delay == pytest.approx(0.04) and slot.skipped == 0


def test_pacer_does_not_drift_over_many_frames() -> None:
    pacer = Pacer(fps=30.0)
    pacer.schedule(1000.0)
    for _ in range(29_999):
        slot = pacer.schedule(1000.0)
    assert pacer.schedule(2000.0).delay == pytest.approx(0.0, abs=1e-9)
    assert slot.number == 29_999


def test_pacer_rejects_bad_fps() -> None:
    for fps in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Pacer(fps)


def test_pacer_for_caps_at_target(clip: Path) -> None:
    source = open_source(video=clip)
    try:
        assert pacer_for(source, target_fps=30.0).fps == FILE_FPS
        assert pacer_for(source, target_fps=10.0).fps == 10.0
    finally:
        source.close()
    assert pacer_for(VideoFileSource(clip, realtime=False)) is None
    with pytest.raises(ValueError, match="open"):
        pacer_for(VideoFileSource(clip))


async def _collect(source: FrameSource, pacer: Pacer | None, limit: int = 100) -> list[Captured]:
    out: list[Captured] = []
    async with aclosing(frames(source, pacer)) as stream:
        async for frame in stream:
            out.append(Captured(frame.image.copy(), frame.timestamp, frame.index, frame.media_time))
            if len(out) == limit:
                break
    return out


def test_async_frames_paced_from_a_file(clip: Path) -> None:
    source = VideoFileSource(clip)
    pacer = Pacer(fps=200.0)
    start = time.monotonic()
    got = asyncio.run(_collect(source, pacer))
    elapsed = time.monotonic() - start
    # On a loaded machine the pacer may fall a period behind and skip a frame: that is the
    # design (drop stale frames, never queue), so check the books, not the timing.
    indices = [f.index for f in got]
    assert indices == sorted(set(indices)) and indices[0] == 0
    assert len(got) + pacer.dropped == N_FRAMES
    assert_colours(got, [COLOURS[i] for i in indices])
    assert elapsed >= (len(got) - 1) / pacer.fps * 0.95
    gaps = np.diff([f.timestamp for f in got])
    assert (gaps > 0).all()
    assert pacer.released == len(got) + 1  # the last wait finds the end of the file


def test_async_frames_keeps_a_fast_file_in_step(tmp_path: Path) -> None:
    """A 100 fps file paced at 50 fps plays every second frame, in wall-clock time."""
    colours = [(i * 20, 255 - i * 20, 128) for i in range(10)]
    source = VideoFileSource(write_video(tmp_path, colours, 100.0))
    pacer = Pacer(fps=50.0)
    got = asyncio.run(_collect(source, pacer))
    indices = [f.index for f in got]
    # every second frame; a loaded machine may skip more, and then counts it as dropped
    assert indices[0] == 0 and all(b - a >= 2 and b % 2 == 0 for a, b in zip(indices, indices[1:], strict=False))
    assert len(got) + pacer.dropped == 5
    assert_colours(got, [colours[i] for i in indices])


def test_async_frames_unpaced_and_closes_on_early_exit(clip: Path) -> None:
    source = VideoFileSource(clip, realtime=False)
    got = asyncio.run(_collect(source, None, limit=2))
    assert [f.index for f in got] == [0, 1]
    with pytest.raises(CaptureError, match="not open"):
        source.read()  # the iterator closed it when the consumer stopped


def test_async_frames_drops_when_the_consumer_is_slow() -> None:
    async def slow_consumer() -> tuple[list[int], Pacer]:
        pacer = Pacer(fps=100.0)
        seen = []
        async with aclosing(frames(PatternSource(64, 48), pacer)) as stream:
            async for frame in stream:
                seen.append(frame.index)
                if len(seen) == 3:
                    return seen, pacer
                await asyncio.sleep(0.035)  # 3.5 periods of work per frame
        raise AssertionError("pattern ended")

    seen, pacer = asyncio.run(slow_consumer())
    assert pacer.dropped >= 4  # about 2 or 3 per slow frame
    assert seen[0] == 0 and seen[1] - seen[0] >= 3 and seen[2] - seen[1] >= 3


def test_skips_past_the_end_of_a_file_are_not_counted_as_drops(tmp_path: Path) -> None:
    """A consumer 3.5 periods slow asks to skip more frames near the end than the file has
    left: only frames that existed may count as dropped, so the books still balance."""
    colours = [(i * 12, 255 - i * 12, 64) for i in range(20)]
    source = VideoFileSource(write_video(tmp_path, colours, 100.0))

    async def slow_consumer() -> tuple[list[int], Pacer]:
        pacer, seen = Pacer(fps=100.0), []
        async with aclosing(frames(source, pacer)) as stream:
            async for frame in stream:
                seen.append(frame.index)
                await asyncio.sleep(0.035)
        return seen, pacer

    seen, pacer = asyncio.run(slow_consumer())
    assert pacer.dropped >= 4 and seen[0] == 0
    assert len(seen) + pacer.dropped == len(colours), (seen, pacer.dropped)


# --- module structure ----------------------------------------------------------------------

@pytest.mark.parametrize("module", ["sender.source", "sender.camera", "sender.video", "sender.pattern",
                                    "sender.pacer", "sender.capture", "sender.pipeline", "sender.stream"])
def test_each_module_imports_first_and_alone(module: str) -> None:
    """No import cycle: every module can be the first one a program imports."""
    import subprocess
    import sys

    from tests.harness import ROOT
    p = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_the_source_contract_imports_no_source() -> None:
    import ast

    from tests.harness import ROOT
    tree = ast.parse((ROOT / "sender" / "source.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and (m.startswith("sender") or m.startswith(".")) for m in imported), imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], "relative import"


def test_old_names_still_import() -> None:
    from sender import capture
    assert capture.Frame is Captured and capture.VideoFileSource is VideoFileSource
