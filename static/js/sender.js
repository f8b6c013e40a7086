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
 * split "adaptive" (`python sender.py --split adaptive`): split, codec and head chosen and
 * switched live (sender/switching.js, sender/adaptive.js; docs/adaptive.md) among the
 * operating points of models/operating_points.json within `maxDrop` accuracy points (and,
 * with `maxSsim`, measured leakage); every candidate head is loaded and profiled before the
 * run starts.
 *
 * URL settings: ?room=&name=&receiver=&split=&codec=&camera=&fps=&frames=&autostart=1&debug=1
 * (&smoothing=low|medium|high|off &threads=N &maxBuffered=BYTES &ice=stun:...
 * &connectTimeout=S &reconnectTimeout=S &drainTimeout=S &maxDrop=POINTS &maxSsim=SSIM).
 * With debug=1 the page exposes `window.splitrtc` for tests.
 */
import { StatsPublisher } from './rtc/stats.js';
import { ModelError, ModelStore, configureOrt, describeOrt, loadManifest, ortInfo, splitOf } from './runtime/models.js';
import { OperatingPoints } from './runtime/operating.js';
import { CanvasPreprocessor } from './runtime/preprocess.js';
import { Ledger } from './sender/ledger.js';
import { Pipeline } from './sender/pipeline.js';
import { SenderStream } from './sender/stream.js';
import { build as buildAdaptive } from './sender/switching.js';
import { formatNumber, humanBytes } from './ui/format.js';
import { BoundedMap, fail as showFailure, median, readSettings, setStatus, settingsLink, showSignaling } from './ui/page.js';
import { renderProbs } from './ui/probs.js';
import { parseCodec } from './wire/codecs.js';

const DEFAULTS = {
  room: 'demo', name: 'browser-sender', receiver: '', split: 'stage1', camera: '', fps: 30,
  codec: 'float32', frames: 0, autostart: false, debug: false, smoothing: 'low', threads: 0,
  maxBuffered: 256 * 1024, ice: '', drainTimeout: 5, connectTimeout: 30, reconnectTimeout: 60, keep: 1000,
  maxDrop: 1.0, maxSsim: '',
};
/** The split selector's choice that lets the controller choose (sender.py --split adaptive). */
const ADAPTIVE = 'adaptive';
const S = readSettings(location.search, DEFAULTS);
/** `maxSsim` as a limit, null for none (Python's --max-ssim default). */
const MAX_SSIM = S.maxSsim.trim() === '' ? null : Number(S.maxSsim);
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
  /** float32 and INT8 heads: {manifest, head(split, kind)} (the pipeline's and the profile's store) */
  heads: null,
  /** models/operating_points.json (OperatingPoints), null when the server has none */
  ops: null,
  /** @type {import('./sender/switching.js').Adaptive|null} the controller of an adaptive run */
  adaptive: null,
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
    split: $('split').value, camera: $('camera').value, fps: Number($('fps').value) || 30,
    maxDrop: S.maxDrop, maxSsim: S.maxSsim };
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
    updateShareLink();
    if (id === ADAPTIVE || state.adaptive) { // the controller's run and a fixed one start apart
      if (['connecting', 'streaming'].includes(state.phase)) {
        setStatus(statusEl, `split ${id} takes effect at the next Start`, 'info');
      }
      return;
    }
    // switching live: the head is loaded (once) before the next frame uses it
    state.store.head(id).then(() => { state.split = id; renderStatic(); }).catch(fail);
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
  const o = document.createElement('option');
  o.value = ADAPTIVE;
  o.textContent = `adaptive (split, codec and head chosen live, within ${S.maxDrop} accuracy points)`;
  sel.append(o);
  sel.value = S.split === ADAPTIVE || manifest.splits.some((s) => s.id === S.split) ? S.split : manifest.splits[0].id;
}

/**
 * The heads of every split, float32 and INT8, each loaded and checked once: runtime/models.js
 * stores over the manifest's `head` and (a second store) its `head_int8` entries.
 */
function headStore(manifest, store) {
  const int8 = new ModelStore({ ...manifest, splits: manifest.splits.map((s) => ({ ...s, head: s.head_int8 ?? null })) },
    { onProgress: (t) => setStatus(statusEl, t) });
  return {
    manifest,
    head(split, kind = 'float32') {
      if (kind === 'float32') return store.head(split);
      if (kind !== 'int8') return Promise.reject(new ModelError(`unknown head kind "${kind}" (float32 or int8)`));
      if (!splitOf(manifest, split).head_int8) {
        return Promise.reject(new ModelError(`the manifest has no INT8 head for split ${split}: ` +
          're-export the models (python -m training.export)'));
      }
      return int8.head(split);
    },
  };
}

