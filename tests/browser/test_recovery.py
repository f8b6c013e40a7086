"""The browser pages through a signaling server restart, in a real Chromium over real WebRTC.

Signaling is only for meeting: a data channel, once open, does not need the server. The
server process is killed (SIGKILL, no goodbye) while the Chromium sender page streams to a
Python receiver, and started again on the same port: frames keep flowing during the outage,
the sender page, the Python receiver and a browser receiver page all rejoin the room, and a
Python sender that joins after the restart finds the browser receiver page and is served.

Also here: the pages' shared <head> (static/js/ui/head.js) and its load-failure message.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitcore.process.children import PY, free_port, process, receiver_args, run_sender, wait_http
from tests.browser.chromium import ARTIFACTS, chromium, needs_browser, write_y4m

pytestmark = needs_browser

PAGE_TIMEOUT = 90_000   # ms: page start-up (model loading) on a shared, noisy machine
DEADLINE = 60_000       # ms: "it happens at all"
ROOM = "outage"
JS = "window.splitrtc.state"


@contextmanager
def server_on(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with process([PY, "server.py", "--port", str(port)], log) as p:
        wait_http(f"http://127.0.0.1:{port}/healthz", p)
        yield p


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # a changing picture for the fake camera (the labels are not checked here:
    # test_pairs.py checks them against the full model)
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, size=(30, 64, 64, 3), dtype=np.uint8)
    y4m = write_y4m(frames, tmp_path_factory.mktemp("recovery") / "camera.y4m")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(fake_video=y4m) as b:
        yield b


def open_page(browser: Any, url: str, path: str, **params: object) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    query = "&".join(f"{k}={v}" for k, v in {**params, "debug": 1, "autostart": 1}.items())
    page.goto(f"{url}/{path}?{query}")
    return page


def wait_until(page, expr: str, timeout: float = DEADLINE) -> None:
    page.wait_for_function(f"() => window.splitrtc && window.splitrtc.state.phase !== 'error' && ({expr})",
                           timeout=timeout)


def wait_for_line(log: Path, text: str, timeout: float = DEADLINE / 1000) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in {log}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_server_restart_keeps_the_stream_and_everyone_rejoins(browser, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rlog = tmp_path / "receiver.log"
    with server_on(port, tmp_path / "server-1.log") as first, \
            process(receiver_args(url, ROOM, "--name", "py-recv"), rlog):
        recv = open_page(browser, url, "receiver", room=ROOM, name="br-recv")
        send = open_page(browser, url, "sender", room=ROOM, name="br-send", receiver="py-recv", split="stage2",
                         reconnectTimeout=120)
        try:
            wait_until(recv, f"{JS}.phase === 'serving'", PAGE_TIMEOUT)
            wait_until(send, f"{JS}.ledger && {JS}.ledger.replied >= 15", PAGE_TIMEOUT)

            first.kill()
            first.wait(10)
            killed = time.monotonic()
            # the data channel needs no server: replies keep coming while it is down
            before = send.evaluate(f"{JS}.ledger.replied")
            wait_until(send, f"{JS}.ledger.replied >= {before + 30}")
            during = send.evaluate("window.splitrtc.snapshot()")
            down_replies = during["ledger"]["replies"] - before
            assert during["signaling"] != "joined", during["signaling"]
            assert during["outages"] == [], during["outages"]

            with server_on(port, tmp_path / "server-2.log"):
                restarted = time.monotonic()
                # everyone is back in the room under the same name
                wait_until(send, f"{JS}.signaling.joins >= 2 && {JS}.signaling.state === 'joined'")
                sender_back = time.monotonic() - restarted
                wait_until(recv, f"{JS}.signaling.joins >= 2 && {JS}.signaling.state === 'joined'")
                wait_for_line(rlog, f"back in room {ROOM}")
                all_back = time.monotonic() - restarted
                after = send.evaluate(f"{JS}.ledger.replied")
                wait_until(send, f"{JS}.ledger.replied >= {after + 15}")

                # a sender that joins after the restart finds the browser receiver page
                late, _ = run_sender(url, ROOM, "--frames", "20", "--split", "stage2", "--receiver", "br-recv",
                                     "--name", "py-late", "--quiet")
                recv.wait_for_timeout(300)  # the last reply's bookkeeping on the page
                rsnap = recv.evaluate("window.splitrtc.snapshot()")

                send.evaluate(f"{JS}.stopping = true")
                wait_until(send, f"{JS}.phase === 'done'")
                snap = send.evaluate("window.splitrtc.snapshot()")
        finally:
            send.screenshot(path=str(ARTIFACTS / "sender-server-restart.png"), full_page=True)
            recv.screenshot(path=str(ARTIFACTS / "receiver-server-restart.png"), full_page=True)
            send.close()
            recv.close()

    print(f"\nserver restart: {down_replies} replies in the {restarted - killed:.1f} s without a server; "
          f"sender page rejoined {sender_back:.1f} s after the restart, everyone {all_back:.1f} s; "
          f"late Python sender {late['replies']}/{late['frames_sent']} replies from the receiver page")

    # the browser sender: one connection all along, every frame accounted for
    s = snap["summary"]
    assert s["accounted"] and not s["outages"] and s["lost"] == 0, s
    assert not s["errors"] and s["unmatched_messages"] == 0, s
    assert s["frames_sent"] == (s["replies"] + sum(s["dropped_by_receiver"].values()) + s["in_flight_at_exit"])
    assert s["frames_captured"] == s["frames_sent"] + sum(s["dropped_by_sender"].values())
    assert s["replies"] >= before + 30 + 15, (before, s["replies"])

    # the late Python sender, served by the browser receiver page
    assert late["accounted"] and late["frames_sent"] == 20 and late["in_flight_at_exit"] == 0, late
    assert not late["errors"] and late["replies"] >= 10, late
    (session,) = [x for x in rsnap["sessions"].values() if x["name"] == "py-late"]
    c = session["counters"]
    assert c["replied"] == late["replies"] and c["malformed"] == 0, c


def test_page_head_is_shared_and_reports_scripts_that_cannot_load(browser, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with server_on(port, tmp_path / "server.log"):
        for path in ("sender", "receiver"):
            page = browser.new_page()
            try:
                page.goto(f"{url}/{path}")
                page.wait_for_function("() => document.getElementById('status').textContent !== 'Loading…'",
                                       timeout=PAGE_TIMEOUT)
                head = page.evaluate("""() => ({
                    sheets: [...document.styleSheets].map((s) => new URL(s.href).pathname),
                    viewport: document.querySelector('meta[name=viewport]')?.content,
                    status: document.getElementById('status').dataset.kind })""")
                assert head["sheets"] == ["/static/css/app.css", "/static/css/pages.css"], head
                assert head["viewport"] == "width=device-width, initial-scale=1", head
                assert head["status"] != "error", (path, head)
            finally:
                page.close()

            # node_modules missing on the server: the page says so instead of "Loading…" forever
            page = browser.new_page()
            try:
                page.route("**/vendor/**", lambda route: route.abort())
                page.goto(f"{url}/{path}")
                page.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'",
                                       timeout=DEADLINE)
                text = page.evaluate("document.getElementById('status').textContent")
                assert "Could not load the page scripts" in text, text
            finally:
                page.close()
