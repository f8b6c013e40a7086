// Live dashboard: joins a room as `dashboard` and shows every peer's stats (docs/signaling.md).
//
// URL settings: ?room=NAME (default "demo"), ?window=SECONDS shown by the charts (10-600,
// default 60).
//
// Peer names, reports and app fields come from other clients: they are only ever written
// with textContent and read through type checks, never as HTML.

import uPlot from "/vendor/uplot/uPlot.esm.js";
import { ROOM_RE, Signaling } from "./rtc/signaling.js";
import { appNumber, channelState, counterRate, peerMetrics, rates } from "./rtc/stats.js";
import { formatCount, formatMs, formatNumber, formatPercent, formatRate } from "./ui/format.js";
import { LiveChart, RollingWindow } from "./ui/ratechart.js";

const JOIN_TIMEOUT_MS = 5000;
const TICK_MS = 1000;
const STALE_AFTER_MS = 3500; // peers report once a second: three missed reports is trouble
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
  "#a16207", "#db2777", "#4b5563", "#65a30d"];

/** Axis ticks without trailing zeros: "1 MB/s", "1.5 MB/s", "500 kB/s". */
const shortRate = (v) => formatRate(v).replace(/(\.\d*?)0+ /, "$1 ").replace(/\. /, " ");
/** The charts, in page order; `key` is a field of peerMetrics(). */
const CHARTS = [
  { key: "payloadBps", title: "Payload", unit: "bytes/s, data channel", format: formatRate, axis: shortRate, floor: 1000 },
  { key: "wireBps", title: "Wire", unit: "bytes/s, transport", format: formatRate, axis: shortRate, floor: 1000 },
  { key: "messagesPs", title: "Messages", unit: "per second", format: (v) => `${formatNumber(v, 1)}/s`, axis: formatCount, floor: 1 },
  { key: "fps", title: "Frame rate", unit: "frames per second", format: (v) => `${formatNumber(v, 1)} fps`, axis: formatCount, floor: 1 },
  { key: "p50", title: "Latency p50", unit: "ms, capture to reply", format: formatMs, axis: formatCount, floor: 1 },
  { key: "p99", title: "Latency p99", unit: "ms, capture to reply", format: formatMs, axis: formatCount, floor: 1 },
];

const $ = (id) => document.getElementById(id);

/** Settings from the URL: room and chart window. */
function settings() {
  const q = new URLSearchParams(window.location.search);
  const room = q.get("room") || "demo";
  const w = Number.parseInt(q.get("window") ?? "", 10);
  return { room, windowS: Number.isFinite(w) ? Math.min(Math.max(w, 10), 600) : 60 };
}

const { room: ROOM, windowS: WINDOW_S } = settings();
const FORGET_LEFT_AFTER_MS = WINDOW_S * 1000; // marked "left" until its lines scroll away

/** id -> {id, role, name, color, leftAt, report, app, rates, receivedAt, frames, derivedFps} */
const peers = new Map();
const timeline = new RollingWindow(WINDOW_S, CHARTS.map((c) => c.key));
const charts = [];

