/**
 * receiver.html: the tail side of SplitRTC in the browser, the twin of `python -m receiver`.
 * Page wiring only: receiver/engine.js runs the tails, receiver/session.js serves one sender.
 *
 * Joins a room as "receiver" and answers offers from senders, one RTCPeerConnection and
 * one SenderSession each, within the bounds of receiver/limits.js (those of
 * `python -m receiver`): at most `max_sessions` sessions, `max_per_sender` per sender id
 * (a newer offer replaces the sender's oldest session), an offer whose data channel is not
 * open within `offer_timeout` s is torn down, and a sender that spends its malformed budget
 * is disconnected (logged once) and its offers refused for a while. A session ends when its
 * connection fails or closes, its channel closes, or its sender has been silent for 2 s
 * (ping/pong); a sender leaving signaling does not end it (its channel may still be open).
 * The page keeps the last counters of ended sessions. After a signaling server restart the
 * page rejoins the room under the same name (open sessions carry on meanwhile) and new
 * offers are answered again.
 *
 * URL settings: ?room=&name=&autostart=1&debug=1 (&threads=N &ice=stun:...), and the limits
 * &max_sessions=&max_per_sender=&offer_timeout=&peer_timeout= (s) &malformed_rate=&malformed_burst=.
 */
import { TailEngine } from './receiver/engine.js';
import { Admission, LIMITS, limitsFrom } from './receiver/limits.js';
import { RateLimitedLog } from './receiver/lograte.js';
import { SenderSession } from './receiver/session.js';
import { PeerLink, iceServersFrom } from './rtc/peer.js';
import { Signaling } from './rtc/signaling.js';
import { StatsPublisher } from './rtc/stats.js';
import { ModelStore, configureOrt, describeOrt, loadManifest, ortInfo } from './runtime/models.js';
import { formatNumber, humanBytes } from './ui/format.js';
import { BoundedMap, fail as showFailure, median, readSettings, setStatus, settingsLink, showSignaling } from './ui/page.js';
import { renderProbs } from './ui/probs.js';

const DEFAULTS = { room: 'demo', name: 'browser-receiver', autostart: false, debug: false, threads: 0,
  ice: '', keep: 5000, max_sessions: LIMITS.maxSessions, max_per_sender: LIMITS.maxPerSender,
  offer_timeout: LIMITS.offerTimeoutMs / 1000, peer_timeout: LIMITS.peerTimeoutMs / 1000,
  malformed_rate: LIMITS.malformedRate, malformed_burst: LIMITS.malformedBurst };
const S = readSettings(location.search, DEFAULTS);
const KEEP_CLOSED = LIMITS.keepClosed;
const $ = (id) => document.getElementById(id);
const statusEl = $('status');

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
  limits: LIMITS,
  /** @type {Admission|null} */
  admission: null,
  /** @type {RateLimitedLog|null} offers refused (full, banned, unanswerable), summarised */
  refused: null,
  /** @type {Map<string, {sender: string, link: PeerLink, session: SenderSession}>} session key -> its peer */
  peers: new Map(),
  closedReports: new Map(),
  closedSessions: new Map(),
  follow: null, // peer id whose label is shown (the latest reply's by default)
  /** @type {Map<string, BoundedMap>} sender id -> seq -> label (test hooks) */
  labels: new Map(),
};

function fail(err) {
  showFailure(state, statusEl, err);
  $('start').disabled = false;
}

function onReply(session, msg) {
  state.labels.get(session.key)?.set(msg.seq, msg.label);
  if (state.follow && state.follow !== session.key) return;
  $('label').textContent = msg.name;
  $('label-from').textContent = `from ${session.name || session.peerId}, ${msg.split}`;
  renderProbs($('probs'), state.manifest.classes, msg.probs, msg.label);
}

/** The newest open session of `sender` (candidates go there), or null. */
function newestOf(sender) {
  let found = null;
  for (const entry of state.peers.values()) if (entry.sender === sender) found = entry;
  return found;
}

async function onSignal(msg) {
  const from = msg?.from ?? '';
  if (msg?.type === 'offer') await answer(from, msg.sdp);
  else if (msg?.type === 'candidate' && newestOf(from)) await newestOf(from).link.addCandidate(msg.candidate);
  else state.refused?.event('unexpected', `ignoring ${msg?.type} from ${from} (no session)`);
}

