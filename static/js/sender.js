/**
 * sender.html: the camera side of SplitRTC in the browser, the twin of `python sender.py`.
 *
 * camera (getUserMedia) -> paced at 30 fps on a fixed grid (late frames dropped and counted,
 * never queued) -> drawImage into a 32x32 canvas -> [1,3,32,32] float32 -> head of the
 * chosen split in onnxruntime-web (one session per split, created once) -> the latent in
 * the wire format of docs/wire-format.md (frame.js, fragments <= 64 KiB) -> the receiver.
 * Replies, drops and errors settle each frame in the ledger exactly like sender/ledger.py.
 *
 * URL settings: ?room=&name=&receiver=&split=&camera=&fps=&frames=&autostart=1&debug=1
 * (&smoothing=low|medium|high|off &threads=N &maxBuffered=BYTES &ice=stun:...).
 * With debug=1 the page exposes `window.splitrtc` for tests.
 */
import { encodeFrame, encodeTensor } from './frame.js';
import { Ledger } from './ledger.js';
import { ModelError, ModelStore, configureOrt, describeOrt, loadManifest, ortInfo, splitOf } from './models.js';
import { Pacer } from './pacer.js';
import { BoundedMap, ROOM_RE, fmt, readSettings, setStatus, settingsLink } from './pageutil.js';
import { CanvasPreprocessor } from './preprocess.js';
import { renderProbs } from './probs.js';
import { PeerLink, StatsPublisher, iceServersFrom } from './rtcpeer.js';
import { Signaling } from './signaling.js';
import { ChannelCounter, humanBytes } from './stats.js';

const DEFAULTS = {
  room: 'demo', name: 'browser-sender', receiver: '', split: 'stage1', camera: '', fps: 30,
  frames: 0, autostart: false, debug: false, smoothing: 'low', threads: 0,
  maxBuffered: 256 * 1024, ice: '', drainTimeout: 5, connectTimeout: 30, keep: 1000,
};
const S = readSettings(location.search, DEFAULTS);
const $ = (id) => document.getElementById(id);
const statusEl = $('status');

/** Everything the page knows; `window.splitrtc` in debug mode. */
const state = {
  phase: 'loading', // loading | ready | connecting | streaming | draining | done | error
  error: '',
  manifest: null,
  store: null,
  ort: null,
  signaling: null,
  link: null,
  channel: null,
  receiver: null,
  ledger: null,
  publisher: null,
  stream: null,
  split: S.split,
  stopping: false,
  summary: null,
  records: [],
  inputs: new BoundedMap(S.keep), // seq -> input tensor (plain array), debug only
  headMs: [],
  sourceName: '',
  io: null, // our own count of the channel's messages and bytes (see stats.ChannelCounter)
};

function fail(err) {
  console.error(err);
  state.phase = 'error';
  state.error = err?.message ?? String(err);
  setStatus(statusEl, state.error, 'error');
  $('start').disabled = false;
  $('stop').disabled = true;
}

// ---------------------------------------------------------------------------------------
// Settings form and share link

function formValues() {
  return { room: $('room').value.trim(), name: $('name').value.trim(), receiver: $('receiver').value.trim(),
    split: $('split').value, camera: $('camera').value, fps: Number($('fps').value) || 30 };
}

function updateShareLink() {
  const v = formValues();
  const values = { ...v, frames: S.frames, smoothing: S.smoothing, threads: S.threads, autostart: true };
  const url = settingsLink(location.origin, location.pathname, values, { ...DEFAULTS, autostart: undefined });
  $('share').href = url;
  $('share').textContent = url;
}

function initForm() {
  $('room').value = S.room;
  $('name').value = S.name;
  $('receiver').value = S.receiver;
  $('fps').value = String(S.fps);
  $('room-label').textContent = S.room;
  $('settings').addEventListener('input', updateShareLink);
  $('settings').addEventListener('submit', (e) => { e.preventDefault(); start().catch(fail); });
  $('stop').addEventListener('click', () => { state.stopping = true; });
  $('split').addEventListener('change', () => {
    const id = $('split').value;
    // switching live: the head is loaded (once) before the next frame uses it
    state.store.head(id).then(() => { state.split = id; renderStatic(); }).catch(fail);
    updateShareLink();
  });
  $('camera').addEventListener('change', () => {
    updateShareLink();
    if (state.stream) openCamera($('camera').value).catch(fail);
  });
}

function fillSplits(manifest) {
  const sel = $('split');
  sel.textContent = '';
  for (const s of manifest.splits) {
    const o = document.createElement('option');
    o.value = s.id;
    o.textContent = `${s.id} (${s.shape.slice(1).join('×')}, ${humanBytes(s.bytes)})`;
    sel.append(o);
  }
  sel.value = manifest.splits.some((s) => s.id === S.split) ? S.split : manifest.splits[0].id;
}

