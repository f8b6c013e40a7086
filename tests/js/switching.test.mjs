// static/js/sender/switching.js (the twin of sender/switching.py) with the real controller,
// profile, pipeline, ledger, codecs and frame encoder; onnxruntime-web's heads, the camera and
// the data channel cannot run in node, so doubles stand in for them. A switch applied between
// frames: every frame is made, labelled on the wire and accounted by exactly one point.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { OperatingPoints } from '../../static/js/runtime/operating.js';
import { PROBE_EXCESS_MS, PROBE_FRAMES, Probe, Switch, TICK_S } from '../../static/js/sender/adaptive.js';
import { Ledger } from '../../static/js/sender/ledger.js';
import { Pipeline } from '../../static/js/sender/pipeline.js';
import { build } from '../../static/js/sender/switching.js';
import { Codec, Compression, Reassembler, decodeFrame } from '../../static/js/wire/frame.js';

const MANIFEST = {
  classes: ['a', 'b'],
  input: { shape: [1, 3, 2, 2] },
  splits: [
    { id: 'early', shape: [1, 8, 2, 2], calibration: { clip: [0, 6] }, head: { macs: 10 }, tail: { macs: 90 } },
    { id: 'late', shape: [1, 4], calibration: { clip: [0, 6] }, head: { macs: 90 }, tail: { macs: 10 } },
  ],
};
const OPS = OperatingPoints.fromJSON({ full_top1: 0.9, points: [
  { split: 'early', codec: 'float32', head: 'float32', payload_bytes: 200, top1: 0.9 },
  { split: 'late', codec: 'clip4+zlib', head: 'int8', payload_bytes: 40, top1: 0.899, leakage: { ssim: 0.1,
    psnr_db: 9, recon_top1: 0.1, attack: 'inverse' } },
  { split: 'late', codec: 'clip4+zstd', head: 'int8', payload_bytes: 30, top1: 0.899 },      // not portable
  { split: 'late', codec: 'float32', head: 'float32', payload_bytes: 80, top1: 0.5 },        // beyond the drop
  { split: 'gone', codec: 'float32', head: 'float32', payload_bytes: 10, top1: 0.9 },        // not in the manifest
] });

/** Heads per split and kind that count their runs; `late` takes 10 ms, as on a weak device. */
function heads() {
  const runs = [];
  const make = (split, kind) => {
    const { shape } = MANIFEST.splits.find((s) => s.id === split);
    const n = shape.reduce((a, b) => a * b, 1);
    const ms = split === 'late' ? 10 : 0;
    return { lastMs: ms,
      async run(x) {
        const t0 = performance.now();
        while (performance.now() - t0 < ms); // the profile measures it
        runs.push(`${split}/${kind}`);
        return { data: Float32Array.from({ length: n }, (_, i) => (x[0] * 5 + i) % 6), dims: shape };
      } };
  };
  const held = new Map();
  return { runs, manifest: MANIFEST,
    async head(split, kind = 'float32') {
      const k = `${split}/${kind}`;
      if (!held.has(k)) held.set(k, make(split, kind));
      return held.get(k);
    } };
}

test('build keeps the portable candidates within the drop of the manifest\'s splits, profiled', async () => {
  const h = heads();
  const ad = await build(MANIFEST, OPS, 1.0, 30, { heads: h });
  assert.deepEqual(ad.controller.points.map((p) => p.key).sort(), ['early/float32/float32', 'late/clip4+zlib/int8']);
  assert.deepEqual(Object.keys(ad.profile.deviceMs).sort(), ['early/float32', 'late/int8']);
  assert.deepEqual(Object.keys(ad.profile.encodeMs).sort(), ['early/float32', 'late/clip4+zlib']);
  assert.equal(h.runs.filter((r) => r === 'early/float32').length, 2 + 5 + 1, 'warm-up, timed runs, the codec\'s latent');
  const priv = await build(MANIFEST, OPS, 1.0, 30, { heads: heads(), maxSsim: 0.3 });
  assert.deepEqual(priv.controller.points.map((p) => p.key), ['late/clip4+zlib/int8']);
  await assert.rejects(build(MANIFEST, OPS, 1.0, 30, { heads: heads(), maxSsim: 0.05 }), /attack SSIM <= 0.05/);
});

