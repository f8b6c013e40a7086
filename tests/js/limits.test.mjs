// The receiver page's bounds (static/js/receiver/limits.js, lograte.js and their use in
// receiver/session.js), twins of receiver/limits.py, receiver/lograte.py and the admission
// rules of receiver/service.py, with a hand-driven clock.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Admission, LIMITS, MalformedBudget, limitsFrom, offerVerdict } from '../../static/js/receiver/limits.js';
import { MAX_KINDS, MAX_SHOWN, RateLimitedLog } from '../../static/js/receiver/lograte.js';
import { TailEngine } from '../../static/js/receiver/engine.js';
import { SenderSession } from '../../static/js/receiver/session.js';
import { parse } from '../../static/js/wire/messages.js';

const clockAt = (t = 0) => { const c = () => c.t; c.t = t; return c; };
const sessions = (...pairs) => pairs.map(([key, sender]) => [key, { sender }]);

test('defaults are python -m receiver\'s (receiver/limits.py), in ms', () => {
  assert.equal(LIMITS.maxSessions, 64);
  assert.equal(LIMITS.maxPerSender, 1);
  assert.equal(LIMITS.offerTimeoutMs, 10_000);
  assert.equal(LIMITS.peerTimeoutMs, 2_000);
  assert.equal(LIMITS.pingIntervalMs, 500);
  assert.equal(LIMITS.malformedRate, 20);
  assert.equal(LIMITS.malformedBurst, 200);
  assert.equal(LIMITS.maxBuffered, 1 << 20);
  assert.equal(LIMITS.banMs, 30_000);
  assert.ok(Object.isFrozen(LIMITS));
});

test('limitsFrom overrides known limits and refuses nonsense', () => {
  const l = limitsFrom({ maxSessions: 3, offerTimeoutMs: 500 });
  assert.equal(l.maxSessions, 3);
  assert.equal(l.offerTimeoutMs, 500);
  assert.equal(l.maxPerSender, 1);
  assert.throws(() => limitsFrom({ maxSesions: 3 }), /unknown limit/);
  assert.throws(() => limitsFrom({ maxSessions: 0 }), /integer >= 1/);
  assert.throws(() => limitsFrom({ maxPerSender: 1.5 }), /integer >= 1/);
  assert.throws(() => limitsFrom({ offerTimeoutMs: NaN }), /finite/);
  assert.throws(() => limitsFrom({ malformedRate: -1 }), />= 0/);
});

test('MalformedBudget: a burst at once, then the rate, never more than the burst saved up', () => {
  const clock = clockAt(1000);
  const b = new MalformedBudget(20, 200, clock);
  for (let i = 0; i < 200; i++) assert.ok(b.spend(), `burst token ${i}`);
  assert.equal(b.spend(), false, 'the 201st at once is over budget');
  clock.t += 50; // 1 token at 20/s
  assert.ok(b.spend());
  assert.equal(b.spend(), false);
  clock.t += 1_000_000; // a long quiet time refills to the burst, not beyond
  let n = 0;
  while (b.spend()) n++;
  assert.equal(n, 200);
  // a steady 20/s is sustainable forever
  const steady = new MalformedBudget(20, 200, clock);
  for (let i = 0; i < 1000; i++) { clock.t += 50; assert.ok(steady.spend(), `steady ${i}`); }
  // 40/s is not: the burst lasts about 200 / (40 - 20) = 10 s
  const fast = new MalformedBudget(20, 200, clock);
  let sent = 0;
  while (fast.spend()) { clock.t += 25; sent++; }
  assert.ok(sent > 390 && sent < 410, `40/s lasted ${sent} messages`);
});

test('offerVerdict: an offer not open within offerTimeoutMs is torn down, an open one never', () => {
  assert.equal(offerVerdict(0, false, 10_000), null);
  assert.match(offerVerdict(0, false, 10_001), /no data channel within 10 s of the offer/);
  assert.equal(offerVerdict(0, true, 1e9), null);
  assert.match(offerVerdict(0, false, 600, limitsFrom({ offerTimeoutMs: 500 })), /within 0.5 s/);
});

