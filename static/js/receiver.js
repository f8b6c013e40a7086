/**
 * receiver.html: the tail side of SplitRTC in the browser, the twin of `python -m receiver`.
 *
 * Joins a room as "receiver" and answers offers from any number of senders, one
 * RTCPeerConnection each. Each sender's frames are reassembled with frame.js and decoded
 * with codecs.js (every codec of the wire format; compression zlib only, zstd is
 * answered with error bad_compression),
 * run through the split's tail in onnxruntime-web (sessions created once, at start-up, for
 * every split of the manifest) and answered with the JSON of receiver/session.py: a reply
 * with label, name, logits, probs and timing; a drop (stale / incomplete); or an error with
 * the decoder's code. At most one frame per sender waits for the tail: newest wins, the
 * older one is answered with drop "stale", so latency never builds up.
 *
 * URL settings: ?room=&name=&autostart=1&debug=1 (&threads=N &ice=stun:...).
 */
import { decodeLatent } from './codecs.js';
import { FrameError, Reassembler, decodeFrame } from './frame.js';
import { ModelStore, configureOrt, describeOrt, loadManifest, ortInfo } from './models.js';
import { argmax, softmax6 } from './numeric.js';
import { BoundedMap, ROOM_RE, fmt, readSettings, setStatus, settingsLink } from './pageutil.js';
import { renderProbs } from './probs.js';
import { PeerLink, StatsPublisher, iceServersFrom } from './rtcpeer.js';
import { Signaling } from './signaling.js';
import { ChannelCounter, humanBytes } from './stats.js';

const DEFAULTS = { room: 'demo', name: 'browser-receiver', autostart: false, debug: false, threads: 0,
  ice: '', keep: 5000 };
const S = readSettings(location.search, DEFAULTS);
const KEEP_CLOSED = 16;
const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const round3 = (v) => Math.round(v * 1000) / 1000;

// ---------------------------------------------------------------------------------------
// Tails: one session per split, all runs one after another (like receiver/engine.py's
// single worker thread: onnxruntime-web runs one inference at a time per page anyway).

class TailEngine {
  constructor(manifest, store) {
    this.manifest = manifest;
    this.store = store;
    this.tails = new Map();
    this._chain = Promise.resolve();
  }

  async load() {
    for (const s of this.manifest.splits) this.tails.set(s.id, await this.store.tail(s.id));
  }

  expectedShape(split) {
    return this.manifest.splits.find((s) => s.id === split)?.shape ?? null;
  }

  /** The split's per-channel int8 calibration from the manifest (int8-channel frames), or null. */
  channels(split) {
    return this.manifest.splits.find((s) => s.id === split)?.calibration?.int8_channel ?? null;
  }

  /** @returns {Promise<{label, logits, probs, tailMs, started}>} */
  infer(split, tensor) {
    const run = async () => {
      const started = performance.now();
      const { data } = await this.tails.get(split).run(tensor);
      const tailMs = performance.now() - started;
      const logits = Array.from(data);
      return { label: argmax(logits), logits, probs: softmax6(logits), tailMs, started };
    };
    const p = this._chain.then(run);
    this._chain = p.catch(() => {});
    return p;
  }

  tailTimes() {
    return [...this.tails.values()].flatMap((r) => r.times);
  }
}

// ---------------------------------------------------------------------------------------
// One sender's session (receiver/session.py)

class SenderSession {
  constructor(peerId, name, engine) {
    this.peerId = peerId;
    this.name = name;
    this.engine = engine;
    this.channel = null;
    this.counters = { messages: 0, frames: 0, inferred: 0, replied: 0, dropped_stale: 0,
      dropped_incomplete: 0, malformed: 0 };
    this.lastLabel = '';
    this.lastSplit = '';
    this.lastReply = null;
    this.labels = new BoundedMap(S.keep); // seq -> label, for the test hooks
    this.io = new ChannelCounter(`${peerId}:DC`); // survives the channel's getStats entry
    this.closed = false;
    this._reasm = new Reassembler();
    this._pending = null;
    this._busy = false;
    this._decoding = Promise.resolve(); // frames decode one after another: order is kept
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.onmessage = (e) => { this.io.received(e.data); this.onMessage(e.data); };
    channel.onclose = () => this.onClose?.();
  }

  onMessage(data) {
    const received = performance.now();
    this.counters.messages += 1;
    if (typeof data === 'string') {
      this._refuse(new FrameError('bad_type', 'text message where a binary latent frame was expected'));
      return;
    }
    let res;
    try {
      const { header, payload } = decodeFrame(data);
      res = this._reasm.push(header, payload);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this._abandon(err.abandoned);
      this._refuse(err);
      return;
    }
    this._abandon(res.abandoned);
    if (res.frame) {
      const { header, payload } = res.frame;
      this._decoding = this._decoding.then(() => this._accept(header, payload, received))
        .catch((e) => console.error(`peer ${this.peerId}: frame ${header.seq} failed`, e));
    }
  }