test('a switch applies between frames: each frame made, labelled and accounted by one point', async () => {
  const h = heads();
  const ad = await build(MANIFEST, OPS, 1.0, 30, { heads: h });
  const start = ad.point;
  const ledger = new Ledger(MANIFEST.classes);
  const channel = { readyState: 'open', bufferedAmount: 0, sent: [] };
  let n = 0;
  const pre = { capture: () => { n += 1; return Float32Array.of(n % 7 / 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); } };
  const stream = { ledger, channel, rtt: { last: null, seen: 0 }, opts: { maxBuffered: 1 << 20 }, receiver: null };
  const p = new Pipeline(pre, null, h, ledger, { split: () => 'never-used', codec: 'float16', frames: 40, fps: 60 });
  const outlet = {
    stopping: false,
    channelForFrame: () => channel,
    stillOpen: (ch) => ch === channel,
    send: (ch, m) => ch.sent.push(m.slice()),
  };
  // the page's tick, driven by frames here: one observation each 2 frames; from 1.5 s on the
  // send queue holds seconds of the current stream (a link far slower than it): congested
  let t = 0;
  let frames = 0;
  const decided = [];
  const baseSend = p.send.bind(p);
  p.send = (o, ch, frame, slot) => {
    baseSend(o, ch, frame, slot);
    frames += 1;
    if (frames % 2 === 0) {
      t += TICK_S;
      if (t > 1.5) channel.bufferedAmount = 50 * ad.point.payloadBytes * 30;
      const sw = ad.observe(stream, p, t);
      if (sw !== null) decided.push([ledger.sent, sw.why, sw.new.key]);
    }
  };
  // as Adaptive.start, without its timer
  p.choice = ad.choice;
  p.onEncoded = (frame) => ad.onEncoded(frame);
  await p.run(outlet);

  assert.equal(start.key, 'early/float32/float32', 'on a fast link the device-cheap point');
  assert.deepEqual(decided.map((x) => x[1]), ['congested'], 'one switch, when the send queue said so');
  assert.equal(ad.point.key, 'late/clip4+zlib/int8', 'a send queue of seconds ends on the lightest stream');
  const log = ad.summary().switch_log;
  assert.deepEqual(log.map((x) => [x.after_frame, x.why, x.to]), decided);
  assert.equal(ad.appStats().operating_point, ad.point.key);
  assert.equal(ad.appStats().switches, log.length);
  /** The point frame i was made by: the last switch decided after fewer than i + 1 frames were sent. */
  const pointOf = (i) => log.filter((x) => x.after_frame <= i).at(-1)?.to ?? start.key;

  // the wire: frames before the switch are early/float32, after it late/clip4+zlib, seq unbroken
  const r = new Reassembler();
  const headers = [];
  for (const m of channel.sent) {
    const { header, payload } = decodeFrame(m);
    const { frame } = r.push(header, payload);
    if (frame) headers.push(frame.header);
  }
  assert.deepEqual(headers.map((x) => x.seq), [...Array(40).keys()]);
  assert.ok(new Set(headers.map((x, i) => pointOf(i))).size === 2, 'frames of both points');
  headers.forEach((x, i) => {
    const late = pointOf(i) === 'late/clip4+zlib/int8';
    assert.equal(x.split, late ? 'late' : 'early', `frame ${i}`);
    assert.equal(x.codec, late ? Codec.CLIP4 : Codec.NONE, `frame ${i}`);
    assert.equal(x.compression, late ? Compression.ZLIB : Compression.NONE, `frame ${i}`);
  });
  const heads_ = h.runs.slice(-40);
  assert.deepEqual(heads_, headers.map((x) => (x.split === 'late' ? 'late/int8' : 'early/float32')));

  // the books: one account per frame with its point and bytes
  assert.equal(ledger.sent, 40);
  assert.ok(ledger.check());
  const bytes = channel.sent.reduce((a, m) => a + m.byteLength, 0);
  assert.equal(ledger.inFlightBytes, bytes);
  assert.equal(p.frameBytes, bytes);
  const pts = [...ledger.inFlight.values()].map((e) => e.point.join('/'));
  assert.deepEqual(pts, headers.map((x, i) => pointOf(i)));
  // settling: bytes move to settled, replies' server time is kept per split for the next tick
  const records = [];
  ledger.onRecord = (rec) => records.push(rec);
  const timing = { decode_ms: 0.1, queue_ms: 0.1, tail_ms: 1, total_ms: 2 };
  for (const x of headers.slice(-3)) {
    ledger.onText(JSON.stringify({ type: 'reply', seq: x.seq, capture_ms: 0, split: x.split, label: 1, name: 'b',
      probs: [0.5, 0.5], timing }));
  }
  assert.deepEqual([...ledger.serverMs], [['late', [6, 3]]]);
  assert.ok(records.every((rec) => rec.split === 'late' && rec.codec === 'clip4+zlib' && rec.head === 'int8'));
  ledger.onConnectionLost();
  assert.equal(ledger.inFlightBytes, 0);
  assert.ok(ledger.settledBytes > 0 && ledger.check());
  // the send queue's limit follows the point in use and the capacity
  assert.ok(stream.opts.maxBuffered >= 2 * ad.point.payloadBytes);
});

