"""The dashboard and the landing page in headless Chromium, with real Python peers.

server.py, a Python receiver and a Python sender (built-in pattern, split stage1, --verify)
run as real processes; the dashboard page must show both peers with live, non-zero payload
and wire rates that agree with what the peers publish, and the sender's operating point and
its leakage (from an operating-points file with a leakage figure for that point). The values
are read from the page (the table's cells), not from the stats messages.

A receiver pool (two ``python -m receiver --pool``, two ``sender.py --pool``): the dashboard
watching the pool lists both receivers, their load and the senders each serves, as the
server's /healthz says; a receiver that leaves disappears and its sender shows under the
other. Switch marks: a scripted sender (a Socket.IO client publishing stats, since an
adaptive sender does not switch on an idle loopback) changes its operating point; the switch
is marked on every chart and listed until it leaves the window.

Screenshots go to test-artifacts/; with SPLITRTC_UPDATE_DOCS=1 the dashboard's also to
docs/img/dashboard.png (the README's picture). SPLITRTC_MANIFEST picks another manifest than
models/manifest.json.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from splitcore.process.children import PY, ROOT, process, receiver_args, server, spawn, stop
from tests.browser.chromium import ARTIFACTS, chromium, needs_browser
from tests.harness import Dashboard
from tests.integration.redis_nodes import healthz

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

POINT_JS = """(name) => {
  const tr = document.querySelector(`#peer-rows tr[data-name="${name}"]`);
  const point = tr?.querySelector('td[data-key="point"]');
  const leak = tr?.querySelector('td[data-key="leakage"]');
  return tr && {text: point.querySelector('.point-text').textContent, ...point.dataset,
    switchesText: point.querySelector('.switches').textContent,
    leakText: leak.querySelector('.leak').textContent, leakDetail: leak.querySelector('.leak-detail').textContent,
    leakKind: leak.dataset.kind ?? null, leakTitle: leak.title};
}"""


def points_with_leakage(tmp: Path, key: tuple[str, str, str], leakage: dict) -> Path:
    """models/operating_points.json with ``leakage`` given to the point ``key`` (split, codec, head)."""
    raw = json.loads((MANIFEST.parent / "operating_points.json").read_text())
    (point,) = [p for p in raw["points"] if (p["split"], p["codec"], p["head"]) == key]
    point["leakage"] = leakage
    path = tmp / "operating_points.json"
    path.write_text(json.dumps(raw))
    return path


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
    # a figure of the privacy study for the sender's point (split stage1, float32 codec and head)
    leakage = {"ssim": 0.4123, "psnr_db": 17.25, "recon_top1": 0.615, "attack": "inverse"}
    points = points_with_leakage(tmp_path, ("stage1", "float32", "float32"), leakage)
    sender = [PY, "sender.py", "--room", room, "--name", "python-sender", "--split", "stage1",
              "--frames", str(FRAMES), "--verify", "--quiet", "--points", str(points), *models]
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
            pub_app = dash.latest[rows["python-sender"]["id"]]["app"]
            pub_frames = pub_app["frames"]
            shown_point = page.evaluate(POINT_JS, "python-sender")
            shown_receiver_point = page.evaluate(POINT_JS, "python-receiver")
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

        # the sender's operating point and its leakage, as it publishes them
        assert (shown_point["split"], shown_point["codec"], shown_point["head"]) == \
            (pub_app["split"], pub_app["codec"], pub_app["head"]) == ("stage1", "float32", "float32"), shown_point
        assert shown_point["point"] == pub_app["operating_point"] == "stage1/float32/float32", shown_point
        assert shown_point["text"] == "stage1 / float32 / float32", shown_point
        assert "switches" not in shown_point, shown_point  # a fixed point publishes no switch count
        assert pub_app["leakage"] == leakage, pub_app
        assert shown_point["leakKind"] == "recognisable", shown_point  # SSIM 0.41: not below 0.3
        assert shown_point["leakText"] == "recognisable · SSIM 0.41", shown_point
        assert shown_point["leakDetail"] == "17.3 dB · top-1 62%", shown_point
        assert "inverse" in shown_point["leakTitle"], shown_point
        # the receiver: the split it receives, no leakage of its own
        assert shown_receiver_point["text"] == "stage1" and shown_receiver_point["leakText"] == "–", shown_receiver_point

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


POOL_JS = """() => [...document.querySelectorAll('#pool-rows tr')].map(tr => {
  const v = (k) => tr.querySelector(`td[data-key="${k}"]`);
  return {id: tr.dataset.receiverId, name: tr.dataset.name, cls: tr.className,
    streams: Number(v('streams').dataset.value), cpu: Number(v('cpu').dataset.value),
    queue: Number(v('queue').dataset.value), cpuText: v('cpu').textContent,
    saturated: tr.querySelector('.badge').checkVisibility(),
    senders: [...v('senders').querySelectorAll('.chip')].map(c => c.dataset.name).sort()};
})"""


def pool_assignment(url: str, pool: str) -> dict[str, list[str]]:
    """Receiver name -> names of the senders it serves, as /healthz tells it."""
    return {r["name"]: sorted(s["name"] for s in r["senders"]) for r in healthz(url).get("pools", {}).get(pool, [])}


def wait_until(what: str, predicate, procs, timeout: float = 60.0, detail=lambda: "") -> None:
    """Poll ``predicate`` until true; fail if a process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            assert p.poll() is None, f"{p.args} exited {p.returncode} before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s: {detail()}"
        time.sleep(0.3)


