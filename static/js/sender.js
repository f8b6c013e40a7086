/**
 * sender.html: the camera side of SplitRTC in the browser, the twin of `python sender.py`.
 * Page wiring only: the per-frame path (camera -> paced at 30 fps on a fixed grid, late
 * frames dropped and counted, never queued -> 32x32 canvas -> [1,3,32,32] float32 -> head
 * of the chosen split in onnxruntime-web -> the latent in the wire format of
 * docs/wire-format.md -> the receiver) is sender/pipeline.js; the connection to a receiver,
 * its liveness and its replacement when lost is sender/stream.js; the books
 * sender/ledger.js (replies, drops and errors settle each frame exactly like
 * sender/ledger.py).
 *
 * URL settings: ?room=&name=&receiver=&split=&codec=&camera=&fps=&frames=&autostart=1&debug=1
 * (&smoothing=low|medium|high|off &threads=N &maxBuffered=BYTES &ice=stun:...
 * &connectTimeout=S &reconnectTimeout=S &drainTimeout=S).
 * With debug=1 the page exposes `window.splitrtc` for tests.
 */
import { StatsPublisher } from './rtc/stats.js';
import { ModelError, ModelStore, configureOrt, describeOrt, loadManifest, ortInfo, splitOf } from './runtime/models.js';
import { CanvasPreprocessor } from './runtime/preprocess.js';
import { Ledger } from './sender/ledger.js';
import { Pipeline } from './sender/pipeline.js';
import { SenderStream } from './sender/stream.js';
import { formatNumber, humanBytes } from './ui/format.js';
import { BoundedMap, fail as showFailure, median, readSettings, setStatus, settingsLink, showSignaling } from './ui/page.js';
import { renderProbs } from './ui/probs.js';
import { parseCodec } from './wire/codecs.js';

const DEFAULTS = {
  room: 'demo', name: 'browser-sender', receiver: '', split: 'stage1', camera: '', fps: 30,
  codec: 'float32', frames: 0, autostart: false, debug: false, smoothing: 'low', threads: 0,
  maxBuffered: 256 * 1024, ice: '', drainTimeout: 5, connectTimeout: 30, reconnectTimeout: 60, keep: 1000,
};
const S = readSettings(location.search, DEFAULTS);
const $ = (id) => document.getElementById(id);
const statusEl = $('status');

/**
 * Everything the page knows; `window.splitrtc` in debug mode. The connection's and the
 * pipeline's own fields are read through (receiver, outages, ledger, stopping...).
 */
const state = {
  phase: 'loading', // loading | ready | connecting | streaming | draining | done | error
  error: '',
  manifest: null,
  store: null,
  ort: null,
  /** @type {SenderStream|null} */
  conn: null,
  /** @type {Pipeline|null} */
  pipeline: null,
  publisher: null,
  stream: null, // the camera's MediaStream
  split: S.split,
  summary: null,
  records: [],
  inputs: new BoundedMap(S.keep), // seq -> input tensor (plain array), debug only
  sourceName: '',
  get ledger() { return this.conn?.ledger ?? null; },
  get signaling() { return this.conn?.signaling ?? null; },
  get receiver() { return this.conn?.receiver ?? null; },
  get channel() { return this.conn?.channel ?? null; },
  get linkState() { return this.conn?.linkState ?? 'closed'; },
  get outages() { return this.conn?.outages ?? []; },
  get headMs() { return this.pipeline?.headMs ?? []; },
  /** Set to end the run (the Stop button; tests too). */
  get stopping() { return this.conn?.stopping ?? false; },
  set stopping(v) { if (this.conn) this.conn.stopping = v; },
};

