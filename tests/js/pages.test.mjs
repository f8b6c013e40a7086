// Pure logic of sender.html / receiver.html: preprocessing, pacing, the ledger, stats
// extraction and rates, sha256, URL settings.   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { SCALE, inputToRgba, rgbaToInput } from '../../static/js/runtime/preprocess.js';
import { Pacer } from '../../static/js/sender/pacer.js';
import { Counter, Ledger, percentile } from '../../static/js/sender/ledger.js';
import { ChannelCounter, rates, reportEntries, utf8Length } from '../../static/js/rtc/stats.js';
import { humanBytes } from '../../static/js/ui/format.js';
import { sha256Hex, sha256HexSync } from '../../static/js/wire/sha256.js';
import { BoundedMap, readSettings, settingsLink } from '../../static/js/ui/page.js';
import { argmax, softmax6 } from '../../static/js/runtime/numeric.js';

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

// --- preprocess ------------------------------------------------------------------------

test('SCALE holds numpy\'s float32 v / 255 for every byte value', () => {
  const bits = new Uint32Array(SCALE.buffer);
  // np.divide(np.arange(256, dtype=np.uint8), np.float32(255)).view(np.uint32)
  assert.equal(bits[1], 0x3b808081);
  assert.equal(bits[3], 0x3c40c0c1);
  assert.equal(bits[128], 0x3f008081);
  assert.equal(bits[254], 0x3f7efeff);
  let sum = 0n;
  for (const b of bits) sum += BigInt(b);
  assert.equal(sum, 268502433343n); // the sum of all 256 numpy bit patterns
  assert.equal(SCALE[0], 0);
  assert.equal(SCALE[255], 1);
});

test('rgbaToInput: RGBA HWC bytes -> planar RGB CHW in [0, 1], alpha ignored', () => {
  const w = 3, h = 2;
  const data = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) data.set([i, 100 + i, 200 + i, 7], 4 * i);
  const out = rgbaToInput(data, w, h);
  assert.equal(out.length, 3 * w * h);
  for (let i = 0; i < w * h; i++) {
    assert.equal(out[i], SCALE[i]);
    assert.equal(out[w * h + i], SCALE[100 + i]);
    assert.equal(out[2 * w * h + i], SCALE[200 + i]);
  }
  assert.deepEqual(Array.from(inputToRgba(out, w, h)), Array.from(data, (v, i) => (i % 4 === 3 ? 255 : v)));
});

test('rgbaToInput reuses the output buffer and refuses short input', () => {
  const buf = new Float32Array(3 * 4);
  const out = rgbaToInput(new Uint8Array(16).fill(255), 2, 2, buf);
  assert.equal(out, buf);
  assert.ok(out.every((v) => v === 1));
  assert.notEqual(rgbaToInput(new Uint8Array(16), 2, 2, new Float32Array(5)), buf); // wrong size: new
  assert.throws(() => rgbaToInput(new Uint8Array(15), 2, 2), RangeError);
});

// --- pacer -----------------------------------------------------------------------------

test('pacer releases on a fixed grid and drops, never queues, late frames', () => {
  const p = new Pacer(10, () => 0); // 100 ms period
  assert.deepEqual(p.schedule(0), { index: 0, delayMs: 0, skipped: 0 });
  assert.deepEqual(p.schedule(30), { index: 1, delayMs: 70, skipped: 0 });
  assert.deepEqual(p.schedule(150), { index: 2, delayMs: 50, skipped: 0 }); // 50 late: in time
  const s = p.schedule(560); // deadline 300: 260 late -> skip 2, release slot 5 at 500
  assert.deepEqual(s, { index: 5, delayMs: 0, skipped: 2 });
  assert.equal(p.dropped, 2);
  assert.equal(p.released, 4);
  assert.deepEqual(p.schedule(560), { index: 6, delayMs: 40, skipped: 0 }); // no drift
  assert.throws(() => new Pacer(0), RangeError);
});

// --- ledger ----------------------------------------------------------------------------

function clock() {
  let t = 0;
  const c = () => t;
  c.set = (v) => { t = v; };
  return c;
}