function setStatus(text, kind = "info") {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function nextColor() {
  const used = new Set([...peers.values()].map((p) => p.color));
  return PALETTE.find((c) => !used.has(c)) ?? PALETTE[peers.size % PALETTE.length];
}

/** Add or refresh a peer from a `Peer` object; dashboards are not shown. */
function upsertPeer(p) {
  if (!p || typeof p.id !== "string" || p.role === "dashboard") return null;
  let peer = peers.get(p.id);
  if (!peer) {
    peer = { id: p.id, role: "?", name: "", color: nextColor(), leftAt: null, report: [], app: {},
      rates: null, receivedAt: 0, frames: null, derivedFps: null };
    peers.set(p.id, peer);
  }
  if (typeof p.role === "string") peer.role = p.role;
  if (typeof p.name === "string") peer.name = p.name;
  peer.leftAt = null;
  return peer;
}

function markLeft(id) {
  const peer = peers.get(id);
  if (peer && peer.leftAt === null) peer.leftAt = Date.now();
  renderTable();
}

function onStats(msg) {
  const peer = upsertPeer({ id: msg?.from, role: msg?.role, name: msg?.name });
  if (!peer || !Array.isArray(msg.report)) return;
  const time = typeof msg.time === "number" ? msg.time : Date.now();
  // the server replays a peer's last stats to a dashboard that (re)joins: nothing new
  const replay = peer.frames !== null && peer.frames.time === time;
  if (!replay) peer.rates = rates(peer.report, msg.report); // null: no baseline yet
  peer.report = msg.report;
  peer.app = msg.app && typeof msg.app === "object" && !Array.isArray(msg.app) ? msg.app : {};
  // a receiver publishes a frames counter but no fps: derive it
  const frames = { value: appNumber(peer.app, "frames"), time };
  if (!replay) peer.derivedFps = counterRate(peer.frames, frames); // null: no baseline, or reset
  peer.frames = frames;
  peer.receivedAt = Date.now();
  renderTable();
}

function isFresh(peer, now) {
  return peer.leftAt === null && peer.receivedAt !== 0 && now - peer.receivedAt < STALE_AFTER_MS;
}

/** [text, kind] of the state badge. */
function peerState(peer, now) {
  if (peer.leftAt !== null) {
    const gone = Math.max(0, Math.round((FORGET_LEFT_AFTER_MS - (now - peer.leftAt)) / 1000));
    return [`left · gone in ${gone} s`, "left"];
  }
  if (peer.receivedAt === 0) return ["joined, no stats yet", "wait"];
  if (!isFresh(peer, now)) return [`stale ${Math.round((now - peer.receivedAt) / 1000)} s`, "stale"];
  const state = channelState(peer.report);
  return [state, /\bopen\b/.test(state) ? "ok" : "wait"];
}

function displayName(peer) {
  return peer.name || `${peer.role} ${peer.id.slice(0, 6)}`;
}

function metricsOf(peer, now) {
  return isFresh(peer, now) ? peerMetrics(peer.rates, peer.app, peer.derivedFps) : peerMetrics(null, {});
}

/** Table columns: [key, css class, (peer, metrics, now) -> [text, raw value?]] */
const COLUMNS = [
  ["name", "name", null], // built by hand: swatch, name, id
  ["role", "role", (p) => [p.role === "receiver" && typeof p.app.senders === "number"
    ? `receiver (${p.app.senders})` : p.role]],
  ["split", "", (p) => [typeof p.app.split === "string" && p.app.split ? p.app.split : "–"]],
  ["state", "state", null],
  ["payloadBps", "num", (p, m) => [formatRate(m.payloadBps ?? undefined), m.payloadBps]],
  ["wireBps", "num", (p, m) => [formatRate(m.wireBps ?? undefined), m.wireBps]],
  ["messagesPs", "num", (p, m) => [formatNumber(m.messagesPs, 1), m.messagesPs]],
  ["fps", "num", (p, m) => [formatNumber(m.fps, 1), m.fps]],
  ["p50", "num", (p, m) => [m.p50 === null ? "–" : formatMs(m.p50), m.p50]],
  ["p99", "num", (p, m) => [m.p99 === null ? "–" : formatMs(m.p99), m.p99]],
  ["label", "label", (p) => {
    const label = p.app.label;
    return [typeof label === "string" && label ? label : typeof label === "number" ? String(label) : "–"];
  }],
  ["fidelity", "num", (p) => [formatPercent(appNumber(p.app, "fidelity")), appNumber(p.app, "fidelity")]],
  ["frames", "num", (p) => [formatNumber(appNumber(p.app, "frames"), 0), appNumber(p.app, "frames")]],
  ["dropped", "num", (p) => [formatNumber(appNumber(p.app, "dropped"), 0), appNumber(p.app, "dropped")]],
  ["malformed", "num", (p) => [formatNumber(appNumber(p.app, "malformed"), 0), appNumber(p.app, "malformed")]],
];

/** id -> {tr, cells: {key: td}, nameEl, swatch, badge} */
const rows = new Map();

function createRow(peer) {
  const tr = document.createElement("tr");
  tr.dataset.peerId = peer.id;
  const cells = {};
  for (const [key, cls] of COLUMNS) {
    const td = document.createElement("td");
    td.dataset.key = key;
    if (cls) td.className = cls;
    cells[key] = td;
    tr.appendChild(td);
  }
  const swatch = document.createElement("i");
  swatch.className = "swatch";
  const nameEl = document.createElement("span");
  nameEl.className = "peer-name";
  // candidate pair type and DTLS cipher, under the name (see securityOf)
  const security = document.createElement("small");
  security.className = "security";
  security.style.display = "block";
  cells.name.append(swatch, nameEl, security);
  const badge = document.createElement("span");
  badge.className = "badge";
  cells.state.append(badge);
  const row = { tr, cells, nameEl, swatch, badge, security };
  rows.set(peer.id, row);
  return row;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function updateRow(row, peer, now) {
  const m = metricsOf(peer, now);
  row.tr.dataset.role = peer.role;
  row.tr.dataset.name = peer.name;
  row.tr.className = peer.leftAt !== null ? "left" : peer.receivedAt !== 0 && !isFresh(peer, now) ? "stale" : "";
  row.swatch.style.background = peer.color;
  setText(row.nameEl, displayName(peer));
  row.tr.title = `${displayName(peer)} · id ${peer.id}`;
  const [state, kind] = peerState(peer, now);
  setText(row.badge, state);
  row.badge.dataset.kind = kind;
  const [secText, secTitle] = securityOf(peer);
  setText(row.security, secText);
  row.security.title = secTitle;
  row.cells.state.dataset.value = kind;
  for (const [key, , cell] of COLUMNS) {
    if (!cell) continue;
    const [text, value] = cell(peer, m, now);
    const td = row.cells[key];
    setText(td, text);
    if (typeof value === "number") td.dataset.value = String(value);
    else delete td.dataset.value;
  }
}

/**
 * [text, title] of a peer's connection security: the candidate pair type (host, srflx,
 * relay) and DTLS cipher, from the "security" entries of its report (browser and Python
 * peers alike; a receiver has one per sender). Empty until a peer reports one.
 */
function securityOf(peer) {
  const entries = peer.report.filter((e) => e && e.type === "security");
  const str = (v) => (typeof v === "string" && v.length <= 80 ? v : "");
  const types = [...new Set(entries.map((e) => str(e.candidatePairType)).filter(Boolean))];
  const ciphers = [...new Set(entries.map((e) => str(e.dtlsCipher)).filter(Boolean))];
  const versions = [...new Set(entries.map((e) => str(e.tlsVersion)).filter(Boolean))];
  if (!types.length && !ciphers.length) return ["", ""];
  const text = `${types.join("/") || "?"} · ${ciphers.join(", ") || "no DTLS yet"}`;
  return [text, `candidate pair: ${types.join(", ") || "unknown"}; DTLS ${versions.join(", ") || "?"} ` +
    `${ciphers.join(", ") || "?"}`];
}

function sortedPeers() {
  const order = { sender: 0, receiver: 1 };
  return [...peers.values()].sort((a, b) =>
    (a.leftAt !== null) - (b.leftAt !== null) || (order[a.role] ?? 2) - (order[b.role] ?? 2) ||
    displayName(a).localeCompare(displayName(b)) || a.id.localeCompare(b.id));
}

/** Rows are kept and updated in place; only their order and membership change. */
function renderTable() {
  const now = Date.now();
  const body = $("peer-rows");
  for (const [id, row] of rows) if (!peers.has(id)) { row.tr.remove(); rows.delete(id); }
  sortedPeers().forEach((peer, i) => {
    const row = rows.get(peer.id) ?? createRow(peer);
    updateRow(row, peer, now);
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] ?? null);
  });
  const live = [...peers.values()].filter((p) => p.leftAt === null);
  const count = (role) => live.filter((p) => p.role === role).length;
  const left = peers.size - live.length;
  $("peer-count").textContent = peers.size === 0 ? "" :
    `${count("sender")} sender${count("sender") === 1 ? "" : "s"}, ` +
    `${count("receiver")} receiver${count("receiver") === 1 ? "" : "s"}${left ? `, ${left} left` : ""}`;
  $("no-peers").hidden = peers.size > 0;
}