  _abandon(h) {
    if (!h) return;
    this.counters.dropped_incomplete += 1;
    this._send({ type: 'drop', seq: h.seq, capture_ms: h.captureMs, reason: 'incomplete' });
  }

  async _accept(h, payload, received) {
    if (this.closed) return;
    const expected = this.engine.expectedShape(h.split);
    let tensor;
    try {
      if (expected === null) {
        throw new FrameError('unknown_split', `split "${h.split}" is not in this receiver's manifest ` +
          `(${this.engine.manifest.splits.map((s) => s.id).join(', ')})`, h.seq);
      }
      if (h.shape.join(',') !== expected.join(',')) {
        throw new FrameError('shape_mismatch', `split ${h.split} takes [${expected}], frame has [${h.shape}]`, h.seq);
      }
      tensor = await decodeLatent(h, payload, { channels: this.engine.channels(h.split) });
    } catch (err) {
      // a calibration the codec refuses (TypeError/RangeError) is a parameter problem too
      this._refuse(err instanceof FrameError ? err : new FrameError('bad_params', err.message, h.seq));
      return;
    }
    this.counters.frames += 1;
    if (this._pending !== null) { // newest wins: the waiting frame is answered, not queued
      const old = this._pending.header;
      this.counters.dropped_stale += 1;
      this._send({ type: 'drop', seq: old.seq, capture_ms: old.captureMs, reason: 'stale' });
    }
    this._pending = { header: h, tensor, received, decodeMs: performance.now() - received };
    if (!this._busy) this._run();
  }

  async _run() {
    this._busy = true;
    try {
      while (this._pending !== null && !this.closed) {
        const job = this._pending;
        this._pending = null;
        let r;
        try {
          r = await this.engine.infer(job.header.split, job.tensor);
        } catch (e) {
          console.error(`peer ${this.peerId}: tail failed on seq ${job.header.seq}`, e);
          this._send({ type: 'error', seq: job.header.seq, reason: 'tail_failed', detail: String(e?.message ?? e) });
          continue;
        }
        this.counters.inferred += 1;
        this._reply(job, r);
      }
    } finally {
      this._busy = false;
    }
  }

  _reply(job, r) {
    const h = job.header;
    const name = this.engine.manifest.classes[r.label];
    this.lastLabel = name;
    this.lastSplit = h.split;
    const now = performance.now();
    const msg = { type: 'reply', seq: h.seq, capture_ms: h.captureMs, split: h.split, label: r.label, name,
      logits: r.logits, probs: r.probs,
      timing: { decode_ms: round3(job.decodeMs), queue_ms: round3(r.started - job.received),
        tail_ms: round3(r.tailMs), total_ms: round3(now - job.received) } };
    this.lastReply = msg;
    this.labels.set(h.seq, r.label);
    this._send(msg);
    this.counters.replied += 1;
    onReply(this, msg);
  }

  _refuse(err) {
    this.counters.malformed += 1;
    console.warn(`peer ${this.peerId}: malformed message (seq ${err.seq}): ${err.message}`);
    this._send({ type: 'error', seq: err.seq, reason: err.code, detail: err.detail });
  }

  _send(msg) {
    const ch = this.channel;
    if (!ch || ch.readyState !== 'open') return;
    const finite = (a) => !a || a.every(Number.isFinite);
    if (msg.type === 'reply' && !(finite(msg.logits) && finite(msg.probs))) {
      // JSON would turn NaN into null; a non-finite logit is a model bug: say so instead
      console.error(`peer ${this.peerId}: non-finite value in reply to seq ${msg.seq}`);
      msg = { type: 'error', seq: msg.seq, reason: 'tail_failed', detail: 'non-finite output' };
    }
    const text = JSON.stringify(msg);
    ch.send(text);
    this.io.sent(text);
  }

  summary() { return { ...this.counters }; }

  close() {
    this.closed = true;
    this._pending = null;
  }
}

// ---------------------------------------------------------------------------------------
// The page: signaling, one PeerLink + SenderSession per sender, stats

const state = {
  phase: 'loading', // loading | ready | joining | serving | stopped | error
  error: '',
  manifest: null,
  engine: null,
  ort: null,
  signaling: null,
  publisher: null,
  /** @type {Map<string, {link: PeerLink, session: SenderSession}>} */
  peers: new Map(),
  closedReports: new Map(),
  closedSessions: new Map(),
  follow: null, // peer id whose label is shown (the latest reply's by default)
};