test('Admission: the newest offer from a sender replaces its oldest session', () => {
  const a = new Admission(LIMITS, clockAt());
  assert.deepEqual(a.admit('s1', []), { key: 's1', replace: [], refused: null });
  assert.deepEqual(a.admit('s1', sessions(['s1', 's1'], ['s2', 's2'])), { key: 's1', replace: ['s1'], refused: null });
  const two = new Admission(limitsFrom({ maxPerSender: 2 }), clockAt());
  const r = two.admit('s1', sessions(['s1', 's1']));
  assert.deepEqual(r.replace, []);
  assert.match(r.key, /^s1\.\d+$/, 'a second session of the same sender gets its own key');
  assert.deepEqual(two.admit('s1', sessions(['s1', 's1'], ['x', 'x'], [r.key, 's1'])).replace, ['s1'], 'oldest first');
});

test('Admission: the total cap refuses, after the sender\'s own sessions made room', () => {
  const a = new Admission(limitsFrom({ maxSessions: 2 }), clockAt());
  const full = sessions(['a', 'a'], ['b', 'b']);
  const r = a.admit('c', full);
  assert.equal(r.key, null);
  assert.equal(r.refused.kind, 'full');
  assert.match(r.refused.detail, /already serving 2 sessions \(max 2\)/);
  assert.deepEqual(a.admit('a', full), { key: 'a', replace: ['a'], refused: null }, 'a re-offer is not refused');
});

test('Admission: a banned sender is refused for banMs, then admitted; bans are bounded', () => {
  const clock = clockAt(0);
  const a = new Admission(limitsFrom({ maxSessions: 2, banMs: 30_000 }), clock);
  a.ban('evil');
  clock.t = 29_000;
  const r = a.admit('evil', []);
  assert.equal(r.refused.kind, 'banned');
  assert.match(r.refused.detail, /refused for 1 s more/);
  assert.equal(a.admit('good', []).key, 'good');
  clock.t = 30_001;
  assert.equal(a.admit('evil', []).key, 'evil');
  assert.equal(a.banned.size, 0);
  for (let i = 0; i < 100; i++) a.ban(`s${i}`);
  assert.equal(a.banned.size, 8, '4 x maxSessions bans kept, the newest');
  assert.ok(a.banned.has('s99') && !a.banned.has('s91'));
  const never = new Admission(limitsFrom({ banMs: 0 }), clock);
  never.ban('x');
  assert.equal(never.admit('x', []).key, 'x');
});

function collectingLog() {
  const lines = [];
  return { lines, warn: (t) => lines.push(t), info: (t) => lines.push(t) };
}

test('RateLimitedLog: first of each kind in full, the rest counted, one summary per interval', () => {
  const clock = clockAt(0);
  const log = collectingLog();
  const r = new RateLimitedLog(log, 'peer p: malformed message', 5000, clock);
  for (let i = 0; i < 10_000; i++) r.event(i % 2 ? 'bad_magic' : 'truncated', `seq ${i}: detail`);
  assert.deepEqual(log.lines, ['peer p: malformed message: seq 0: detail', 'peer p: malformed message: seq 1: detail']);
  r.tick();
  assert.equal(log.lines.length, 2, 'nothing before the interval is over');
  clock.t = 5000;
  r.tick();
  assert.equal(log.lines.length, 3);
  assert.match(log.lines[2], /^peer p: malformed message: 9998 more in the last 5\.0 s \((truncated|bad_magic) 4999, (truncated|bad_magic) 4999\)$/);
  assert.equal(r.total, 10_000);
  r.event('bad_magic', 'again');
  assert.equal(log.lines.at(-1), 'peer p: malformed message: again', 'a new interval shows a kind again');
  r.flush();
  assert.equal(log.lines.length, 4, 'no summary when nothing was held back');
});