test('ledger settles every frame in exactly one bucket, like sender/ledger.py', () => {
  const c = clock();
  const records = [];
  const led = new Ledger(CLASSES, { clock: c, onRecord: (r) => records.push(r) });
  for (let seq = 0; seq < 5; seq++) {
    c.set(seq * 33);
    led.onCaptured();
    led.onSent(seq, seq * 33, seq * 33, seq);
  }
  led.onSkipped(2);                  // pacer fell behind
  led.onCaptured();
  led.dropBeforeSend('backpressure');
  assert.ok(led.check());
  assert.equal(led.onMessage({ type: 'reply', seq: 0, label: 3, probs: [] }, 40), 'reply');
  assert.equal(led.onMessage({ type: 'drop', seq: 1, capture_ms: 33, reason: 'stale' }, 50), 'drop');
  assert.equal(led.onMessage({ type: 'error', seq: 2, reason: 'bad_length' }, 60), 'error');
  assert.equal(led.onMessage({ type: 'reply', seq: 0, label: 3 }, 70), 'unmatched'); // duplicate
  assert.equal(led.onMessage({ type: 'error', seq: null, reason: 'bad_magic' }, 70), 'unmatched');
  assert.equal(led.onMessage({ type: 'reply', seq: 99, label: 1 }, 70), 'unmatched');
  assert.equal(led.onMessage({ type: 'reply', seq: 4, label: 42 }, 200), 'reply'); // unknown class
  assert.ok(led.check());
  const s = led.summary();
  assert.equal(s.frames_captured, 8);
  assert.equal(s.frames_sent, 5);
  assert.equal(s.replies, 2);
  assert.deepEqual(s.dropped_by_sender, { stale: 2, backpressure: 1 });
  assert.deepEqual(s.dropped_by_receiver, { stale: 1 });
  assert.deepEqual(s.errors, { bad_length: 1 });
  assert.equal(s.in_flight_at_exit, 1);
  assert.equal(s.unmatched_messages, 3);
  assert.equal(s.accounted, true);
  assert.equal(led.lastLabel, '42');
  assert.deepEqual(led.percentiles(), [40 + (68 - 40) * 0.5, 40 + (68 - 40) * 0.99].map((v) => Math.round(v * 1000) / 1000));
  assert.equal(s.fps, Math.round((4 / 0.132) * 100) / 100);
  assert.deepEqual(records.map((r) => [r.seq, r.status ?? r.name]),
    [[0, 'cat'], [1, 'dropped'], [2, 'error'], [4, '42']]);
  assert.equal(records[0].latency_ms, 40);
  assert.equal(records[0].frame, 0);
});

test('ledger.check fails when a frame is unaccounted for', () => {
  const led = new Ledger(CLASSES, { clock: () => 0 });
  led.onCaptured();
  led.onSent(0, 0, 0);
  led.inFlight.delete(0); // lost without a message
  assert.equal(led.check(), false);
  const led2 = new Ledger(CLASSES, { clock: () => 0 });
  led2.onCaptured();
  led2.onCaptured(); // captured, never sent nor dropped
  assert.equal(led2.check(), false);
});

test('percentile matches numpy\'s linear interpolation', () => {
  assert.equal(percentile([5, 1, 9, 3, 7, 2], 50), 4);
  assert.ok(Math.abs(percentile([5, 1, 9, 3, 7, 2], 99) - 8.9) < 1e-12);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), null);
  const c = new Counter();
  c.add('a'); c.add('a', 2); c.add('b');
  assert.equal(c.total(), 4);
  assert.deepEqual(JSON.parse(JSON.stringify(c)), { a: 3, b: 1 });
});

// --- stats -----------------------------------------------------------------------------

/** What Chromium's getStats() returns, as a Map-like RTCStatsReport. */
function fakeReport(t, dcBytes, wireBytes) {
  return new Map([
    ['D1', { type: 'data-channel', id: 'D1', timestamp: t, label: 'latent', state: 'open', messagesSent: dcBytes / 100,
      bytesSent: dcBytes, messagesReceived: 2, bytesReceived: 50, dataChannelIdentifier: 1 }],
    ['T01', { type: 'transport', id: 'T01', timestamp: t, bytesSent: wireBytes, bytesReceived: 900, packetsSent: 10,
      packetsReceived: 5, dtlsState: 'connected', iceRole: 'controlling', nested: { x: 1 } }],
    ['CP1', { type: 'candidate-pair', id: 'CP1', timestamp: t, bytesSent: 1 }],
    ['CERT', { type: 'certificate', id: 'CERT', fingerprint: 'ab' }],
  ]);
}

