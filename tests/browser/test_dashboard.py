"""The dashboard and the landing page in headless Chromium, with real Python peers.

server.py, a Python receiver and a Python sender (built-in pattern, split stage1, --verify)
run as real processes; the dashboard page must show both peers with live, non-zero payload
and wire rates that agree with what the peers publish. The values are read from the page
(the table's cells), not from the stats messages.

Screenshots go to test-artifacts/; with SPLITRTC_UPDATE_DOCS=1 the dashboard's also to
docs/img/dashboard.png (the README's picture). SPLITRTC_MANIFEST picks another manifest than
models/manifest.json.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from splitcore.process.children import PY, ROOT, process, receiver_args, server
from tests.browser.chromium import ARTIFACTS, chromium, needs_browser
from tests.harness import Dashboard

pytestmark = needs_browser  # skip at once, with the reason, without Chromium or node_modules

MANIFEST = Path(os.environ.get("SPLITRTC_MANIFEST", ROOT / "models" / "manifest.json"))
STAGE1_MESSAGE = 32 * 16 * 16 * 4 + 64  # stage1 latent (float32 1x32x16x16) + frame header
UPDATE_DOCS = os.environ.get("SPLITRTC_UPDATE_DOCS") == "1"
HISTORY_S = 40 if UPDATE_DOCS else 0  # the README's picture shows some history on the charts
FRAMES = 30 * (15 + HISTORY_S)  # about 15 s at 30 fps, plus the history

ROWS_JS = """() => [...document.querySelectorAll('#peer-rows tr')].map(tr => ({
  id: tr.dataset.peerId, role: tr.dataset.role, name: tr.dataset.name, cls: tr.className,
  cells: Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.key,
    {text: td.textContent.trim(), value: td.dataset.value === undefined ? null : Number(td.dataset.value)}]))
}))"""

LIVE_JS = """(names) => names.every(name => {
  const tr = document.querySelector(`#peer-rows tr[data-name="${name}"]`);
  const v = (k) => Number(tr?.querySelector(`td[data-key="${k}"]`)?.dataset.value ?? 0);
  return tr && v('payloadBps') > 0 && v('wireBps') > 0;
})"""

needs_models = pytest.mark.skipif(not MANIFEST.is_file(),
                                  reason=f"no {MANIFEST}: run `make train` (or set SPLITRTC_MANIFEST)")

UNITS = {"B/s": 1, "kB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9}


def shown_rate(text: str) -> float:
    """ "985.3 kB/s" -> 985300.0, as the page displays it."""
    m = re.fullmatch(r"([\d.]+) (B/s|kB/s|MB/s|GB/s)", text)
    assert m, f"not a rate with a unit: {text!r}"
    return float(m.group(1)) * UNITS[m.group(2)]


def published_rate(dash: Dashboard, role: str, seconds: float = 3.0) -> float:
    """Payload bytes/s (sent + received) from the reports the peer published, over `seconds`."""
    def total() -> tuple[float, float]:
        (entry,) = [e for e in dash.entries(role, "data-channel") if e.get("state") == "open"]
        return entry["bytesSent"] + entry["bytesReceived"], entry["timestamp"]
    b0, t0 = total()
    time.sleep(seconds)
    b1, t1 = total()
    return (b1 - b0) / ((t1 - t0) / 1000)


def save_screenshot(page, name: str, docs: bool = False) -> Path:
    """Into test-artifacts/, and into docs/img/ with SPLITRTC_UPDATE_DOCS=1 when `docs`."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if docs and UPDATE_DOCS:
        docs = ROOT / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / name)
    return path