@needs_models
def test_dashboard_watches_a_pool(tmp_path: Path) -> None:
    pool = "dash-pool"
    models = ["--manifest", str(MANIFEST)]
    logs = {n: open(tmp_path / f"{n}.log", "w") for n in ("r1", "r2", "s0", "s1")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with server(tmp_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{url}/dashboard?pool={pool}&window=30")
        try:
            for name in ("r1", "r2"):
                procs[name] = spawn([PY, "-m", "receiver", "--server", url, "--pool", pool, "--name", name,
                                     "--workers", "1", *models], logs[name])
            receivers = [procs["r1"], procs["r2"]]
            wait_until("two receivers in the pool", lambda: len(pool_assignment(url, pool)) == 2, receivers)
            for name in ("s0", "s1"):
                procs[name] = spawn([PY, "sender.py", "--server", url, "--pool", pool, "--name", name, "--quiet",
                                     "--frames", "0", "--fps", "5", "--split", "stage1", *models], logs[name])
            everyone = list(procs.values())

            def shown() -> dict[str, list[str]]:
                return {r["name"]: r["senders"] for r in page.evaluate(POOL_JS)}

            def agrees(receivers: int, senders: int) -> bool:
                truth = pool_assignment(url, pool)
                return len(truth) == receivers and sum(map(len, truth.values())) == senders and shown() == truth

            detail = lambda: (f"page status {page.text_content('#status')!r}, page {page.evaluate(POOL_JS)}, "  # noqa: E731
                              f"server {pool_assignment(url, pool)}")
            wait_until("the page listing both receivers and their senders as the server assigned them",
                       lambda: agrees(2, 2), everyone, detail=detail)
            # each receiver's load catches up with its senders once their sessions are open
            wait_until("the receivers' load counting their streams",
                       lambda: all(r["streams"] == len(r["senders"]) for r in page.evaluate(POOL_JS)),
                       everyone, detail=detail)
            assert page.text_content("#status") == "live"
            assert page.text_content("#room-kind") == "pool" and page.text_content("#pool-name") == pool
            rows = page.evaluate(POOL_JS)
            assert sorted(r["name"] for r in rows) == ["r1", "r2"], rows
            assert sorted(sum((r["senders"] for r in rows), [])) == ["s0", "s1"], rows
            for r in rows:
                assert re.fullmatch(r"\d+% of a core", r["cpuText"]), r
                assert 0 <= r["cpu"] and r["queue"] >= 0, r
                assert r["saturated"] == (r["cpu"] >= 0.9 or r["queue"] >= 8), r
            assert page.is_hidden("#no-pool") and page.is_hidden("#pool-waiting")
            # the senders are in the peer table too, with their operating point
            sender_point = page.evaluate(POINT_JS, "s0")
            assert sender_point["text"] == "stage1 / float32 / float32", sender_point
            save_screenshot(page, "dashboard-pool.png")

            # a receiver leaves: its row disappears, its sender moves to the other one
            victim = max(rows, key=lambda r: (len(r["senders"]), r["name"]))["name"]
            survivor = "r2" if victim == "r1" else "r1"
            stop([procs[victim]], signal.SIGTERM)
            page.wait_for_selector(f'#pool-rows tr[data-name="{victim}"]', state="detached", timeout=15_000)
            wait_until(f"both senders shown under {survivor}", lambda: agrees(1, 2) and shown() == {survivor: ["s0", "s1"]},
                       [procs[survivor], procs["s0"], procs["s1"]], detail=detail)
            assert page.locator('#pool-rows tr').count() == 1
            assert not errors, errors
        finally:
            stop(list(procs.values()))
            for f in logs.values():
                f.close()


class ScriptedPeer:
    """A Socket.IO client that joins as a sender and publishes the stats it is given."""

    def __init__(self, url: str, room: str, name: str) -> None:
        import socketio

        self._loop = asyncio.new_event_loop()
        self._sio = socketio.AsyncClient(reconnection=False)
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

        async def start() -> dict:
            await self._sio.connect(url, transports=["websocket"])
            return await self._sio.call("join", {"room": room, "role": "sender", "name": name})
        ack = self._run(start())
        assert ack.get("ok"), ack

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def publish(self, app: dict) -> None:
        ack = self._run(self._sio.call("stats", {"report": [], "app": app}))
        assert ack.get("ok"), ack

    def close(self) -> None:
        self._run(self._sio.disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)


def test_dashboard_marks_switches(tmp_path: Path) -> None:
    room, window = "switch-test", 10
    first = {"split": "stage1", "codec": "float32", "head": "float32", "operating_point": "stage1/float32/float32",
             "switches": 4, "fps": 10.0, "frames": 10,
             "leakage": {"ssim": 0.81, "psnr_db": 24.0, "recon_top1": 0.85, "attack": "whitebox-rml"}}
    second = {**first, "split": "stage2", "codec": "int8-tensor", "head": "int8", "switches": 5,
              "operating_point": "stage2/int8-tensor/int8", "frames": 20,
              "leakage": {"ssim": 0.12, "psnr_db": 11.0, "recon_top1": 0.2, "attack": "inverse"}}
    with server(tmp_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{url}/dashboard?room={room}&window={window}")
        peer = ScriptedPeer(url, room, "scripted-sender")
        try:
            point = lambda: page.evaluate(POINT_JS, "scripted-sender")  # noqa: E731
            peer.publish(first)
            page.wait_for_function(f"() => ({POINT_JS})('scripted-sender')?.point === 'stage1/float32/float32'")
            assert point()["leakKind"] == "recognisable" and point()["switchesText"] == "4 switches", point()
            peer.publish(first)  # nothing changed: no switch
            page.wait_for_function("() => document.querySelector('td[data-key=\"frames\"]')?.dataset.value === '10'")
            assert page.is_hidden("#switch-log")
            peer.publish(second)
            page.wait_for_selector('#switch-log li[data-point="stage2/int8-tensor/int8"]')
            shown = point()
            assert shown["text"] == "stage2 / int8-tensor / int8" and shown["switchesText"] == "5 switches", shown
            assert shown["leakKind"] == "private", shown  # SSIM 0.12 < 0.3
            assert (shown["leakText"], shown["leakDetail"]) == ("private · SSIM 0.12", "11.0 dB · top-1 20%"), shown
            items = page.eval_on_selector_all("#switch-log li", "els => els.map(e => [e.dataset.from, e.dataset.point])")
            assert items == [["stage1/float32/float32", "stage2/int8-tensor/int8"]], items
            # on every chart, within a tick or two: in the window and drawn on the canvas
            page.wait_for_function("() => [...document.querySelectorAll('.chart-card .plot')].every("
                                   "p => p.dataset.marks === '1' && p.dataset.drawnMarks === '1')", timeout=5000)
            assert page.locator(".chart-card .plot").count() == 6
            save_screenshot(page, "dashboard-switch.png")
            peer.publish({**second, "leakage": None, "frames": 30})  # same point, no figure
            page.wait_for_function(f"() => ({POINT_JS})('scripted-sender')?.leakKind === 'unmeasured'")
            assert (point()["leakText"], point()["leakDetail"]) == ("not measured", ""), point()
            assert page.locator("#switch-log li").count() == 1
            # the mark goes once its time has left the charts' window
            page.wait_for_function("() => [...document.querySelectorAll('.chart-card .plot')].every("
                                   "p => p.dataset.marks === '0')", timeout=(window + 5) * 1000)
            page.wait_for_selector("#switch-log", state="hidden", timeout=3000)
            assert not errors, errors
        finally:
            peer.close()


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