function fail(err) {
  showFailure(state, statusEl, err);
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
  const values = { ...v, codec: S.codec, frames: S.frames, smoothing: S.smoothing, threads: S.threads, autostart: true };
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
// A run: connect, stream through the pipeline until stopped or done, drain, summarise

function appStats() {
  const led = state.ledger;
  if (!led) return { split: state.split };
  const [p50, p99] = led.percentiles(true);
  return {
    split: state.split, frames: led.sent, replies: led.replied,
    dropped: led.droppedSender.total() + led.droppedReceiver.total(),
    malformed: led.errors.total(), lost: led.lost, label: led.lastLabel,
    latency_p50_ms: p50, latency_p99_ms: p99, fps: led.fps(), source: state.sourceName,
    head_ms: median(state.headMs), link: state.linkState, browser: true,
  };
}

/** A settled message from the receiver, for the display. */
function onReceiverMessage(kind, msg) {
  if (kind !== 'reply') return;
  $('label').textContent = state.ledger.lastLabel;
  renderProbs($('probs'), state.manifest.classes, msg.probs, msg.label);
}

function newLink() {
  const link = new SenderStream({}, {
    status: (text, kind) => {
      if (['connecting', 'streaming'].includes(state.phase)) setStatus(statusEl, text, kind);
    },
    message: onReceiverMessage,
    signaling: ({ state: st, detail }) => {
      if (state.phase === 'streaming') showSignaling(statusEl, st, detail, link.describe());
    },
  });
  return link;
}

async function start() {
  if (['connecting', 'streaming', 'draining'].includes(state.phase)) return;
  $('start').disabled = true;
  state.summary = null;
  state.records = [];
  state.inputs.clear();
  state.split = $('split').value;
  state.error = '';
  const v = formValues();
  parseCodec(S.codec, splitOf(state.manifest, state.split)?.calibration ?? null); // a wrong codec stops here
  state.conn ??= newLink();
  const link = state.conn;
  link.reset({ room: v.room, name: v.name, receiver: v.receiver, ice: S.ice, maxBuffered: S.maxBuffered,
    connectTimeoutS: S.connectTimeout, reconnectTimeoutS: S.reconnectTimeout, drainTimeoutS: S.drainTimeout });
  state.phase = 'connecting';
  $('room-label').textContent = v.room;
  setStatus(statusEl, `loading the ${state.split} head…`);
  await state.store.head(state.split);
  state.ort = ortInfo();
  $('m-ort').textContent = describeOrt(state.ort);
  renderStatic();
  if (!state.stream) {
    setStatus(statusEl, 'opening the camera…');
    await openCamera($('camera').value || S.camera);
  }
  await link.connect();
  link.ledger = new Ledger(state.manifest.classes, {
    onRecord: S.debug ? (r) => { if (state.records.length < 100000) state.records.push(r); } : null,
  });
  state.pipeline = new Pipeline(new CanvasPreprocessor($('input'), { smoothing: S.smoothing }), $('video'), state.store,
    link.ledger, { split: () => state.split, codec: S.codec, frames: S.frames, fps: v.fps,
      onInput: S.debug ? (seq, input) => state.inputs.set(seq, Array.from(input)) : null });
  state.publisher = new StatsPublisher(link.signaling, () => link.report(), appStats);
  state.publisher.start();
  state.phase = 'streaming';
  link.streaming = true;
  $('stop').disabled = false;
  setStatus(statusEl, link.describe(), 'ok');
  try {
    await state.pipeline.run(link);
  } finally {
    link.streaming = false;
    state.phase = 'draining';
    link.abortWait();
    $('stop').disabled = true;
    await link.drain();
    await finish();
  }
}

async function finish() {
  const link = state.conn;
  const led = link.ledger;
  const final = await link.report();
  const now = performance.now();
  const outages = link.outages.map((o) => ({ start_ms: Math.round(o.start), end_ms: o.end === null ? null : Math.round(o.end),
    cause: o.cause, receiver: o.receiver }));
  const summary = { ...led.summary(), split: state.split, codec: S.codec, source: state.sourceName,
    receiver: link.receiver?.id ?? '', head_ms_p50: median(state.headMs), outages,
    seconds_without_receiver: Math.round(link.outages.reduce((a, o) => a + ((o.end ?? now) - o.start), 0)) / 1000 };
  for (const e of final) {
    if (e.type === 'data-channel') Object.assign(summary, { payload_bytes: e.bytesSent, messages: e.messagesSent });
    else if (e.type === 'transport') Object.assign(summary, { wire_bytes: e.bytesSent, wire_packets: e.packetsSent });
  }
  // the channel's counters include ping/pong texts; these are the latent frames alone
  Object.assign(summary, { frame_bytes: state.pipeline.frameBytes, frame_messages: state.pipeline.frameMessages });
  state.summary = summary;
  state.error = link.error || state.error;
  await state.publisher.publishOnce();
  state.publisher.stop();
  link.close();
  render();
  state.phase = 'done';
  $('start').disabled = false;
  const text = `done: ${summary.frames_sent} sent, ${summary.replies} replied, ` +
    `${summary.in_flight_at_exit} unanswered, ${summary.lost} lost; accounted: ${summary.accounted}`;
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
  $('m-fps').textContent = formatNumber(led.fps(), 1);
  $('m-payload').textContent = rates ? `${humanBytes(rates.payloadSentBps)}/s` : '–';
  $('m-wire').textContent = rates ? `${humanBytes(rates.wireSentBps)}/s` : '–';
  $('m-p50').textContent = p50 === null ? '–' : `${formatNumber(p50, 1)} ms`;
  $('m-p99').textContent = p99 === null ? '–' : `${formatNumber(p99, 1)} ms`;
  $('m-head').textContent = state.headMs.length ? `${formatNumber(median(state.headMs), 2)} ms` : '–';
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
        rates: state.publisher?.lastRates ?? null, link: state.linkState, outages: state.outages,
        receiver: state.receiver, signaling: state.signaling?.state ?? 'closed', joins: state.signaling?.joins ?? 0,
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
