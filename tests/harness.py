"""Test-only helpers on top of ``splitcore.process.children``: a lossless video writer and a dashboard
client that records what every peer publishes."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from splitcore.process.children import (  # noqa: F401
    PY,
    ROOT,
    ChildError,
    free_port,
    process,
    receiver_args,
    run_sender,
    sender_args,
    server,
)


def write_lossless_video(images_rgb: np.ndarray, path: Path, fps: float = 30.0) -> Path:
    """FFV1 in Matroska: lossless, so the frames the sender decodes are these pixels."""
    h, w = images_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write FFV1 video here")
    for img in images_rgb:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class Dashboard:
    """A dashboard client in a background thread: records the latest stats of every peer."""

    def __init__(self, url: str, room: str) -> None:
        import asyncio
        import threading

        import socketio

        self.latest: dict[str, dict] = {}
        self._loop = asyncio.new_event_loop()
        self._sio = socketio.AsyncClient(reconnection=False)
        self._sio.on("stats", self._on_stats)
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        join = {"room": room, "role": "dashboard", "name": "test-dashboard"}

        async def start() -> dict:
            await self._sio.connect(url, transports=["websocket"])
            return await self._sio.call("join", join)
        ack = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        assert ack.get("ok"), ack

    async def _on_stats(self, msg: dict) -> None:
        self.latest[msg["from"]] = msg

    def entries(self, role: str, kind: str) -> list[dict]:
        return [e for m in list(self.latest.values()) if m.get("role") == role
                for e in m.get("report", []) if e.get("type") == kind]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        import asyncio
        asyncio.run_coroutine_threadsafe(self._sio.disconnect(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def noise_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded 32x32 RGB images of blurred noise: image-like statistics, no data set needed."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(im, (5, 5), 1.5) for im in out])