test('RateLimitedLog: at most MAX_SHOWN kinds in full and MAX_KINDS counted', () => {
  const log = collectingLog();
  const r = new RateLimitedLog(log, 's', 5000, clockAt(0));
  for (let k = 0; k < 100; k++) r.event(`kind${k}`, `d${k}`);
  assert.equal(log.lines.length, MAX_SHOWN);
  r.flush();
  assert.equal(log.lines.length, MAX_SHOWN + 1);
  assert.match(log.lines.at(-1), new RegExp(`^s: ${100 - MAX_SHOWN} more .*other ${100 - MAX_SHOWN - MAX_KINDS}`));
});

/**
 * An open RTCDataChannel as far as a session sees one (node has no WebRTC): what it sends
 * is kept, `bufferedAmount` is settable.
 */
class ChannelDouble extends EventTarget {
  constructor() { super(); this.readyState = 'open'; this.sent = []; this.bufferedAmount = 0; this.label = 'latent'; }
  send(t) { this.sent.push(t); }
  close() { this.readyState = 'closed'; this.onclose?.(); }
}

const MANIFEST = { classes: ['a'], splits: [{ id: 'stem', shape: [1, 4] }] };

function newSession(limits, log = collectingLog()) {
  const ends = [];
  const s = new SenderSession('p1', 'sender', new TailEngine(MANIFEST, null), {
    limits, log, onClose: (why, info) => ends.push([why, info.abuse]),
  });
  const ch = new ChannelDouble();
  assert.equal(s.attach(ch), true);
  s.liveness.stop(); // the test drives time; no timers left behind
  return { s, ch, ends, log };
}

test('a session that spends its malformed budget is ended once, as abuse; its log stays short', () => {
  const { s, ch, ends, log } = newSession(limitsFrom({ malformedBurst: 50, malformedRate: 0 }));
  const garbage = new Uint8Array(64).fill(7).buffer;
  for (let i = 0; i < 500; i++) s.onMessage(garbage);
  assert.equal(ends.length, 1, `ended once: ${JSON.stringify(ends)}`);
  assert.equal(ends[0][1], true);
  assert.match(ends[0][0], /malformed messages faster than 0\/s after a burst of 50 \(51 in/);
  assert.equal(s.counters.malformed, 51, 'nothing is answered after the end');
  const errors = ch.sent.map(parse).filter((m) => m.type === 'error');
  assert.equal(errors.length, 51);
  assert.ok(errors.every((m) => m.reason === 'bad_magic'), errors[0].reason);
  s.close();
  assert.ok(log.lines.length <= 2, `console lines: ${log.lines.length}`);
  assert.match(log.lines.at(-1), /50 more in the last/);
});

test('a session with bad messages under the budget carries on', () => {
  const { s, ends } = newSession(LIMITS);
  for (let i = 0; i < 150; i++) s.onMessage('not json');
  assert.equal(ends.length, 0);
  assert.equal(s.counters.malformed, 150);
  s.close();
});

test('a session whose sender leaves 1 MiB of replies unread is ended as abuse', () => {
  const { s, ch, ends } = newSession(LIMITS);
  ch.bufferedAmount = (1 << 20) + 1;
  s.onMessage('{"type": "ping", "t_ms": 1}');
  assert.deepEqual(ends, [[`${(1 << 20) + 1} bytes of replies left unread (limit ${1 << 20})`, true]]);
  s.close();
});

test('session.tick: an offer whose channel never opens ends after offerTimeoutMs; an open one does not', () => {
  const limits = limitsFrom({ offerTimeoutMs: 10_000 });
  const waiting = new SenderSession('p2', '', new TailEngine(MANIFEST, null), { limits, log: collectingLog() });
  assert.equal(waiting.tick(waiting.created + 9_999), null);
  assert.match(waiting.tick(waiting.created + 10_001), /no data channel within 10 s/);
  const { s } = newSession(limits);
  assert.equal(s.tick(s.created + 60_000), null);
  assert.equal(s.attach(new ChannelDouble()), false, 'a second channel is refused');
  s.close();
});
