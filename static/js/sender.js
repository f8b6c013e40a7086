/**
 * sender.html: the camera side of SplitRTC in the browser, the twin of `python sender.py`.
 *
 * camera (getUserMedia) -> paced at 30 fps on a fixed grid (late frames dropped and counted,
 * never queued) -> drawImage into a 32x32 canvas -> [1,3,32,32] float32 -> head of the
 * chosen split in onnxruntime-web (one session per split, created once) -> the latent in
 * the wire format of docs/wire-format.md (frame.js, fragments <= 64 KiB) -> the receiver.
 * Replies, drops and errors settle each frame in the ledger exactly like sender/ledger.py.
 * Page wiring only: the wire format is wire/, the books sender/ledger.js, the pacing
 * sender/pacer.js, liveness rtc/liveness.js.
 *
 * A lost receiver (silent for 2 s, or its channel closed) does not end the run: frames in
 * flight are settled as lost, capturing goes on (frames dropped as "no_receiver"), and the
 * page offers on a fresh RTCPeerConnection to the next receiver in the room (same name when
 * one was asked for), for up to `reconnectTimeout` seconds. Signaling reconnects by itself.
 *
 * URL settings: ?room=&name=&receiver=&split=&camera=&fps=&frames=&autostart=1&debug=1
 * (&smoothing=low|medium|high|off &threads=N &maxBuffered=BYTES &ice=stun:...
 * &connectTimeout=S &reconnectTimeout=S &drainTimeout=S).
 * With debug=1 the page exposes `window.splitrtc` for tests.
 */
import { Liveness } from './rtc/liveness.js';
import { PeerLink, iceServersFrom } from './rtc/peer.js';
import { Signaling } from './rtc/signaling.js';
import { ChannelCounter, StatsPublisher } from './rtc/stats.js';
import { ModelError, ModelStore, configureOrt, describeOrt, loadManifest, ortInfo, splitOf } from './runtime/models.js';
import { CanvasPreprocessor } from './runtime/preprocess.js';
import { Ledger } from './sender/ledger.js';
import { Pacer } from './sender/pacer.js';
import { formatNumber, humanBytes } from './ui/format.js';
import { BoundedMap, fail as showFailure, median, readSettings, setStatus, settingsLink, showSignaling } from './ui/page.js';
import { renderProbs } from './ui/probs.js';
import { encodeTensor } from './wire/codecs.js';
import { encodeFrame } from './wire/frame.js';

const DEFAULTS = {
  room: 'demo', name: 'browser-sender', receiver: '', split: 'stage1', camera: '', fps: 30,
  frames: 0, autostart: false, debug: false, smoothing: 'low', threads: 0,
  maxBuffered: 256 * 1024, ice: '', drainTimeout: 5, connectTimeout: 30, reconnectTimeout: 60, keep: 1000,
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
  frameBytes: 0, // latent frame bytes and messages sent (the channel also carries ping/pong)
  frameMessages: 0,
  linkState: 'closed', // closed | waiting | connecting | open | lost
  outages: [], // {start, end, cause, receiver}: each time the receiver was lost
  reconnecting: false,
  abortWait: null,
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
// Connection: one RTCPeerConnection per receiver; a lost receiver is replaced by the next
// one that joins the room (a fresh connection: aiortc cannot restart ICE)

async function joinSignaling(room, name) {
  if (state.signaling?.connected && state.signaling.room === room) return state.signaling;
  state.signaling?.close();
  const sig = new Signaling({ room, role: 'sender', name }); // checks the room
  sig.on('signal', onSignal);
  // the receiver's Socket.IO id changes when signaling restarts, and a receiver that left
  // stops answering: liveness decides that the link is lost, not this event
  sig.on('peer-left', (p) => { if (p?.id === state.receiver?.id) console.info(`receiver ${p.name || p.id} left signaling`); });
  sig.on('state', ({ state: st, detail }) => {
    if (state.phase === 'streaming') showSignaling(statusEl, st, detail, describeLink());
  });
  await sig.connect();
  state.signaling = sig;
  return sig;
}

/** The status line's text for the link's state. */
function describeLink() {
  if (state.channel) return `streaming to ${state.receiver?.name || state.receiver?.id}`;
  const wanted = formValues().receiver;
  return `no receiver: waiting for a receiver${wanted ? ` named ${wanted}` : ''} in room ${formValues().room}…`;
}

/**
 * Find a receiver, offer to it and wait for the data channel to open; resolves when it is
 * open. `waitMs` bounds the wait for a receiver to join (0: no bound).
 */
async function connectOnce(waitMs) {
  const v = formValues();
  state.linkState = 'waiting';
  if (state.phase === 'streaming' || state.phase === 'connecting') setStatus(statusEl, describeLink(), 'info');
  const abort = new AbortController();
  state.abortWait = abort;
  const peer = await state.signaling.waitForPeer('receiver', v.receiver, waitMs, { signal: abort.signal });
  state.receiver = peer;
  state.linkState = 'connecting';
  const link = new PeerLink(state.signaling, peer.id, { iceServers: iceServersFrom(S.ice) });
  state.link = link;
  const dc = link.pc.createDataChannel('latent', { ordered: true });
  dc.binaryType = 'arraybuffer';
  const io = state.io ?? new ChannelCounter('DC'); // one count across connections, like the ledger
  state.io = io;
  const liveness = new Liveness({
    send: (text) => { if (dc.readyState === 'open') { dc.send(text); io.sent(text); } },
    onLost: (ms) => linkLost(link, `no message from the receiver for ${Math.round(ms)} ms`),
  });
  link.liveness = liveness;
  dc.onmessage = (e) => { io.received(e.data); liveness.heard(); onReceiverMessage(e.data, liveness); };
  dc.onclose = () => linkLost(link, 'data channel closed');
  link.pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed'].includes(link.pc.connectionState)) linkLost(link, `connection ${link.pc.connectionState}`);
  });
  const opened = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`data channel to receiver ${peer.name || peer.id} did not open ` +
      `within ${S.connectTimeout}s (connection ${link.pc.connectionState})`)), S.connectTimeout * 1000);
    dc.addEventListener('open', () => { clearTimeout(t); resolve(); }, { once: true });
  });
  try {
    await link.offer();
    setStatus(statusEl, `offered to receiver ${peer.name || peer.id}; connecting…`);
    await opened;
  } catch (e) {
    link.close();
    if (state.link === link) state.link = null;
    throw e;
  }
  state.channel = dc;
  state.linkState = 'open';
  liveness.start();
  const outage = state.outages.at(-1);
  if (outage && outage.end === null) {
    outage.end = performance.now();
    outage.receiver = peer.name || peer.id;
  }
  if (state.phase === 'streaming') setStatus(statusEl, describeLink(), 'ok');
}

