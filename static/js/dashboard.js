// Live dashboard: joins a room as `dashboard` and shows every peer's stats (docs/signaling.md).
//
// URL settings: ?room=NAME (default "demo"), or ?pool=NAME to watch receiver pool NAME
// (docs/signaling.md, "Pools": its receivers, their load and their senders), ?window=SECONDS
// shown by the charts (10-600, default 60).
//
// Per sender: its operating point (split / codec / head) and the measured leakage of that
// point (ui/point.js); a switch of operating point is marked on the charts (ui/switches.js).
//
// Peer names, reports and app fields come from other clients: they are only ever written
// with textContent and read through type checks, never as HTML.

import uPlot from "/vendor/uplot/uPlot.esm.js";
import { ROOM_RE, Signaling } from "./rtc/signaling.js";
import { appNumber, channelState, counterRate, peerMetrics, rates } from "./rtc/stats.js";
import { formatCount, formatMs, formatNumber, formatPercent, formatRate } from "./ui/format.js";
import { formatCpu, PoolModel } from "./ui/pool.js";
import { leakageView, operatingPoint, pointText } from "./ui/point.js";
import { LiveChart, RollingWindow, relativeLabel } from "./ui/ratechart.js";
import { SwitchMarks } from "./ui/switches.js";

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

/** Settings from the URL: room (or pool) and chart window. */
function settings() {
  const q = new URLSearchParams(window.location.search);
  const pool = q.get("pool");
  const room = pool || q.get("room") || "demo";
  const w = Number.parseInt(q.get("window") ?? "", 10);
  return { room, pool: !!pool, windowS: Number.isFinite(w) ? Math.min(Math.max(w, 10), 600) : 60 };
}

const { room: ROOM, pool: POOL, windowS: WINDOW_S } = settings();
const WHERE = `${POOL ? "pool" : "room"} "${ROOM}"`;
const FORGET_LEFT_AFTER_MS = WINDOW_S * 1000; // marked "left" until its lines scroll away

/** id -> {id, role, name, color, leftAt, report, app, rates, receivedAt, frames, derivedFps} */
const peers = new Map();
const timeline = new RollingWindow(WINDOW_S, CHARTS.map((c) => c.key));
const charts = [];
const switchMarks = new SwitchMarks();
const pool = new PoolModel();

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
  if (pool.remove(id)) renderPool(); // a receiver that left serves no one: out of the pool at once
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
  // a sender's switches (a receiver's split is just the last one it received), marked on the
  // charts' clock (this page's, not the server's): the mark goes where the lines are
  if (!replay && peer.role === "sender" && switchMarks.observe(peer.id, peer.app, peer.receivedAt / 1000)) {
    renderSwitches();
  }
  if (POOL && pool.update(msg)) renderPool();
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
  ["point", "point", null], // built by hand: split / codec / head, switches
  ["leakage", "leakage", null], // built by hand: a badge
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

/**
 * A table row of one cell per `[key, className]` column (`td[data-key]`), with the colour
 * swatch and name span every peer's name cell starts with: the peer table's and the pool's.
 */