// ---------------------------------------------------------------------------------------
// Camera

async function openCamera(wanted) {
  const video = $('video');
  const old = state.stream;
  const constraints = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
  let devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  let device = devices.find((d) => d.kind === 'videoinput' && wanted && (d.deviceId === wanted || d.label === wanted));
  if (wanted && !device && devices.some((d) => d.label)) {
    device = devices.find((d) => d.kind === 'videoinput' && d.label.toLowerCase().includes(wanted.toLowerCase()));
  }
  if (device) constraints.deviceId = { exact: device.deviceId };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: constraints, audio: false });
  } catch (e) {
    throw new Error(`no camera: ${e.name}: ${e.message}` +
      (window.isSecureContext ? '' : ' (cameras need https or http://localhost)'));
  }
  old?.getTracks().forEach((t) => t.stop());
  state.stream = stream;
  video.srcObject = stream;
  const track = stream.getVideoTracks()[0];
  state.sourceName = `camera:${track.label || 'camera'}`;
  track.addEventListener('ended', () => {
    if (state.phase === 'streaming') { state.error = 'the camera stopped'; state.stopping = true; }
  });
  await video.play().catch(() => {});
  if (video.readyState < 2) {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the camera gives no frames')), 10000);
      video.addEventListener('loadeddata', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  // labels are only readable after permission: list the cameras now
  devices = await navigator.mediaDevices.enumerateDevices();
  const sel = $('camera');
  const current = track.getSettings().deviceId ?? '';
  sel.textContent = '';
  for (const d of devices.filter((x) => x.kind === 'videoinput')) {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label || `camera ${sel.length + 1}`;
    sel.append(o);
  }
  sel.value = current;
}

// ---------------------------------------------------------------------------------------
// Connection

async function connect() {
  const v = formValues();
  if (!ROOM_RE.test(v.room)) throw new Error(`room "${v.room}" must match [A-Za-z0-9_.-]{1,64}`);
  if (!state.signaling || !state.signaling.connected || state.signaling.room !== v.room) {
    state.signaling?.close();
    const sig = new Signaling({ room: v.room, role: 'sender', name: v.name });
    sig.on('signal', onSignal);
    sig.on('peer-left', (p) => {
      if (state.receiver && p?.id === state.receiver.id && state.phase === 'streaming') {
        state.error = `receiver ${p.name || p.id} left the room`;
        state.stopping = true;
      }
    });
    sig.on('disconnect', (why) => { if (state.phase === 'streaming') setStatus(statusEl, `signaling lost (${why}); the data channel continues`, 'info'); });
    await sig.connect();
    state.signaling = sig;
  }
  setStatus(statusEl, `joined room ${v.room}; waiting for a receiver${v.receiver ? ` named ${v.receiver}` : ''}…`);
  const peer = await state.signaling.waitForPeer('receiver', v.receiver, S.connectTimeout * 1000);
  state.receiver = peer;
  const link = new PeerLink(state.signaling, peer.id, { iceServers: iceServersFrom(S.ice) });
  state.link = link;
  const dc = link.pc.createDataChannel('latent', { ordered: true });
  dc.binaryType = 'arraybuffer';
  state.io = new ChannelCounter('DC');
  dc.onmessage = (e) => { state.io.received(e.data); onReply(e); };
  state.channel = dc;
  link.pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed'].includes(link.pc.connectionState) && state.phase === 'streaming') {
      state.error = `connection ${link.pc.connectionState}`;
      state.stopping = true;
    }
  });
  const opened = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`data channel to receiver ${peer.name || peer.id} did not open ` +
      `within ${S.connectTimeout}s (connection ${link.pc.connectionState})`)), S.connectTimeout * 1000);
    dc.addEventListener('open', () => { clearTimeout(t); resolve(); }, { once: true });
  });
  await link.offer();
  setStatus(statusEl, `offered to receiver ${peer.name || peer.id}; connecting…`);
  await opened;
}

async function onSignal(msg) {
  const link = state.link;
  if (!link || msg?.from !== link.remoteId) {
    console.warn(`ignoring ${msg?.type} from ${msg?.from}: not our receiver`);
    return;
  }
  if (msg.type === 'answer') await link.accept(msg.sdp);
  else if (msg.type === 'candidate') await link.addCandidate(msg.candidate);
}

