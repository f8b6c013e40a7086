"""The browser receiver page under the bounds of ``python -m receiver`` (static/js/receiver/
limits.js), against senders made by hand (``RawPeer``: real aiortc connections and a real
signaling client) in a real Chromium.

- a sender that leaves signaling keeps its session while its channel answers pings;
- an offer whose data channel never opens is torn down after the offer timeout;
- a sender flooding malformed messages is disconnected once, its console lines stay few, and
  its next offer is refused (banned);
- the cap on sessions refuses an offer beyond it.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from splitcore.rtc.peer import new_peer_connection
from tests.browser.chromium import ARTIFACTS, chromium, needs_browser
from tests.harness import server
from tests.integration.test_receiver_limits import RawPeer

pytestmark = needs_browser

PAGE_TIMEOUT = 90_000  # ms: the page loads its tails first
DEADLINE = 30.0        # s: "it happens at all"
ROOM = "limits"


class Loop:
    """An asyncio loop in a thread, for the aiortc peers, beside Playwright's sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def sessions(page) -> dict[str, dict]:
    return page.evaluate("window.splitrtc.snapshot().sessions")


def session_of(page, sender_id: str) -> dict | None:
    found = [s for s in sessions(page).values() if s["sender"] == sender_id]
    return found[-1] if found else None


def wait_for(page, what: str, predicate, timeout: float = DEADLINE) -> Any:
    """Poll ``predicate``; the page's waits let Playwright deliver its console events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        page.wait_for_timeout(200)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with server(tmp_path_factory.mktemp("page-limits")) as u:
        yield u


def test_receiver_page_limits(url: str) -> None:
    console: list[str] = []
    loop = Loop()
    peers: list[RawPeer] = []
    try:
        with chromium() as b:
            browser: Any = b
            page = browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(f"{url}/receiver?room={ROOM}&name=br-recv&debug=1&autostart=1&max_sessions=2&offer_timeout=3")
            page.wait_for_function("window.splitrtc && window.splitrtc.state.phase === 'serving'", timeout=PAGE_TIMEOUT)
            try:
                # 1. leaving signaling does not end a session whose channel is alive
                quiet = loop.run(RawPeer(url, ROOM, "quiet").open())
                peers.append(quiet)
                quiet_id = quiet.sig.id
                wait_for(page, "the quiet session", lambda: session_of(page, quiet_id))
                loop.run(quiet.sig.close())
                wait_for(page, "peer-left at the page", lambda: any("left signaling" in c for c in console))
                before = session_of(page, quiet_id)
                assert before is not None and not before["closed"], before
                pings = before["counters"]["pings"]
                page.wait_for_timeout(4000)  # twice the silence rule
                s = session_of(page, quiet_id)
                assert s is not None and not s["closed"], s
                assert s["counters"]["pings"] > pings, s  # its pongs still arrive

                # 2. an offer whose channel never opens is torn down after offer_timeout (3 s)
                stalled = RawPeer(url, ROOM, "stalled")
                peers.append(stalled)
                loop.run(stalled.offer(apply_answer=False))
                s = wait_for(page, "the stalled offer torn down",
                             lambda: (x := session_of(page, stalled.sig.id)) and x["closed"] and x)
                assert "no data channel within 3 s of the offer" in s["ended"], s

                # 3. a flood of malformed messages: disconnected once, few console lines, banned
                flooder = loop.run(RawPeer(url, ROOM, "flooder").open())
                peers.append(flooder)

                async def flood() -> int:
                    closed = asyncio.Event()
                    flooder.channel.on("close", closed.set)
                    sent, started = 0, time.monotonic()
                    while not closed.is_set() and flooder.channel.readyState == "open" \
                            and time.monotonic() - started < DEADLINE:
                        if flooder.channel.bufferedAmount < 64 * 1024:
                            for _ in range(50):
                                flooder.channel.send(b"\x00" * 7)
                            sent += 50
                        await asyncio.sleep(0.001)
                    return sent
                sent = loop.run(flood())
                s = wait_for(page, "the flooder's session closed",
                             lambda: (x := session_of(page, flooder.sig.id)) and x["closed"] and x)
                assert "malformed messages faster than 20/s after a burst of 200" in s["ended"], s
                assert 200 < s["counters"]["malformed"] <= sent, (s, sent)
                malformed_lines = [c for c in console if "malformed message" in c]
                assert 1 <= len(malformed_lines) <= 6, malformed_lines
                closing = [c for c in console if f"peer {flooder.sig.id}: closing" in c]
                assert len(closing) == 1, closing

                async def offer_again() -> None:  # the same sender id, a fresh connection
                    pc = new_peer_connection()
                    pc.createDataChannel("latent")
                    await pc.setLocalDescription(await pc.createOffer())
                    receiver = await flooder.sig.wait_for_peer("receiver", timeout=10)
                    await flooder.sig.signal(receiver["id"], "offer", sdp=pc.localDescription.sdp)
                    await asyncio.sleep(1)
                    await pc.close()
                loop.run(offer_again())
                wait_for(page, "the banned sender's offer refused",
                         lambda: any("offer refused" in c and "disconnected for abuse" in c for c in console))

                # 4. the cap: quiet holds one session, a second fits, a third is refused
                second = loop.run(RawPeer(url, ROOM, "second").open())
                peers.append(second)
                third = RawPeer(url, ROOM, "third")
                peers.append(third)
                loop.run(third.offer())
                wait_for(page, "the third offer refused",
                         lambda: any("offer refused" in c and "already serving 2 sessions (max 2)" in c for c in console))
                assert session_of(page, third.sig.id) is None
                open_now = [x for x in sessions(page).values() if not x["closed"]]
                assert sorted(x["sender"] for x in open_now) == sorted([quiet_id, second.sig.id]), open_now
            finally:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "receiver-page-limits.png"), full_page=True)
                page.close()
    finally:
        for p in peers:
            try:
                loop.run(p.close(), timeout=10)
            except Exception:  # already closed, or its server gone: nothing left to free
                pass
        loop.close()
    print(f"\nreceiver page: flooder disconnected after {s['counters']['malformed']} malformed messages; "
          f"{len(malformed_lines)} console lines about them")