test('a probe train: the rung for its frames, then the point in use; replies\' network times reach the controller', async () => {
  const h = heads();
  const ad = await build(MANIFEST, OPS, 1.0, 30, { heads: h });
  const start = ad.point;
  const rung = ad.controller.points.find((p) => !p.equals(start));
  const ledger = new Ledger(MANIFEST.classes);
  const channel = { readyState: 'open', bufferedAmount: 0, sent: [] };
  let n = 0;
  const pre = { capture: () => { n += 1; return Float32Array.of(n % 7 / 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); } };
  const stream = { ledger, channel, rtt: { last: null, seen: 0 }, opts: { maxBuffered: 1 << 20 }, receiver: null };
  const p = new Pipeline(pre, null, h, ledger, { split: () => 'never-used', codec: 'float16', frames: 12, fps: 60 });
  const outlet = { stopping: false, channelForFrame: () => channel, stillOpen: (ch) => ch === channel,
    send: (ch, m) => ch.sent.push(m.slice()) };
  // the controller decides a train once, after the third frame; every observation is kept
  const seen = [];
  const decide = ad.controller.observe.bind(ad.controller);
  let forced = false;
  ad.controller.observe = (o) => {
    seen.push(o);
    const sw = decide(o);
    if (forced) return sw;
    forced = true;
    return new Switch(o.t, start, rung, 'probe', {}, {}, PROBE_FRAMES);
  };
  let frames = 0;
  const baseSend = p.send.bind(p);
  p.send = (o, ch, frame, slot) => {
    baseSend(o, ch, frame, slot);
    frames += 1;
    if (frames === 3) ad.observe(stream, p, 0.1);
  };
  p.choice = ad.choice;
  p.onEncoded = (frame) => ad.onEncoded(frame);
  await p.run(outlet);

  const r = new Reassembler();
  const headers = [];
  for (const m of channel.sent) {
    const { header, payload } = decodeFrame(m);
    const { frame } = r.push(header, payload);
    if (frame) headers.push(frame.header);
  }
  const splits = headers.map((x) => x.split);
  const want = [...Array(12).keys()].map((i) => (i >= 3 && i < 3 + PROBE_FRAMES ? rung.split : start.split));
  assert.deepEqual(splits, want, 'exactly PROBE_FRAMES frames of the rung, then the point in use');
  assert.ok(ad.point.equals(start), 'a train leaves the controller\'s point as it is');
  assert.ok(ledger.check());

  // replies 50 ms after now: their network time is latency less our time to the channel and the receiver's
  const timing = { decode_ms: 0.1, queue_ms: 0.1, tail_ms: 1, total_ms: 2 };
  const now = performance.now() + 50;
  for (const x of headers.slice(-3)) {
    ledger.onText(JSON.stringify({ type: 'reply', seq: x.seq, capture_ms: x.captureMs, split: x.split, label: 1, name: 'b',
      probs: [0.5, 0.5], timing }), now);
  }
  ad.observe(stream, p, 0.2);
  const o = seen.at(-1);
  assert.ok(o.netMs !== null && o.netMinMs !== null && o.netMinMs <= o.netMs, JSON.stringify(o));
  assert.ok(o.netMinMs >= 48 - 1e-6 && o.netMs < 50 + 5000, `${o.netMinMs} ${o.netMs}`);
  ad.observe(stream, p, 0.3);
  assert.equal(seen.at(-1).netMs, null, 'no reply in a tick: no network time');
});