/** The receiver is gone: every frame in flight is lost; a new receiver will be looked for. */
function linkLost(link, cause) {
  if (link.lostAt !== undefined) return;
  link.lostAt = performance.now();
  link.liveness?.stop();
  const dc = state.link === link ? state.channel : null;
  if (dc) { dc.onmessage = null; dc.onclose = null; }
  if (state.link !== link) { link.close(); return; }
  console.warn(`receiver ${state.receiver?.name || state.receiver?.id} lost: ${cause}`);
  state.ledger?.onConnectionLost();
  state.outages.push({ start: link.lostAt, end: null, cause, receiver: '', droppedBefore: state.ledger?.droppedSender.get('no_receiver') ?? 0 });
  state.channel = null;
  state.link = null;
  state.linkState = 'lost';
  link.close();
  if (state.phase === 'streaming') {
    setStatus(statusEl, `receiver lost (${cause}); ${describeLink()}`, 'error');
    reconnectLoop();
  }
}

/** Look for a receiver until one is connected, the stream stops, or the wait times out. */
async function reconnectLoop() {
  if (state.reconnecting) return;
  state.reconnecting = true;
  const deadline = performance.now() + S.reconnectTimeout * 1000;
  try {
    while (!state.stopping && state.channel === null) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no receiver came back within ${S.reconnectTimeout}s`);
      try {
        await connectOnce(left);
      } catch (e) {
        if (state.stopping) break;
        if (performance.now() >= deadline) throw e;
        console.warn('reconnecting to a receiver failed; trying again', e);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } catch (e) {
    state.error = e.message;
    state.stopping = true;
  } finally {
    state.reconnecting = false;
  }
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

/** A message from the receiver: settle a frame in the ledger, or answer liveness. */
function onReceiverMessage(data, liveness) {
  const led = state.ledger;
  if (typeof data !== 'string') {
    console.warn('binary message from the receiver: not one of ours');
    if (led) led.unmatched += 1;
    return;
  }
  if (!led) return;
  const { kind, msg, error } = led.onText(data, performance.now());
  if (msg && liveness.onMessage(msg)) return;
  if (kind === 'reply') {
    $('label').textContent = led.lastLabel;
    renderProbs($('probs'), state.manifest.classes, msg.probs, msg.label);
  } else if (kind === 'error') {
    console.warn(`receiver refused seq ${msg.seq}: ${msg.reason} ${msg.detail}`);
  } else if (error) {
    console.warn(`malformed message from the receiver (${kind}): ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------------
// The real-time loop: no frame queue anywhere (see sender/stream.py). Capturing goes on
// while no receiver is connected: those frames are dropped as "no_receiver".

async function streamLoop() {
  const fps = formValues().fps;
  const pacer = new Pacer(Math.min(fps, 60));
  const pre = new CanvasPreprocessor($('input'), { smoothing: S.smoothing });
  const video = $('video');
  const led = state.ledger;
  let seq = 0;
  for (;;) {
    if (state.stopping) break;
    const slot = await pacer.wait();
    if (slot.skipped) led.onSkipped(slot.skipped);
    led.onCaptured();
    const dc = state.channel;
    if (dc === null) {
      led.dropBeforeSend('no_receiver');
      continue;
    }
    if (dc.readyState !== 'open') {
      led.dropBeforeSend('channel_closed');
      if (state.link) linkLost(state.link, `data channel ${dc.readyState}`);
      continue;
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
    if (state.channel !== dc || dc.readyState !== 'open') { // lost while the head ran
      led.dropBeforeSend(state.channel === null ? 'no_receiver' : 'channel_closed');
      continue;
    }
    const s = seq >>> 0; // u32 on the wire, wrapping like Python's seq & 0xFFFFFFFF
    const messages = encodeFrame({ seq: s, captureMs, split, shape: dims }, encodeTensor(latent));
    if (S.debug) state.inputs.set(s, Array.from(input));
    led.onSent(s, captureMs, performance.now(), slot.index);
    for (const m of messages) { dc.send(m); state.io.sent(m); state.frameBytes += m.byteLength; }
    state.frameMessages += messages.length;
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
    malformed: led.errors.total(), lost: led.lost, label: led.lastLabel,
    latency_p50_ms: p50, latency_p99_ms: p99, fps: led.fps(), source: state.sourceName,
    head_ms: median(state.headMs), link: state.linkState, browser: true,
  };
}

async function start() {
  if (['connecting', 'streaming', 'draining'].includes(state.phase)) return;
  $('start').disabled = true;
  state.stopping = false;
  state.error = '';
  state.summary = null;
  state.records = [];
  state.outages = [];
  state.inputs.clear();
  state.headMs = [];
  state.io = null;
  state.frameBytes = 0;
  state.frameMessages = 0;
  state.split = $('split').value;
  state.phase = 'connecting';
  const v = formValues();
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
  await joinSignaling(v.room, v.name);
  setStatus(statusEl, describeLink());
  await connectOnce(S.connectTimeout * 1000);
  state.ledger = new Ledger(state.manifest.classes, {
    onRecord: S.debug ? (r) => { if (state.records.length < 100000) state.records.push(r); } : null,
  });
  state.publisher = new StatsPublisher(state.signaling, async () => {
    const link = state.link;
    const io = state.io;
    const entries = link ? await link.report() : [];
    if (!io.observe(entries)) entries.unshift(io.entry({ state: state.channel?.readyState ?? 'closed' }));
    return entries;
  }, appStats);
  state.publisher.start();
  state.phase = 'streaming';
  $('stop').disabled = false;
  setStatus(statusEl, describeLink(), 'ok');
  try {
    await streamLoop();
  } finally {
    state.phase = 'draining';
    state.abortWait?.abort();
    $('stop').disabled = true;
    await drain();
    await finish();
  }
}

async function finish() {
  const led = state.ledger;
  const link = state.link;
  const final = link ? await link.report().catch(() => []) : [];
  if (!state.io.observe(final)) final.unshift(state.io.entry({ state: state.channel?.readyState ?? 'closed' }));
  const now = performance.now();
  const outages = state.outages.map((o) => ({ start_ms: Math.round(o.start), end_ms: o.end === null ? null : Math.round(o.end),
    cause: o.cause, receiver: o.receiver }));
  const summary = { ...led.summary(), split: state.split, source: state.sourceName,
    receiver: state.receiver?.id ?? '', head_ms_p50: median(state.headMs), outages,
    seconds_without_receiver: Math.round(state.outages.reduce((a, o) => a + ((o.end ?? now) - o.start), 0)) / 1000 };
  for (const e of final) {
    if (e.type === 'data-channel') Object.assign(summary, { payload_bytes: e.bytesSent, messages: e.messagesSent });
    else if (e.type === 'transport') Object.assign(summary, { wire_bytes: e.bytesSent, wire_packets: e.packetsSent });
  }
  // the channel's counters include ping/pong texts; these are the latent frames alone
  Object.assign(summary, { frame_bytes: state.frameBytes, frame_messages: state.frameMessages });
  state.summary = summary;
  await state.publisher.publishOnce();
  state.publisher.stop();
  state.link?.liveness?.stop();
  state.link?.close();
  state.link = null;
  state.channel = null;
  state.linkState = 'closed';
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