function tableRow(columns) {
  const tr = document.createElement("tr");
  const cells = {};
  for (const [key, cls] of columns) {
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
  return { tr, cells, swatch, nameEl };
}

function createRow(peer) {
  const { tr, cells, swatch, nameEl } = tableRow(COLUMNS);
  tr.dataset.peerId = peer.id;
  // candidate pair type and DTLS cipher, under the name (see securityOf)
  const security = document.createElement("small");
  security.className = "security";
  security.style.display = "block";
  cells.name.append(swatch, nameEl, security);
  const badge = document.createElement("span");
  badge.className = "badge";
  cells.state.append(badge);
  const pointEl = document.createElement("span");
  pointEl.className = "point-text";
  const switchesEl = document.createElement("small");
  switchesEl.className = "switches";
  switchesEl.style.display = "block";
  cells.point.append(pointEl, switchesEl);
  const leak = document.createElement("span");
  leak.className = "badge leak";
  const leakDetail = document.createElement("small");
  leakDetail.className = "leak-detail";
  leakDetail.style.display = "block";
  cells.leakage.append(leak, leakDetail);
  const row = { tr, cells, nameEl, swatch, badge, security, pointEl, switchesEl, leak, leakDetail };
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
  updatePoint(row, peer);
  for (const [key, , cell] of COLUMNS) {
    if (!cell) continue;
    const [text, value] = cell(peer, m, now);
    const td = row.cells[key];
    setText(td, text);
    if (typeof value === "number") td.dataset.value = String(value);
    else delete td.dataset.value;
  }
}

/** The operating point and leakage cells: a sender's; blank for a peer that reports no point. */
function updatePoint(row, peer) {
  const point = operatingPoint(peer.app);
  const td = row.cells.point;
  setText(row.pointEl, pointText(point));
  for (const part of ["split", "codec", "head"]) {
    if (point?.[part]) td.dataset[part] = point[part];
    else delete td.dataset[part];
  }
  if (point) td.dataset.point = point.key;
  else delete td.dataset.point;
  td.title = point ? `operating point ${point.key}` : "";
  const n = point?.switches ?? null;
  setText(row.switchesEl, n === null ? "" : `${n} switch${n === 1 ? "" : "es"}`);
  if (n === null) delete td.dataset.switches;
  else td.dataset.switches = String(n);
  const sender = peer.role === "sender" && point !== null;
  const view = sender ? leakageView(peer.app.leakage) : null;
  setText(row.leak, view ? view.text : "–");
  setText(row.leakDetail, view ? view.detail : "");
  row.leak.classList.toggle("badge", view !== null); // not a sender's: a plain "–"
  row.cells.leakage.title = view ? view.title : "";
  if (view) {
    row.leak.dataset.kind = view.kind;
    row.cells.leakage.dataset.kind = view.kind;
  } else {
    delete row.leak.dataset.kind;
    delete row.cells.leakage.dataset.kind;
  }
  if (view?.ssim !== null && view?.ssim !== undefined) row.cells.leakage.dataset.value = String(view.ssim);
  else delete row.cells.leakage.dataset.value;
}

/** The switches still in the window, newest first: when, who, from which point to which. */
function renderSwitches() {
  const list = $("switch-log");
  const now = Date.now() / 1000;
  const items = [...switchMarks.marks].reverse().map((m) => {
    const li = document.createElement("li");
    li.dataset.peerId = m.id;
    li.dataset.point = m.point;
    li.dataset.from = m.from;
    const peer = peers.get(m.id);
    const swatch = document.createElement("i");
    swatch.className = "swatch";
    swatch.style.background = peer?.color ?? "#4b5563";
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = relativeLabel(m.t - now);
    const what = document.createElement("span");
    what.textContent = `${peer ? displayName(peer) : m.id.slice(0, 6)}: ${m.from} → `;
    const to = document.createElement("b");
    to.textContent = m.point;
    what.append(to);
    if (m.count > 1) what.append(` (${m.count} switches)`);
    li.append(swatch, when, what);
    return li;
  });
  list.replaceChildren(...items);
  list.hidden = items.length === 0;
}

/** receiver id -> {tr, cells, nameEl, swatch, senders (signature of the senders cell)} */
const poolRows = new Map();

const POOL_COLUMNS = [["name", "name"], ["workers", "num"], ["streams", "num"], ["cpu", "num"], ["queue", "num"],
  ["senders", "senders"]];

function createPoolRow(id) {
  const { tr, cells, swatch, nameEl } = tableRow(POOL_COLUMNS);
  tr.dataset.receiverId = id;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.kind = "stale";
  badge.textContent = "saturated";
  cells.name.append(swatch, nameEl, " ", badge);
  const row = { tr, cells, nameEl, swatch, badge, senders: "" };
  poolRows.set(id, row);
  return row;
}

/** A sender chip: its colour and name (the same as its row in the peer table). */
function senderChip(s) {
  const chip = document.createElement("span");
  chip.className = "chip";
  chip.dataset.senderId = s.id;
  chip.dataset.name = s.name;
  const peer = peers.get(s.id);
  const swatch = document.createElement("i");
  swatch.className = "swatch";
  swatch.style.background = peer?.color ?? "#c3c8d1";
  chip.append(swatch, s.name || s.id.slice(0, 6));
  return chip;
}

/** The pool card: one row per receiver (updated in place), and the senders still waiting. */
function renderPool() {
  if (!POOL) return;
  const now = Date.now();
  const body = $("pool-rows");
  const receivers = pool.receivers();
  const ids = new Set(receivers.map((r) => r.id));
  for (const [id, row] of poolRows) if (!ids.has(id)) { row.tr.remove(); poolRows.delete(id); }
  receivers.forEach((r, i) => {
    const row = poolRows.get(r.id) ?? createPoolRow(r.id);
    const peer = peers.get(r.id);
    row.tr.dataset.name = r.name;
    row.tr.className = peer && peer.receivedAt !== 0 && !isFresh(peer, now) ? "stale" : "";
    row.swatch.style.background = peer?.color ?? "#c3c8d1";
    setText(row.nameEl, r.name || `receiver ${r.id.slice(0, 6)}`);
    row.badge.hidden = !r.saturated;
    setText(row.cells.workers, String(r.load.workers));
    row.cells.workers.dataset.value = String(r.load.workers);
    setText(row.cells.streams, String(r.load.streams));
    row.cells.streams.dataset.value = String(r.load.streams);
    setText(row.cells.cpu, formatCpu(r.load.cpu, r.load.workers));
    row.cells.cpu.dataset.value = String(r.load.cpu);
    setText(row.cells.queue, String(r.load.queue));
    row.cells.queue.dataset.value = String(r.load.queue);
    const signature = JSON.stringify(r.senders.map((s) => [s.id, s.name, peers.get(s.id)?.color]));
    if (signature !== row.senders) {
      row.senders = signature;
      row.cells.senders.replaceChildren(...(r.senders.length ? r.senders.map(senderChip) : ["none"]));
    }
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] ?? null);
  });
  const senders = [...peers.values()].filter((p) => p.role === "sender" && p.leftAt === null)
    .map((p) => ({ id: p.id, name: displayName(p) }));
  const waiting = pool.waiting(senders);
  const waitEl = $("pool-waiting");
  const signature = JSON.stringify(waiting.map((s) => [s.id, s.name]));
  if (waitEl.dataset.signature !== signature) {
    waitEl.dataset.signature = signature;
    waitEl.replaceChildren(...(waiting.length ? ["Waiting for a receiver: ", ...waiting.map(senderChip)] : []));
  }
  waitEl.hidden = waiting.length === 0;
  const served = receivers.reduce((n, r) => n + r.senders.length, 0);
  setText($("pool-count"), receivers.length === 0 ? "" :
    `${receivers.length} receiver${receivers.length === 1 ? "" : "s"}, ${served} sender${served === 1 ? "" : "s"} served` +
    `${waiting.length ? `, ${waiting.length} waiting` : ""}`);
  $("no-pool").hidden = receivers.length > 0;
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
    if (peer.leftAt !== null && now - peer.leftAt > FORGET_LEFT_AFTER_MS) {
      peers.delete(id);
      switchMarks.forget(id);
    }
  }
  const marksBefore = switchMarks.marks.length;
  switchMarks.prune(now / 1000 - WINDOW_S);
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
  const marks = switchMarks.marks.map((m) => ({ t: m.t, label: m.point, color: peers.get(m.id)?.color ?? "#4b5563" }));
  for (const { spec, chart } of charts) {
    chart.update(timeline.times, shown.map((p) => ({
      id: p.id, label: displayName(p), color: p.color, values: timeline.column(p.id, spec.key),
    })), marks);
  }
  if (switchMarks.marks.length || marksBefore) renderSwitches(); // their "-12 s" moves on
  renderTable();
  renderPool();
}