function onReply(ev) {
  const led = state.ledger;
  if (!led) return;
  let msg;
  try {
    if (typeof ev.data !== 'string') throw new Error('binary message from the receiver');
    msg = JSON.parse(ev.data);
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new Error('not a JSON object');
  } catch (e) {
    console.warn('unreadable message from receiver:', e.message);
    led.unmatched += 1;
    return;
  }
  // Not frame.js's parseMessage: it insists on every timing field, and a Python receiver
  // omits decode_ms; the accounting needs only type, seq and reason (as in ledger.py).
  const kind = led.onMessage(msg, performance.now());
  if (kind === 'reply') {
    $('label').textContent = led.lastLabel;
    if (Array.isArray(msg.probs)) renderProbs($('probs'), state.manifest.classes, msg.probs, msg.label);
  } else if (msg.type === 'error') {
    console.warn(`receiver refused seq ${msg.seq}: ${msg.reason} ${msg.detail ?? ''}`);
  }
}

// ---------------------------------------------------------------------------------------
// The real-time loop: no frame queue anywhere (see sender/stream.py)

async function streamLoop() {
  const fps = formValues().fps;
  const pacer = new Pacer(Math.min(fps, 60));
  const pre = new CanvasPreprocessor($('input'), { smoothing: S.smoothing });
  const video = $('video');
  const dc = state.channel;
  const led = state.ledger;
  let seq = 0;
  for (;;) {
    if (state.stopping) break;
    const slot = await pacer.wait();
    if (slot.skipped) led.onSkipped(slot.skipped);
    led.onCaptured();
    if (dc.readyState !== 'open') {
      state.error ||= `data channel closed (${state.link.pc.connectionState})`;
      led.dropBeforeSend('channel_closed');
      break;
    }
    if (dc.bufferedAmount > S.maxBuffered) {
      led.dropBeforeSend('backpressure');
      continue;
    }
    const split = state.split;
    const captureMs = performance.now();
    const input = pre.capture(video);
    const head = await state.store.head(split);
    const { data: latent, dims } = await head.run(input);
    state.headMs.push(head.lastMs);
    if (state.headMs.length > 600) state.headMs.shift();
    const s = seq >>> 0; // u32 on the wire, wrapping like Python's seq & 0xFFFFFFFF
    const messages = encodeFrame({ seq: s, captureMs, split, shape: dims }, encodeTensor(latent));
    if (S.debug) state.inputs.set(s, Array.from(input));
    led.onSent(s, captureMs, slot.index);
    for (const m of messages) { dc.send(m); state.io.sent(m); }
    seq += 1;
    if (S.frames && led.sent >= S.frames) break;
  }
}

async function drain() {
  const led = state.ledger;
  const deadline = performance.now() + S.drainTimeout * 1000;
  while (led.inFlight.size && performance.now() < deadline && state.channel?.readyState === 'open') {
    await new Promise((r) => setTimeout(r, 20));
  }
}

function appStats() {
  const led = state.ledger;
  if (!led) return { split: state.split };
  const [p50, p99] = led.percentiles(true);
  return {
    split: state.split, frames: led.sent, replies: led.replied,
    dropped: led.droppedSender.total() + led.droppedReceiver.total(),
    malformed: led.errors.total(), label: led.lastLabel,
    latency_p50_ms: p50, latency_p99_ms: p99, fps: led.fps(), source: state.sourceName,
    head_ms: median(state.headMs), browser: true,
  };
}

function median(a) {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
}

async function start() {
  if (['connecting', 'streaming', 'draining'].includes(state.phase)) return;
  $('start').disabled = true;
  state.stopping = false;
  state.error = '';
  state.summary = null;
  state.records = [];
  state.inputs.clear();
  state.headMs = [];
  state.split = $('split').value;
  state.phase = 'connecting';
  $('room-label').textContent = formValues().room;
  setStatus(statusEl, `loading the ${state.split} head…`);
  await state.store.head(state.split);
  state.ort = ortInfo();
  $('m-ort').textContent = describeOrt(state.ort);
  renderStatic();
  if (!state.stream) {
    setStatus(statusEl, 'opening the camera…');
    await openCamera($('camera').value || S.camera);
  }
  await connect();
  state.ledger = new Ledger(state.manifest.classes, {
    onRecord: S.debug ? (r) => { if (state.records.length < 100000) state.records.push(r); } : null,
  });
  const link = state.link;
  const io = state.io;
  state.publisher = new StatsPublisher(state.signaling, async () => {
    const entries = await link.report();
    if (!io.observe(entries)) entries.unshift(io.entry({ state: state.channel?.readyState ?? 'closed' }));
    return entries;
  }, appStats);
  state.publisher.start();
  state.phase = 'streaming';
  $('stop').disabled = false;
  setStatus(statusEl, `streaming to ${state.receiver.name || state.receiver.id}`, 'ok');
  try {
    await streamLoop();
  } finally {
    state.phase = 'draining';
    $('stop').disabled = true;
    await drain();
    await finish();
  }
}