function fail(err) {
  console.error(err);
  state.phase = 'error';
  state.error = err?.message ?? String(err);
  setStatus(statusEl, state.error, 'error');
  $('start').disabled = false;
}

function onReply(session, msg) {
  if (state.follow && state.follow !== session.peerId) return;
  $('label').textContent = msg.name;
  $('label-from').textContent = `from ${session.name || session.peerId}, ${msg.split}`;
  renderProbs($('probs'), state.manifest.classes, msg.probs, msg.label);
}

async function onSignal(msg) {
  const from = msg?.from ?? '';
  if (msg?.type === 'offer') await answer(from, msg.sdp);
  else if (msg?.type === 'candidate' && state.peers.has(from)) await state.peers.get(from).link.addCandidate(msg.candidate);
  else console.warn(`ignoring ${msg?.type} from ${from} (no session)`);
}

async function answer(sender, sdp) {
  if (state.peers.has(sender)) await dropPeer(sender, 'sent a new offer');
  const peer = state.signaling.peers.get(sender);
  const link = new PeerLink(state.signaling, sender, { iceServers: iceServersFrom(S.ice) });
  const session = new SenderSession(sender, peer?.name ?? '', state.engine);
  state.peers.set(sender, { link, session });
  link.pc.ondatachannel = (e) => session.attach(e.channel);
  session.onClose = () => dropPeer(sender, 'data channel closed');
  link.pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed'].includes(link.pc.connectionState)) dropPeer(sender, link.pc.connectionState);
  });
  await link.answer(sdp);
  console.info(`peer ${sender}: answered offer`);
}

async function dropPeer(sender, why) {
  const entry = state.peers.get(sender);
  if (!entry) return;
  state.peers.delete(sender);
  const { link, session } = entry;
  // a closed connection's last counters stay in the report (state "closed"), as in Python;
  // the browser forgets a closed channel's entry, so its counters are our own count
  const last = await link.report({ prefix: `${sender}:` }).catch(() => []);
  session.io.observe(last);
  state.closedReports.set(sender, [session.io.entry({ state: 'closed' }), ...last.filter((e) => e.type !== 'data-channel')]);
  state.closedSessions.set(sender, session);
  while (state.closedReports.size > KEEP_CLOSED) state.closedReports.delete(state.closedReports.keys().next().value);
  while (state.closedSessions.size > KEEP_CLOSED) state.closedSessions.delete(state.closedSessions.keys().next().value);
  console.info(`peer ${sender}: closing (${why})`, session.summary());
  session.close();
  link.close();
}

async function report() {
  const out = [...state.closedReports.values()].flat();
  for (const [sender, { link, session }] of state.peers) {
    const entries = await link.report({ prefix: `${sender}:` });
    if (!session.io.observe(entries) && session.channel) entries.unshift(session.io.entry({ state: session.channel.readyState }));
    out.push(...entries);
  }
  return out;
}

function appStats() {
  const sessions = [...state.peers.values()].map((p) => p.session);
  const total = {};
  for (const k of ['frames', 'inferred', 'replied', 'dropped_stale', 'dropped_incomplete', 'malformed']) {
    total[k] = sessions.reduce((a, s) => a + s.counters[k], 0);
  }
  const last = [...sessions].reverse().find((s) => s.lastLabel);
  return { senders: sessions.length, ...total, dropped: total.dropped_stale + total.dropped_incomplete,
    label: last?.lastLabel ?? '', split: last?.lastSplit ?? '', tail_ms: median(state.engine?.tailTimes() ?? []),
    browser: true };
}

function median(a) {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
}

async function start() {
  if (['joining', 'serving'].includes(state.phase)) return;
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (!ROOM_RE.test(room)) throw new Error(`room "${room}" must match [A-Za-z0-9_.-]{1,64}`);
  $('start').disabled = true;
  state.phase = 'joining';
  state.error = '';
  $('room-label').textContent = room;
  const sig = new Signaling({ room, role: 'receiver', name });
  sig.on('signal', onSignal);
  sig.on('peer-left', (p) => { if (state.peers.has(p?.id)) dropPeer(p.id, 'left the room'); });
  sig.on('disconnect', (why) => {
    if (state.phase === 'serving') setStatus(statusEl, `signaling lost (${why}); open connections continue`, 'error');
  });
  await sig.connect();
  state.signaling = sig;
  state.publisher = new StatsPublisher(sig, report, appStats);
  state.publisher.start();
  state.phase = 'serving';
  $('stop').disabled = false;
  setStatus(statusEl, `ready: serving senders in room ${room} as ${name || sig.id}`, 'ok');
}