function buildCharts() {
  const grid = $("charts");
  for (const spec of CHARTS) {
    const card = document.createElement("figure");
    card.className = "chart-card";
    card.dataset.metric = spec.key;
    const head = document.createElement("figcaption");
    const title = document.createElement("h3");
    title.textContent = spec.title;
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = spec.unit;
    title.append(" ", unit);
    const when = document.createElement("span");
    when.className = "ro-time";
    const readout = document.createElement("div");
    readout.className = "readout";
    head.append(title, when, readout);
    const plot = document.createElement("div");
    plot.className = "plot";
    card.append(head, plot);
    grid.append(card);
    charts.push({ spec, chart: new LiveChart(plot, { uPlot, format: spec.format, axisFormat: spec.axis,
      windowS: WINDOW_S, floor: spec.floor, readout, timeLabel: when }) });
  }
  if (typeof ResizeObserver === "function") {
    let pending = false;
    new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; for (const c of charts) c.chart.resize(); });
    }).observe(grid);
  }
}

/** Once a second: forget long-gone peers, sample every fresh peer, update charts and table. */
function tick() {
  const now = Date.now();
  for (const [id, peer] of peers) {
    if (peer.leftAt !== null && now - peer.leftAt > FORGET_LEFT_AFTER_MS) peers.delete(id);
  }
  for (const id of [...timeline.peers.keys()]) if (!peers.has(id)) timeline.removePeer(id);
  const samples = new Map();
  for (const peer of peers.values()) {
    const m = metricsOf(peer, now);
    if (Object.values(m).some((v) => v !== null)) {
      timeline.addPeer(peer.id); // a peer gets its lines with its first value
      samples.set(peer.id, m);
    }
  }
  timeline.push(now / 1000, samples);
  // series in the order peers got their lines: a peer leaving does not reorder (rebuild) them
  const shown = [...timeline.peers.keys()].map((id) => peers.get(id)).filter(Boolean);
  for (const { spec, chart } of charts) {
    chart.update(timeline.times, shown.map((p) => ({
      id: p.id, label: displayName(p), color: p.color, values: timeline.column(p.id, spec.key),
    })));
  }
  renderTable();
}