async function answer(sender, sdp) {
  // admission, ending the replaced sessions and registering the new one happen with no await
  // in between, so concurrent offers cannot all pass the caps
  const { key, replace, refused } = state.admission.admit(sender, state.peers);
  for (const old of replace) dropPeer(old, 'sent a new offer');
  if (refused) {
    state.refused.event(refused.kind, refused.detail);
    return;
  }
  const peer = state.signaling.peers.get(sender);
  const link = new PeerLink(state.signaling, sender, { iceServers: iceServersFrom(S.ice) });
  const session = new SenderSession(sender, peer?.name ?? '', state.engine, {
    onReply, key, limits: state.limits,
    onClose: (why, { abuse }) => {
      if (abuse) state.admission.ban(sender);
      dropPeer(key, why);
    },
  });
  state.labels.set(key, new BoundedMap(S.keep)); // seq -> label, for the test hooks
  while (state.labels.size > KEEP_CLOSED + state.limits.maxSessions) state.labels.delete(state.labels.keys().next().value);
  state.peers.set(key, { sender, link, session });
  link.pc.ondatachannel = (e) => session.attach(e.channel);
  link.pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed'].includes(link.pc.connectionState)) dropPeer(key, link.pc.connectionState);
  });
  try {
    await link.answer(sdp);
  } catch (e) { // a garbage offer, or signaling gone: nothing to keep
    state.refused.event('bad_offer', `${sender}: cannot answer its offer: ${String(e?.message ?? e).slice(0, 200)}`);
    dropPeer(key, 'offer not answered', { quiet: true });
    return;
  }
  console.info(`peer ${key}: answered offer`);
}

/** Every ping interval: end the sessions whose offer never became an open channel. */
function tick() {
  const now = performance.now();
  for (const [key, { session }] of [...state.peers]) {
    const why = session.tick(now);
    if (why !== null) dropPeer(key, why);
  }
  state.refused?.tick();
}

async function dropPeer(key, why, { quiet = false } = {}) {
  const entry = state.peers.get(key);
  if (!entry) return;
  state.peers.delete(key);
  const { link, session } = entry;
  if (session.ended === null) session.ended = why;
  session.close(); // stops answering now; the connection closes once its counters are read
  // a closed connection's last counters stay in the report (state "closed"), as in Python;
  // the browser forgets a closed channel's entry, so its counters are our own count
  const last = await link.report({ prefix: `${key}:` }).catch(() => []);
  session.io.observe(last);
  state.closedReports.set(key, [session.io.entry({ state: 'closed' }), ...last.filter((e) => e.type !== 'data-channel')]);
  state.closedSessions.set(key, session);
  while (state.closedReports.size > KEEP_CLOSED) state.closedReports.delete(state.closedReports.keys().next().value);
  while (state.closedSessions.size > KEEP_CLOSED) state.closedSessions.delete(state.closedSessions.keys().next().value);
  if (!quiet) console.info(`peer ${key}: closing (${why})`, session.summary());
  link.close();
}

async function report() {
  const out = [...state.closedReports.values()].flat();
  for (const [key, { link, session }] of state.peers) {
    const entries = await link.report({ prefix: `${key}:` });
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

async function start() {
  if (['joining', 'serving'].includes(state.phase)) return;
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  const sig = new Signaling({ room, role: 'receiver', name }); // checks the room
  state.limits = limitsFrom({ maxSessions: S.max_sessions, maxPerSender: S.max_per_sender,
    offerTimeoutMs: S.offer_timeout * 1000, peerTimeoutMs: S.peer_timeout * 1000,
    malformedRate: S.malformed_rate, malformedBurst: S.malformed_burst });
  state.admission ??= new Admission(state.limits); // bans outlive a stop and start
  state.refused ??= new RateLimitedLog(console, 'offer refused', state.limits.logIntervalMs);
  $('start').disabled = true;
  state.phase = 'joining';
  state.error = '';
  $('room-label').textContent = room;
  sig.on('signal', onSignal);
  // a sender that left signaling may still be streaming (a server restart changes every
  // id): its session ends when its channel closes or it falls silent, not here
  sig.on('peer-left', (p) => {
    const n = [...state.peers.values()].filter((e) => e.sender === p?.id).length;
    if (n) console.info(`peer ${p.id} left signaling; its ${n} session(s) continue while it answers pings`);
  });
  sig.on('state', ({ state: st, detail }) => {
    if (state.phase === 'serving') showSignaling(statusEl, st, detail, `serving senders in room ${room} as ${name || sig.id}`);
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
  for (const key of [...state.peers.keys()]) await dropPeer(key, 'receiver stopped');
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
  $('m-messages').textContent = rates ? formatNumber(rates.messagesReceivedPs, 1) : '–';
  $('m-wire').textContent = rates ? `${humanBytes(rates.wireReceivedBps)}/s` : '–';
  $('m-messages-out').textContent = rates ? formatNumber(rates.messagesSentPs, 1) : '–';
  const tail = median(state.engine?.tailTimes() ?? []);
  $('m-tail').textContent = tail === null ? '–' : `${formatNumber(tail, 2)} ms`;
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
  return { name: s.name, sender: s.peerId, closed, ended: s.ended, counters: s.summary(),
    labels: Object.fromEntries(state.labels.get(id) ?? []), rttMs: s.liveness.rttMs };
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
        app: appStats(), rates: state.publisher?.lastRates ?? null, id: state.signaling?.id ?? '',
        signaling: state.signaling?.state ?? 'closed', joins: state.signaling?.joins ?? 0 };
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
  setInterval(tick, LIMITS.pingIntervalMs);
  if (S.autostart) start().catch(fail);
}

main();