async function stop() {
  $('stop').disabled = true;
  for (const sender of [...state.peers.keys()]) await dropPeer(sender, 'receiver stopped');
  await state.publisher?.publishOnce();
  state.publisher?.stop();
  state.signaling?.close();
  state.phase = 'stopped';
  $('start').disabled = false;
  setStatus(statusEl, 'stopped', 'info');
}

// ---------------------------------------------------------------------------------------
// Display

function render() {
  const rates = state.publisher?.lastRates;
  $('m-payload').textContent = rates ? `${humanBytes(rates.payloadReceivedBps)}/s` : '–';
  $('m-messages').textContent = rates ? fmt(rates.messagesReceivedPs, 1) : '–';
  $('m-wire').textContent = rates ? `${humanBytes(rates.wireReceivedBps)}/s` : '–';
  $('m-messages-out').textContent = rates ? fmt(rates.messagesSentPs, 1) : '–';
  const tail = median(state.engine?.tailTimes() ?? []);
  $('m-tail').textContent = tail === null ? '–' : `${fmt(tail, 2)} ms`;
  $('m-senders').textContent = state.peers.size;
  const rows = [...state.peers.entries()].map(([id, { link, session }]) => [id, session, link.pc.connectionState]);
  for (const [id, session] of state.closedSessions) rows.push([id, session, 'closed']);
  const body = $('sender-rows');
  body.textContent = '';
  for (const [id, s, st] of rows) {
    const tr = document.createElement('tr');
    if (st === 'closed') tr.className = 'left';
    const c = s.counters;
    for (const [v, cls] of [[s.name || '–', 'name'], [id.slice(0, 8), 'id'], [st, 'state'], [s.lastSplit || '–', ''],
      [c.messages, 'num'], [c.frames, 'num'], [c.replied, 'num'], [c.dropped_stale, 'num'],
      [c.dropped_incomplete, 'num'], [c.malformed, 'num'], [s.lastLabel || '–', 'label']]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      if (cls) td.className = cls;
      tr.append(td);
    }
    tr.title = 'click to show only this sender\'s labels';
    tr.addEventListener('click', () => { state.follow = state.follow === id ? null : id; });
    body.append(tr);
  }
  $('no-senders').hidden = rows.length > 0;
}

function updateShareLink() {
  const values = { room: $('room').value.trim(), name: $('name').value.trim(), autostart: true };
  const url = settingsLink(location.origin, location.pathname, values, { ...DEFAULTS, autostart: undefined });
  $('share').href = url;
  $('share').textContent = url;
}

// ---------------------------------------------------------------------------------------
// Test hooks (?debug=1)

function sessionSnapshot(id, s, closed) {
  return { name: s.name, closed, counters: s.summary(), labels: Object.fromEntries(s.labels) };
}

if (S.debug) {
  window.splitrtc = {
    state,
    settings: S,
    snapshot() {
      const sessions = {};
      for (const [id, s] of state.closedSessions) sessions[id] = sessionSnapshot(id, s, true);
      for (const [id, { session }] of state.peers) sessions[id] = sessionSnapshot(id, session, false);
      return { phase: state.phase, error: state.error, sessions, ort: state.ort,
        crossOriginIsolated: window.crossOriginIsolated, tailMs: state.engine?.tailTimes() ?? [],
        app: appStats(), rates: state.publisher?.lastRates ?? null, id: state.signaling?.id ?? '' };
    },
  };
}

async function main() {
  $('room').value = S.room;
  $('name').value = S.name;
  $('room-label').textContent = S.room;
  $('settings').addEventListener('input', updateShareLink);
  $('settings').addEventListener('submit', (e) => { e.preventDefault(); start().catch(fail); });
  $('stop').addEventListener('click', () => { stop().catch(fail); });
  updateShareLink();
  $('start').disabled = true;
  try {
    state.ort = configureOrt({ threads: S.threads });
    $('m-ort').textContent = describeOrt(state.ort);
    state.manifest = await loadManifest();
    const store = new ModelStore(state.manifest, { onProgress: (t) => setStatus(statusEl, t) });
    state.engine = new TailEngine(state.manifest, store);
    // every tail once, before joining: a wrong file stops here, before any sender connects
    await state.engine.load();
    state.ort = ortInfo();
    $('m-ort').textContent = describeOrt(state.ort);
  } catch (e) {
    fail(e);
    $('start').disabled = true;
    return;
  }
  state.phase = 'ready';
  $('start').disabled = false;
  setStatus(statusEl, `tails loaded (${state.manifest.splits.map((s) => s.id).join(', ')}); press Start to join`, 'info');
  setInterval(render, 500);
  if (S.autostart) start().catch(fail);
}

main();