test('a train ends at its first late frame: the next frame is the point in use again', async () => {
  // each train frame is judged before the next is made: one answered within PROBE_EXCESS_MS
  // of the network floor lets the train go on; one still unanswered when it has been out
  // longer than that (less the receiver's time) ends it there; the next tick records the failure
  const ad = await build(MANIFEST, OPS, 1.0, 30, { heads: heads() });
  const start = ad.point;
  const rung = ad.controller.points.find((p) => !p.equals(start)); // any other point: the train is forced
  const ledger = new Ledger(MANIFEST.classes);
  const stream = { ledger, channel: { bufferedAmount: 0 }, rtt: { last: null, seen: 0 }, opts: { maxBuffered: 0 },
    receiver: null };
  const pipeline = { choice: ad.choice };
  const ctl = ad.controller;
  let seq = 0;
  /** One frame of the pipeline's choice, sent 30 ms ago; answered `lateMs` after it left (null: not yet). */
  const send = (lateMs) => {
    const ch = pipeline.choice;
    const now = performance.now();
    ledger.onSent(seq, now - 31, now - 30, seq, { point: [ch.split, ch.codec, ch.head], nbytes: 100 });
    ad.onEncoded({ seq, captureMs: now - 31, messages: [new Uint8Array(100)], split: ch.split, codec: ch.codec,
      head: ch.head, headMs: 1, encodeMs: 0.1 }, now - 30);
    if (lateMs !== null) {
      ledger._pop(seq);
      ad.onRecord({ seq, latency_ms: 1 + 2 + lateMs, receiver: { total_ms: 2 } });
    }
    seq += 1;
  };
  const decide = ctl.observe.bind(ctl);
  let forced = null;
  ctl.observe = (o) => {
    const sw = decide(o);
    if (forced !== null || o.t < 1.0) return sw;
    ctl.probing = new Probe(o.t, start, rung, 0, ctl.est.capacityBps, ctl.est.capacityBps);
    forced = new Switch(o.t, start, rung, 'probe', {}, {}, 4);
    return forced;
  };
  for (let k = 1; k <= 10; k += 1) { // a network floor of 2 ms
    pipeline.choice = ad.choice;
    send(2.0);
    ad.observe(stream, pipeline, k * TICK_S);
  }
  ad.observe(stream, pipeline, 1.1);
  assert.ok(forced !== null && pipeline.choice.split === rung.split);
  send(2.0 + PROBE_EXCESS_MS / 2); // within the excess: the train goes on
  ad._judgeTrain(seq - 1, rung.split, performance.now() - 30);
  assert.equal(pipeline.choice.split, rung.split);
  send(null); // out 30 ms and unanswered: late, the train ends here
  ad._judgeTrain(seq - 1, rung.split, performance.now() - 30);
  assert.equal(pipeline.choice.split, start.split);
  assert.equal(ad._train, null);
  const sw = ad.observe(stream, pipeline, 1.2);
  assert.ok(sw !== null && sw.why === 'probe_failed' && ctl.current.equals(start));
});