/** After (re)joining, the ack's peer list is the truth: anyone else has left meanwhile. */
function onJoined(ack) {
  const present = new Set();
  for (const p of ack.peers ?? []) if (upsertPeer(p)) present.add(p.id);
  for (const [id, peer] of peers) if (!present.has(id) && peer.leftAt === null) markLeft(id);
  setStatus("live", "ok");
  $("status").title = `Connected to room "${ROOM}" as a dashboard.`;
  renderTable();
}

/** Join as a dashboard (the one Socket.IO client of the pages: rtc/signaling.js); retried
 * until the server answers, then kept joined across reconnects by the client itself. */
async function connect() {
  const sig = new Signaling({ room: ROOM, role: "dashboard", name: "dashboard" });
  sig.on("joined", onJoined);
  sig.on("state", ({ state, detail }) => {
    if (state === "reconnecting") setStatus(`Disconnected (${detail}); reconnecting…`, "error");
    else if (state === "refused") setStatus(`The server refused to join room "${ROOM}": ${detail || "no reason given"}.`, "error");
  });
  sig.on("peer-joined", (p) => { upsertPeer(p); renderTable(); });
  sig.on("peer-left", (p) => markLeft(p?.id));
  sig.on("stats", onStats);
  for (;;) {
    setStatus(`joining room "${ROOM}"…`, "info");
    try {
      await sig.connect(JOIN_TIMEOUT_MS);
      return sig;
    } catch (err) {
      setStatus(`${err.message}; retrying…`, "error");
      if (sig.state === "refused") return null;
      await new Promise((r) => setTimeout(r, JOIN_TIMEOUT_MS));
    }
  }
}

/** Carry the room along on every link to our pages. */
function roomLinks() {
  for (const a of document.querySelectorAll("a[data-room-link]")) {
    const url = new URL(a.getAttribute("href"), window.location.href);
    url.searchParams.set("room", ROOM);
    a.href = url.pathname + url.search;
  }
}

function main() {
  $("room").textContent = ROOM;
  $("window-s").textContent = String(WINDOW_S);
  $("hint-cmd").textContent = `python sender.py --room ${ROOM}`;
  document.title = `SplitRTC dashboard · ${ROOM}`;
  if (!ROOM_RE.test(ROOM)) {
    setStatus(`Invalid room "${ROOM}": use 1-64 of A-Z a-z 0-9 _ . -`, "error");
    document.querySelector("main").hidden = true;
    return;
  }
  roomLinks();
  buildCharts();
  renderTable();
  setStatus("connecting…", "info");
  connect();
  tick();
  setInterval(tick, TICK_MS);
}

main();