/** After (re)joining, the ack's peer list is the truth: anyone else has left meanwhile. */
function onJoined(ack) {
  const present = new Set();
  for (const p of ack.peers ?? []) if (upsertPeer(p)) present.add(p.id);
  for (const [id, peer] of peers) if (!present.has(id) && peer.leftAt === null) markLeft(id);
  pool.retain(present);
  if (POOL && ack.pool !== true) {
    // a server (or signaling client) that does not know pools joined the room of that name
    setStatus(`joined room "${ROOM}", not pool "${ROOM}": the server did not confirm the pool`, "error");
  } else {
    setStatus("live", "ok");
    $("status").title = `Connected to ${WHERE} as a dashboard.`;
  }
  renderTable();
  renderPool();
}

/** Join as a dashboard (the one Socket.IO client of the pages: rtc/signaling.js); retried
 * until the server answers, then kept joined across reconnects by the client itself. */
async function connect() {
  const sig = new Signaling({ room: ROOM, role: "dashboard", name: "dashboard", pool: POOL });
  sig.on("joined", onJoined);
  sig.on("state", ({ state, detail }) => {
    if (state === "reconnecting") setStatus(`Disconnected (${detail}); reconnecting…`, "error");
    else if (state === "refused") setStatus(`The server refused to join ${WHERE}: ${detail || "no reason given"}.`, "error");
  });
  sig.on("peer-joined", (p) => { upsertPeer(p); renderTable(); });
  sig.on("peer-left", (p) => markLeft(p?.id));
  sig.on("stats", onStats);
  for (;;) {
    setStatus(`joining ${WHERE}…`, "info");
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

/** Carry the room (or the pool) along on every link to our pages. */
function roomLinks() {
  for (const a of document.querySelectorAll("a[data-room-link]")) {
    const url = new URL(a.getAttribute("href"), window.location.href);
    url.searchParams.set(POOL ? "pool" : "room", ROOM);
    a.href = url.pathname + url.search;
  }
}

function main() {
  $("room").textContent = ROOM;
  $("room-kind").textContent = POOL ? "pool" : "room";
  $("window-s").textContent = String(WINDOW_S);
  $("hint-cmd").textContent = `python sender.py --${POOL ? "pool" : "room"} ${ROOM}`;
  $("pool").hidden = !POOL;
  $("pool-name").textContent = ROOM;
  $("pool-cmd").textContent = `python -m receiver --pool ${ROOM}`;
  document.title = `SplitRTC dashboard · ${POOL ? "pool " : ""}${ROOM}`;
  if (!ROOM_RE.test(ROOM)) {
    setStatus(`Invalid ${POOL ? "pool" : "room"} "${ROOM}": use 1-64 of A-Z a-z 0-9 _ . -`, "error");
    document.querySelector("main").hidden = true;
    return;
  }
  roomLinks();
  buildCharts();
  renderTable();
  renderPool();
  setStatus("connecting…", "info");
  connect();
  tick();
  setInterval(tick, TICK_MS);
}

main();