test('reportEntries keeps data-channel and transport entries as plain objects', () => {
  const entries = reportEntries(fakeReport(1000, 1000, 2000));
  assert.deepEqual(entries.map((e) => e.type), ['data-channel', 'transport']);
  assert.equal(entries[0].bytesSent, 1000);
  assert.equal(entries[0].label, 'latent');
  assert.equal(entries[1].dtlsState, 'connected');
  assert.equal('nested' in entries[1], false); // only primitive fields: JSON-ready
  const prefixed = reportEntries(fakeReport(1000, 1, 1), { prefix: 'peerA:', state: 'closed' });
  assert.deepEqual(prefixed.map((e) => e.id), ['peerA:D1', 'peerA:T01']);
  assert.equal(prefixed[0].state, 'closed');
  assert.equal(prefixed[1].state, undefined);
  assert.deepEqual(reportEntries([fakeReport(1, 1, 1).get('D1')]).length, 1); // arrays too
  assert.deepEqual(reportEntries(null), []);
});

test('reportRates derives per-direction rates and skips entries without a baseline', () => {
  const a = reportEntries(fakeReport(1000, 1000, 2000));
  const b = reportEntries(fakeReport(3000, 5000, 10000));
  const r = rates(a, b);
  assert.equal(r.intervalS, 2);
  assert.equal(r.payloadSentBps, 2000);
  assert.equal(r.wireSentBps, 4000);
  assert.equal(r.messagesSentPs, 20);
  assert.equal(r.payloadReceivedBps, 0);
  assert.equal(rates([], b), null);
  assert.equal(rates(b, a), null); // went backwards (or back in time): no bogus rate
  assert.equal(humanBytes(12345), '12.3 kB');
  assert.equal(humanBytes(999), '999 B');
  assert.equal(humanBytes(null), '–');
});

// --- sha256 ----------------------------------------------------------------------------

test('sha256: pure-JS fallback equals node\'s crypto at block boundaries', async () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70000]) {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 255;
    const want = createHash('sha256').update(b).digest('hex');
    assert.equal(sha256HexSync(b), want, `n=${n}`);
    assert.equal(await sha256Hex(b), want, `n=${n} (WebCrypto)`);
  }
});

// --- settings, small helpers -----------------------------------------------------------

test('readSettings types values after the defaults; settingsLink round-trips', () => {
  const defaults = { room: 'demo', frames: 0, autostart: false, split: 'stage1' };
  const s = readSettings('?room=lab&frames=60&autostart=1&bogus=3&split=', defaults);
  assert.deepEqual(s, { room: 'lab', frames: 60, autostart: true, split: '' });
  assert.deepEqual(readSettings('?frames=abc&autostart=0', defaults), { ...defaults });
  const url = settingsLink('http://h', '/sender', { room: 'lab', frames: 0, autostart: true, split: 'stem' }, defaults);
  assert.equal(url, 'http://h/sender?room=lab&autostart=1&split=stem');
  assert.deepEqual(readSettings(new URL(url).search, defaults), { room: 'lab', frames: 0, autostart: true, split: 'stem' });
});

test('BoundedMap forgets the oldest keys; softmax6 and argmax', () => {
  const m = new BoundedMap(2);
  m.set(1, 'a'); m.set(2, 'b'); m.set(1, 'A'); m.set(3, 'c');
  assert.deepEqual([...m.keys()], [2, 3]); // by first insertion
  const p = softmax6([1, 2, 3]);
  assert.deepEqual(p, [0.090031, 0.244728, 0.665241]);
  assert.equal(argmax([1, 5, 5, 2]), 1);
});

test('ChannelCounter counts like RTCDataChannelStats and stands in for a closed channel', () => {
  const c = new ChannelCounter('peer:DC');
  c.sent(new ArrayBuffer(100));
  c.sent(new Uint8Array(20));
  c.received('{"a":"é"}'); // 10 bytes in UTF-8
  c.received('😀');        // 4
  assert.equal(utf8Length('aé€😀'), 1 + 2 + 3 + 4);
  assert.deepEqual([c.messagesSent, c.bytesSent, c.messagesReceived, c.bytesReceived], [2, 120, 2, 14]);
  const browser = reportEntries(fakeReport(1000, 500, 900), { prefix: 'peer:' });
  assert.equal(c.observe(browser).id, 'peer:D1');
  const e = c.entry({ state: 'closed', timestamp: 5 });
  assert.equal(e.id, 'peer:D1'); // same id as the browser's entry: rates stay continuous
  assert.equal(e.state, 'closed');
  assert.equal(e.bytesSent, 120);
  assert.equal(e.timestamp, 5);
  assert.equal(new ChannelCounter('x').entry().id, 'x');
});