@needs_models
def test_dashboard_shows_live_python_peers(tmp_path: Path) -> None:
    room = "dash-test"
    models = ["--manifest", str(MANIFEST)]
    sender = [PY, "sender.py", "--room", room, "--name", "python-sender", "--split", "stage1",
              "--frames", str(FRAMES), "--verify", "--quiet", *models]
    with server(tmp_path) as url, \
            process(receiver_args(url, room, "--name", "python-receiver", *models), tmp_path / "receiver.log"), \
            process([*sender, "--server", url], tmp_path / "sender.log") as sender_proc, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{url}/dashboard?room={room}&window=60")
        short = browser.new_page(viewport={"width": 1000, "height": 800})  # forgets peers fast
        short.on("pageerror", lambda exc: errors.append(str(exc)))
        short.goto(f"{url}/dashboard?room={room}&window=10")
        dash = Dashboard(url, room)  # what the peers publish, to compare with the page
        try:
            try:
                page.wait_for_function(LIVE_JS, arg=["python-sender", "python-receiver"], timeout=40_000)
            except Exception:
                logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
                raise AssertionError(f"peers never showed live rates: {page.evaluate(ROWS_JS)}\n{logs}") from None
            time.sleep(HISTORY_S)
            published = published_rate(dash, "sender")  # also lets the charts gather history
            rows = {r["name"]: r for r in page.evaluate(ROWS_JS)}
            pub_frames = dash.latest[rows["python-sender"]["id"]]["app"]["frames"]
            builds = page.eval_on_selector_all(".plot", "els => els.map(e => e.dataset.builds)")
            time.sleep(2.0)
            builds_later = page.eval_on_selector_all(".plot", "els => els.map(e => e.dataset.builds)")
            assert page.text_content("#status") == "live"
            save_screenshot(page, "dashboard.png", docs=True)
        finally:
            dash.close()

        snd, rcv = rows["python-sender"], rows["python-receiver"]
        assert snd["role"] == "sender" and rcv["role"] == "receiver", rows
        assert set(rows) == {"python-sender", "python-receiver"}, rows  # the dashboard is not a peer
        cell = lambda row, key: row["cells"][key]  # noqa: E731
        for row in (snd, rcv):
            # the state badge, then the connection's security once the peer has reported it
            # (selected candidate pair: host on loopback, and the DTLS cipher)
            assert re.fullmatch(r"open( host · [A-Z0-9_-]+)?", cell(row, "state")["text"]), row
            assert cell(row, "split")["text"] == "stage1", row
            for key in ("payloadBps", "wireBps"):
                value, text = cell(row, key)["value"], cell(row, key)["text"]
                assert value > 0, row
                # the text is the value, with its unit
                assert shown_rate(text) == pytest.approx(value, rel=0.06, abs=1), (key, text, value)
            # wire counts DTLS/SCTP framing on top of the payload
            assert cell(row, "wireBps")["value"] > 0.9 * cell(row, "payloadBps")["value"], row
            assert cell(row, "messagesPs")["value"] > 0, row
            assert cell(row, "fps")["value"] > 0, row
            assert cell(row, "frames")["value"] > 0 and cell(row, "malformed")["value"] == 0, row

        # sender: one stage1 latent per frame, plus small JSON replies coming back
        fps = cell(snd, "fps")["value"]
        payload = cell(snd, "payloadBps")["value"]
        assert 5 < fps <= 31, snd
        assert 0.7 * STAGE1_MESSAGE * fps < payload < 1.5 * STAGE1_MESSAGE * fps, (payload, fps)
        assert 0.6 * published < payload < 1.6 * published, (payload, published)
        # the receiver sees the same channel from the other end
        assert 0.6 < cell(rcv, "payloadBps")["value"] / payload < 1.6, (rcv, snd)
        assert cell(snd, "p50")["value"] > 0 and cell(snd, "p99")["value"] >= cell(snd, "p50")["value"]
        assert cell(snd, "fidelity")["text"] == "100%", snd  # --verify: replies bit-exact
        assert cell(snd, "label")["text"] not in ("", "–"), snd
        assert abs(cell(snd, "frames")["value"] - pub_frames) <= 3 * 31, (snd, pub_frames)

        # six live charts, one line per peer, updated in place rather than rebuilt
        assert page.locator(".chart-card .plot canvas").count() == 6
        assert builds == builds_later, (builds, builds_later)
        payload_chart = page.locator('.chart-card[data-metric="payloadBps"] .readout .ro-item')
        assert payload_chart.count() == 2
        # nav links carry the room
        hrefs = page.eval_on_selector_all("nav a", "els => els.map(a => a.getAttribute('href'))")
        assert hrefs == [f"/{p}?room={room}" for p in ("sender", "receiver", "dashboard")], hrefs

        # the sender finishes: its row is marked as left, not dropped at once...
        sender_proc.wait(60)
        gone = '#peer-rows tr[data-name="python-sender"]'
        page.wait_for_selector(f'{gone}.left', timeout=10_000)
        assert page.text_content(f'{gone} td[data-key="state"]').startswith("left")
        # ... and removed, lines included, once they have scrolled out of the window
        short.wait_for_selector(f'{gone}.left', timeout=10_000)
        builds = short.get_attribute('.chart-card[data-metric="payloadBps"] .plot', "data-builds")
        short.wait_for_selector(gone, state="detached", timeout=15_000)
        short.wait_for_timeout(1500)
        assert short.locator('.chart-card[data-metric="payloadBps"] .readout .ro-item').count() == 1
        assert short.locator('#peer-rows tr[data-name="python-receiver"]').count() == 1
        assert int(short.get_attribute('.chart-card[data-metric="payloadBps"] .plot', "data-builds")) == int(builds) + 1
        assert not errors, errors


def test_landing_page_links_carry_the_room(tmp_path: Path) -> None:
    with server(tmp_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/?room=lab-7")
        assert "latent" in page.text_content(".lead")
        links = lambda: page.eval_on_selector_all(  # noqa: E731
            "#pages a.page", "els => els.map(a => [a.textContent, a.getAttribute('href')])")
        assert links() == [["Sender", "/sender?room=lab-7"], ["Receiver", "/receiver?room=lab-7"],
                           ["Dashboard", "/dashboard?room=lab-7"]]
        assert page.input_value("#room") == "lab-7"
        page.fill("#room", "other")  # typing a room updates the links at once
        assert [h for _, h in links()] == [f"/{p}?room=other" for p in ("sender", "receiver", "dashboard")]
        page.click("#room-form button")  # the form reloads the page with ?room=
        page.wait_for_url("**/?room=other")
        assert [h for _, h in links()][2] == "/dashboard?room=other"
        save_screenshot(page, "index.png")
        page.goto(f"{url}/")  # no room in the URL: "demo"
        assert [h for _, h in links()][0] == "/sender?room=demo"
        assert not errors, errors