/** The split, codec and head the next frame uses (the controller's in an adaptive run). */
function currentPoint() {
  if (state.adaptive) return state.adaptive.point;
  return { split: state.split, codec: S.codec, head: 'float32' };
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

/**
 * The stats the page publishes (Python's `SenderStream.app_stats`): the books, and for fixed
 * and adaptive runs alike the point in use (`split`, `codec`, `head`, `operating_point`) and
 * its measured `leakage` (models/operating_points.json; null: not measured); an adaptive run
 * adds `switches` and the controller's estimates (`adaptive`).
 */
function appStats() {
  const led = state.ledger;
  const p = currentPoint();
  let out = { split: p.split, codec: p.codec, head: p.head };
  if (led) {
    const [p50, p99] = led.percentiles(true);
    Object.assign(out, {
      frames: led.sent, replies: led.replied,
      dropped: led.droppedSender.total() + led.droppedReceiver.total(),
      malformed: led.errors.total(), lost: led.lost, label: led.lastLabel,
      latency_p50_ms: p50, latency_p99_ms: p99, fps: led.fps(), source: state.sourceName,
      head_ms: median(state.headMs), link: state.linkState, browser: true,
    });
  }
  if (state.adaptive) out = { ...out, ...state.adaptive.appStats() };
  out.operating_point = `${out.split}/${out.codec}/${out.head}`;
  const point = state.ops?.find(out.split, out.codec, out.head) ?? null;
  out.leakage = point?.leakage ? point.leakage.asDict() : null;
  return out;
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
  state.adaptive = null;
  const v = formValues();
  const adaptive = state.split === ADAPTIVE;
  if (adaptive && Number.isNaN(MAX_SSIM)) throw new Error(`maxSsim must be a number, not "${S.maxSsim}"`);
  if (!adaptive) parseCodec(S.codec, splitOf(state.manifest, state.split)?.calibration ?? null); // a wrong codec stops here
  state.conn ??= newLink();
  const link = state.conn;
  link.reset({ room: v.room, name: v.name, receiver: v.receiver, ice: S.ice, maxBuffered: S.maxBuffered,
    connectTimeoutS: S.connectTimeout, reconnectTimeoutS: S.reconnectTimeout, drainTimeoutS: S.drainTimeout });
  state.phase = 'connecting';
  $('room-label').textContent = v.room;
  if (adaptive) {
    // every candidate head loaded and profiled before the first frame, as sender.py does
    if (!state.ops) state.ops = await OperatingPoints.load();
    setStatus(statusEl, 'adaptive: loading and profiling the candidate heads…');
    const ctl = await buildAdaptive(state.manifest, state.ops, S.maxDrop, v.fps, { heads: state.heads,
      maxSsim: MAX_SSIM, onProgress: (t) => setStatus(statusEl, t) });
    console.info(`adaptive: ${ctl.controller.points.length} candidate points, starting at ${ctl.point.key}`);
    state.adaptive = ctl;
  } else {
    setStatus(statusEl, `loading the ${state.split} head…`);
    await state.store.head(state.split);
  }
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
  state.pipeline = new Pipeline(new CanvasPreprocessor($('input'), { smoothing: S.smoothing }), $('video'), state.heads,
    link.ledger, { split: () => state.split, codec: S.codec, frames: S.frames, fps: v.fps,
      onInput: S.debug ? (seq, input) => state.inputs.set(seq, Array.from(input)) : null });
  state.publisher = new StatsPublisher(link.signaling, () => link.report(), appStats);
  state.publisher.start();
  state.adaptive?.start(link, state.pipeline);
  state.phase = 'streaming';
  link.streaming = true;
  $('stop').disabled = false;
  setStatus(statusEl, link.describe(), 'ok');
  try {
    await state.pipeline.run(link);
  } finally {
    state.adaptive?.stop();
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
  const p = currentPoint();
  const summary = { ...led.summary(), split: p.split, codec: p.codec, head: p.head, source: state.sourceName,
    receiver: link.receiver?.id ?? '', head_ms_p50: median(state.headMs), outages,
    seconds_without_receiver: Math.round(link.outages.reduce((a, o) => a + ((o.end ?? now) - o.start), 0)) / 1000 };
  for (const e of final) {
    if (e.type === 'data-channel') Object.assign(summary, { payload_bytes: e.bytesSent, messages: e.messagesSent });
    else if (e.type === 'transport') Object.assign(summary, { wire_bytes: e.bytesSent, wire_packets: e.packetsSent });
  }
  // the channel's counters include ping/pong texts; these are the latent frames alone
  Object.assign(summary, { frame_bytes: state.pipeline.frameBytes, frame_messages: state.pipeline.frameMessages });
  if (state.adaptive) Object.assign(summary, { split: ADAPTIVE, codec: null, head: null }, state.adaptive.summary());
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
  const p = currentPoint();
  const sp = state.manifest && p.split !== ADAPTIVE && splitOf(state.manifest, p.split);
  if (sp) {
    $('m-split').textContent = sp.id;
    $('m-latent').textContent = `[${sp.shape.join(', ')}] float32, ${humanBytes(sp.bytes)}`;
  }
  $('m-point').textContent = p.split === ADAPTIVE ? 'adaptive (chosen at Start)' : `${p.split}/${p.codec}/${p.head}`;
  $('m-switches').textContent = state.adaptive ? String(state.adaptive.controller.switches) : '–';
}

function render() {
  const led = state.ledger;
  if (!led) return;
  if (state.adaptive) renderStatic(); // the point in use changes with each switch
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
        adaptive: state.adaptive?.summary() ?? null,
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
    state.heads = headStore(state.manifest, state.store);
    fillSplits(state.manifest);
    updateShareLink();
    // the leakage figure of the point in use, for the stats; a fixed split runs without them
    state.ops = await OperatingPoints.load().catch((e) => {
      console.info(`no leakage figures in the stats: ${e.message}`);
      return null;
    });
    if (S.split !== ADAPTIVE && !state.manifest.splits.some((s) => s.id === S.split)) {
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
