// The sender page's per-frame path (static/js/sender/pipeline.js) with its real ledger,
// pacer, codecs and frame encoder; the camera, onnxruntime-web's head and the data channel
// cannot run in node, so a frame source, a head and an outlet stand in for them. Every frame
// the pipeline captures must end in exactly one place: sent, or dropped with a reason.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Ledger } from '../../static/js/sender/ledger.js';
import { Pipeline } from '../../static/js/sender/pipeline.js';
import { decodeLatent } from '../../static/js/wire/codecs.js';
import { Reassembler, decodeFrame } from '../../static/js/wire/frame.js';

const MANIFEST = {
  classes: ['a', 'b'],
  splits: [{ id: 's', shape: [1, 4, 2, 2], calibration: { clip: [0, 6] } }],
};

/** A head that returns input-dependent latents and counts its runs. */
class HeadDouble {
  constructor(onRun = null) { this.runs = 0; this.lastMs = 0.5; this.onRun = onRun; }
  async run(x) {
    this.runs += 1;
    await this.onRun?.(this.runs);
    return { data: Float32Array.from({ length: 16 }, (_, i) => (x[0] + i) % 6), dims: [1, 4, 2, 2] };
  }
}

function setup({ frames = 12, codec = 'float32', onRun = null, outlet = {} } = {}) {
  let n = 0;
  const pre = { capture: () => { n += 1; return Float32Array.of(n % 7, 0, 0); } };
  const head = new HeadDouble(onRun);
  const store = { manifest: MANIFEST, head: async () => head };
  const ledger = new Ledger(MANIFEST.classes);
  const channel = { readyState: 'open', sent: [] };
  const out = {
    stopping: false,
    target: channel,
    channelForFrame() { return this.target; },
    stillOpen(ch) { return this.target === ch && ch.readyState === 'open'; },
    send(ch, m) { ch.sent.push(m.slice()); },
    ...outlet,
  };
  const p = new Pipeline(pre, null, store, ledger, { split: () => 's', codec, frames, fps: 60 });
  return { p, head, ledger, channel, out };
}

async function framesOf(messages) {
  const r = new Reassembler();
  const frames = [];
  for (const m of messages) {
    const { header, payload } = decodeFrame(m);
    const { frame } = r.push(header, payload);
    if (frame) frames.push({ header: frame.header, x: await decodeLatent(frame.header, frame.payload) });
  }
  return frames;
}

test('frames go out in order, one account each, decodable with the split\'s codec', async () => {
  for (const codec of ['float32', 'clip4+zlib', 'int8-tensor']) {
    const { p, head, ledger, channel, out } = setup({ codec });
    await p.run(out);
    assert.equal(ledger.sent, 12, codec);
    assert.equal(head.runs, 12);
    assert.equal(p.frameMessages, channel.sent.length);
    assert.equal(p.frameBytes, channel.sent.reduce((a, m) => a + m.byteLength, 0));
    const frames = await framesOf(channel.sent);
    assert.deepEqual(frames.map((f) => f.header.seq), [...Array(12).keys()], codec);
    assert.deepEqual(frames[0].header.shape, [1, 4, 2, 2]);
    assert.equal(frames[0].header.split, 's');
    if (codec === 'float32') assert.deepEqual([...frames[2].x], Array.from({ length: 16 }, (_, i) => (3 + i) % 6));
    assert.equal(ledger.inFlight.size, 12);
    assert.ok(ledger.check(), codec);
  }
});

test('a frame with nowhere to go is dropped before the head runs, with the outlet\'s reason', async () => {
  let k = 0;
  const reasons = ['no_receiver', 'backpressure', 'channel_closed'];
  const { p, head, ledger, out, channel } = setup({
    frames: 5,
    outlet: { channelForFrame() { k += 1; return k <= 6 ? reasons[k % 3] : channel; } },
  });
  await p.run(out);
  assert.equal(head.runs, 5, 'the head ran only for frames that went out');
  assert.equal(ledger.sent, 5);
  assert.deepEqual(ledger.droppedSender.toJSON(), { no_receiver: 2, backpressure: 2, channel_closed: 2 });
  assert.equal(ledger.captured, 11);
  assert.ok(ledger.check());
});

test('a receiver lost while the head runs: the frame is dropped, not sent on another channel', async () => {
  const ctx = {};
  const { p, ledger, out, channel } = setup({
    frames: 4,
    onRun: async (run) => { if (run === 2) ctx.lost = true; },
    outlet: {
      channelForFrame() {
        if (!ctx.lost) return ctx.channel;
        ctx.lost = false; // asked why the frame cannot go: the next receiver is there for the next frame
        return 'no_receiver';
      },
      stillOpen() { return !ctx.lost; },
    },
  });
  ctx.channel = channel;
  await p.run(out);
  assert.equal(ledger.sent, 4);
  assert.equal(ledger.droppedSender.get('no_receiver'), 1);
  const seqs = (await framesOf(channel.sent)).map((f) => f.header.seq);
  assert.deepEqual(seqs, [0, 1, 2, 3], 'seq counts frames sent, without gaps');
  assert.ok(ledger.check());
});

test('stopping ends the loop at the next frame; a wrong codec name fails before sending', async () => {
  const { p, ledger, out } = setup({ frames: 0, onRun: async (run) => { if (run === 3) out.stopping = true; } });
  await p.run(out);
  assert.equal(ledger.sent, 3);
  const bad = setup({ codec: 'int3' });
  await assert.rejects(bad.p.run(bad.out), /unknown codec/);
  assert.equal(bad.ledger.sent, 0);
});