async function finish() {
  const led = state.ledger;
  const final = await state.link.report().catch(() => []);
  if (!state.io.observe(final)) final.unshift(state.io.entry({ state: state.channel?.readyState ?? 'closed' }));
  const summary = { ...led.summary(), split: state.split, source: state.sourceName,
    receiver: state.receiver?.id ?? '', head_ms_p50: median(state.headMs) };
  for (const e of final) {
    if (e.type === 'data-channel') Object.assign(summary, { payload_bytes: e.bytesSent, messages: e.messagesSent });
    else if (e.type === 'transport') Object.assign(summary, { wire_bytes: e.bytesSent, wire_packets: e.packetsSent });
  }
  state.summary = summary;
  await state.publisher.publishOnce();
  state.publisher.stop();
  state.link.close();
  state.link = null;
  state.channel = null;
  render();
  state.phase = 'done';
  $('start').disabled = false;
  const text = `done: ${summary.frames_sent} sent, ${summary.replies} replied, ` +
    `${summary.in_flight_at_exit} unanswered; accounted: ${summary.accounted}`;
  setStatus(statusEl, state.error ? `${state.error}; ${text}` : text, state.error || !summary.accounted ? 'error' : 'ok');
}

// ---------------------------------------------------------------------------------------
// Display

function renderStatic() {
  const sp = state.manifest && splitOf(state.manifest, state.split);
  if (sp) {
    $('m-split').textContent = sp.id;
    $('m-latent').textContent = `[${sp.shape.join(', ')}] float32, ${humanBytes(sp.bytes)}`;
  }
}

function render() {
  const led = state.ledger;
  if (!led) return;
  const rates = state.publisher?.lastRates;
  const [p50, p99] = led.percentiles(true);
  $('m-fps').textContent = fmt(led.fps(), 1);
  $('m-payload').textContent = rates ? `${humanBytes(rates.payloadSentBps)}/s` : '–';
  $('m-wire').textContent = rates ? `${humanBytes(rates.wireSentBps)}/s` : '–';
  $('m-p50').textContent = p50 === null ? '–' : `${fmt(p50, 1)} ms`;
  $('m-p99').textContent = p99 === null ? '–' : `${fmt(p99, 1)} ms`;
  $('m-head').textContent = state.headMs.length ? `${fmt(median(state.headMs), 2)} ms` : '–';
  $('c-captured').textContent = led.captured;
  $('c-sent').textContent = led.sent;
  $('c-replied').textContent = led.replied;
  $('c-dropped-sender').textContent = describeCounter(led.droppedSender);
  $('c-dropped-receiver').textContent = describeCounter(led.droppedReceiver);
  $('c-errors').textContent = describeCounter(led.errors);
  $('c-inflight').textContent = led.inFlight.size;
  $('c-accounted').textContent = led.check() ? 'yes' : 'no';
}

function describeCounter(c) {
  const parts = Object.entries(c.toJSON()).map(([k, n]) => `${k} ${n}`);
  return parts.length ? `${c.total()} (${parts.join(', ')})` : '0';
}

// ---------------------------------------------------------------------------------------
// Test hooks (?debug=1)

if (S.debug) {
  window.splitrtc = {
    state,
    settings: S,
    /** Everything a test compares, JSON-ready. */
    snapshot() {
      return {
        phase: state.phase, error: state.error, summary: state.summary,
        ledger: state.ledger?.summary() ?? null, records: state.records,
        inputs: Object.fromEntries(state.inputs), headMs: state.headMs, ort: state.ort,
        crossOriginIsolated: window.crossOriginIsolated, app: appStats(),
        rates: state.publisher?.lastRates ?? null,
      };
    },
  };
}

async function main() {
  initForm();
  try {
    state.ort = configureOrt({ threads: S.threads });
    $('m-ort').textContent = describeOrt(state.ort);
    state.manifest = await loadManifest();
    state.store = new ModelStore(state.manifest, { onProgress: (t) => setStatus(statusEl, t) });
    fillSplits(state.manifest);
    updateShareLink();
    if (!state.manifest.splits.some((s) => s.id === S.split)) {
      throw new ModelError(`unknown split "${S.split}" in the link; this manifest has: ` +
        `${state.manifest.splits.map((s) => s.id).join(', ')}`);
    }
  } catch (e) {
    fail(e);
    return;
  }
  state.phase = 'ready';
  setStatus(statusEl, 'ready: choose a camera and a split, then Start', 'info');
  setInterval(render, 250);
  if (S.autostart) start().catch(fail);
}

main();
