// The browser's latent codecs (static/js/wire/codecs.js) against the vectors Python writes
// (tests/vectors/index.json: `codecs`, `calibration`, the codec cases of `invalid`), plus
// seeded round trips with the error bounds of tests/unit/test_codecs.py, rounding ties, and
// decompression bombs. Independent references: node:zlib and node:crypto.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';

import {
  Codec, Compression, DType, FrameError, Reassembler, decodeFrame, encodeFrame,
} from '../../static/js/wire/frame.js';
import {
  SMALLEST_SUBNORMAL_F32, channelCalibration, clipParams, decodeLatent, decodeTensor, encodeLatent, maxPayloadLen,
  parseCodec, rint,
} from '../../static/js/wire/codecs.js';

const VECTORS = new URL('../vectors/', import.meta.url);
const INDEX = JSON.parse(readFileSync(new URL('index.json', VECTORS), 'utf8'));
const CAL = INDEX.calibration;

function readBuffer(rel) {
  const b = readFileSync(new URL(rel, VECTORS));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}
const readF32 = (rel) => new Float32Array(readBuffer(rel));
const hex = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('hex');
const bytesOf = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function assertSameBits(got, want, what) {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) {
      assert.fail(`${what}: element ${i} is ${got[i]} (0x${g[i].toString(16)}), expected ${want[i]} (0x${w[i].toString(16)})`);
    }
  }
}

/** Reject with a FrameError of `code` (and detail matching `re`). */
async function rejectsWith(promise, code, re, what = '') {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof FrameError, `${what} FrameError, got ${e}`);
    assert.equal(e.code, code, `${what} ${e.message}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

/** Through the whole wire: codec, frame messages (<= maxMessage), reassembly, decode. */
async function roundTrip(x, shape, name, cal = null, maxMessage = 1024) {
  const spec = parseCodec(name, cal);
  const enc = await encodeLatent(x, shape, spec);
  const msgs = encodeFrame({ seq: 9, captureMs: 1.5, split: 's', shape, ...enc }, enc.payload, maxMessage);
  const r = new Reassembler();
  let done = null;
  for (const m of msgs) {
    const { header, payload } = decodeFrame(m);
    done = r.push(header, payload).frame;
  }
  const y = await decodeLatent(done.header, done.payload, { channels: spec.channels });
  return { y, enc, header: done.header, spec };
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** tests/unit/test_codecs.py's calibration(c): scales linspace(0.05, 0.2, c) as float32, zp -100. */
function calibration(c) {
  const scale = Array.from({ length: c }, (_, i) => Math.fround(c === 1 ? 0.05 : 0.05 + (0.15 * i) / (c - 1)));
  return { clip: [0.0, 6.0], int8_channel: { scale, zero_point: new Array(c).fill(-100) } };
}

/** A random [1,C,H,W] latent in [-4, 40] like the Python property tests, a quarter exact zeros. */
function randomLatent(rand) {
  const shape = [1, 1 + Math.floor(rand() * 8), 1 + Math.floor(rand() * 6), 1 + Math.floor(rand() * 6)];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rand() < 0.25 ? 0 : -4 + 44 * rand() ** 2;
  return { x, shape };
}

// ---------------------------------------------------------------------------------------
// Rounding

test('rint rounds halves to even, like np.rint (Math.round does not)', () => {
  const cases = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, -0], [-1.5, -2], [-2.5, -2], [-3.5, -4],
    [0.49999999999999994, 0], [-0.49999999999999994, -0], [1.4999999999999998, 1], [2.5000000000000004, 3],
    [0.3, 0], [-0.3, -0], [127.5, 128], [-128.5, -128], [4503599627370495.5, 4503599627370496],
    [4503599627370494.5, 4503599627370494], [2 ** 53, 2 ** 53], [-0, -0], [0, 0],
    [Infinity, Infinity], [-Infinity, -Infinity]];
  for (const [v, want] of cases) assert.ok(Object.is(rint(v), want), `rint(${v}) = ${rint(v)}, expected ${want}`);
  assert.ok(Number.isNaN(rint(NaN)));
  assert.notEqual(Math.round(2.5), rint(2.5), 'the cases tell rint from Math.round');
  // against an independent reference on random halves and near-halves
  const rand = mulberry32(3);
  for (let k = 0; k < 20000; k++) {
    const base = Math.floor((rand() - 0.5) * 2000);
    const v = k % 3 === 0 ? base + 0.5 : (rand() - 0.5) * 10 ** (rand() * 8);
    const f = Math.floor(v), d = v - f;
    const want = d < 0.5 ? f : d > 0.5 ? f + 1 : (f % 2 === 0 ? f : f + 1);
    assert.ok(rint(v) === want, `rint(${v}) = ${rint(v)}, expected ${want}`); // === : a -0 result is fine here
  }
});

test('encoders round ties half to even (clip4 and int8-tensor on exact halves)', async () => {
  // clip [0, 15] -> step 1, lo 0: codes are rint(x)
  const clip = await encodeLatent(Float32Array.of(0.5, 1.5, 2.5, 3.5, 14.5, 20, -1), [7],
    parseCodec('clip4', { clip: [0, 15] }));
  assert.equal(hex(clip.params), '000000000000803f', 'lo 0.0, step 1.0');
  assert.deepEqual([...clip.payload], [0x20, 0x42, 0xfe, 0x00], 'codes 0,2,2,4,14,15,0 packed low nibble first');
  // [0, 255] -> scale 1, zero point -128: q = rint(x) - 128
  const i8 = await encodeLatent(Float32Array.of(0, 0.5, 1.5, 2.5, 254.5, 255), [6], parseCodec('int8-tensor'));
  assert.equal(hex(i8.params), '0000803f80ffffff', 'scale 1.0, zero point -128');
  assert.deepEqual([...new Int8Array(i8.payload.buffer)], [-128, -128, -126, -126, 126, 127]);
  // the zero point is rounded too: [-0.5, 254.5] -> scale 1, zp rint(-127.5) = -128
  const zp = await encodeLatent(Float32Array.of(-0.5, 254.5), [2], parseCodec('int8-tensor'));
  assert.equal(hex(zp.params), '0000803f80ffffff');
  assert.deepEqual([...new Int8Array(zp.payload.buffer)], [-128, 126]);
});

/** Float32 `v` moved by `ulps` float32 ulps towards +Infinity (negative: towards -Infinity). */
function nudge(v, ulps) {
  const b = Float32Array.of(v);
  new Int32Array(b.buffer)[0] += v < 0 ? -ulps : ulps;
  return b[0];
}

/**
 * Inputs crowded around the codes' rounding boundaries, where float64 vs float32 division,
 * ties and the order of float32 operations all show. The expected digests were computed once
 * with splitcore/wire/codecs.py (numpy) on exactly these float32 inputs.
 */
function tieInputs() {
  const f = Math.fround;
  const near = (centers) => centers.flatMap((c) => [f(c), nudge(f(c), 1), nudge(f(c), -1), f(c + 1e-9)]);
  const lo = f(-0.7), step = f(3 / 15); // clip4 with clip [-0.7, 2.3]: code boundaries
  const clip = Float32Array.from(near(Array.from({ length: 16 }, (_, k) => lo + (k + 0.5) * step)));
  const tlo = f(-0.7), thi = f(2.3), scale = f((thi - tlo) / 255); // int8-tensor over [-0.7, 2.3]
  const tensor = Float32Array.from([tlo, thi,
    ...near(Array.from({ length: 62 }, (_, k) => (k * 4 - 120 + 0.5) * scale)).slice(0, 248)]);
  const sc = [0.01, 0.02, 0.015, 0.03].map(f); // int8-channel with the vectors' calibration
  const channel = new Float32Array(256);
  for (let c = 0; c < 4; c++) channel.set(near(Array.from({ length: 16 }, (_, k) => (k * 9 - 60 + 0.5) * sc[c])), 64 * c);
  return { clip, tensor, channel };
}

const sha = (u8) => createHash('sha256').update(u8).digest('hex');
const NUMPY_TIES = [ // [input, codec, params hex, sha256 of quantized payload, sha256 of decoded <f4]
  ['clip', 'clip4', '333333bfcdcc4c3e', '4ff57e8e40f3c73a35f467616c363639b88aab90063800c71fcafd750553d4cc',
    'f8b5dd45fa94bb8984f5a1a829b8b469ba9fd577b3d1ad8f4fb24316cddf8c14'],
  ['tensor', 'int8-tensor', '491b6e3ce1ffffff', 'baac4d66fd96a9b51570a9b5ec359fe48dfa2d2d58d2c1847db34ae170a6fb23',
    'ed9f815561dbd2f942e6ba79aa8bcf1c99f1ed497e05bea9b10371ca72c48178'],
  ['channel', 'int8-channel', '9d39eca6', 'eac9a3c0660ba050bfb5fad27d11ab14eb2fbb2879e2db9b4174a7e8ffe0bc8d',
    '8ff8dc4d263f86489bf8026a0f77e8607493a6cd9a854cf5fef8295d02fdaf75'],
];

for (const [input, name, paramsHex, rawSha, decodedSha] of NUMPY_TIES) {
  test(`${name} near rounding boundaries gives numpy's bytes and tensor`, async () => {
    const x = tieInputs()[input];
    const spec = parseCodec(name, { ...CAL, clip: [-0.7, 2.3] });
    const enc = await encodeLatent(x, [x.length], spec);
    assert.equal(hex(enc.params), paramsHex, 'params');
    assert.equal(sha(enc.payload), rawSha, 'quantized payload');
    const h = { seq: 0, shape: [x.length], ...enc, payloadLen: enc.payload.length };
    assert.equal(sha(bytesOf(await decodeLatent(h, enc.payload, { channels: spec.channels }))), decodedSha, 'tensor');
  });
}

test('clip4 packs element 2i in the low nibble, an odd tail leaves the high nibble 0', async () => {
  const enc = await encodeLatent(Float32Array.of(1, 2, 3), [1, 3], parseCodec('clip4', { clip: [0, 15] }));
  assert.deepEqual([...enc.payload], [0x21, 0x03]);
  const h = { seq: 0, shape: [1, 3], dtype: enc.dtype, codec: enc.codec, compression: 0,
    params: enc.params, payloadLen: 2 };
  assert.deepEqual([...await decodeLatent(h, enc.payload)], [1, 2, 3]);
});

// ---------------------------------------------------------------------------------------
// Shared vectors

test('index lists the codec vectors', () => {
  assert.equal(INDEX.codecs.length, 10);
  assert.ok(INDEX.invalid.some((c) => c.name === 'int8-channel_bad_params'));
});

for (const c of INDEX.codecs) {
  test(`codec vector ${c.name} decodes to Python's tensor, bit for bit`, async () => {
    const spec = parseCodec(c.codec_name, CAL);
    const [msg] = c.messages.map(readBuffer);
    const { header, payload } = decodeFrame(msg);
    assert.equal(header.seq, c.seq);
    assert.deepEqual(header.shape, c.shape);
    assert.equal(header.codec, c.codec);
    assert.equal(header.compression, c.compression);
    assert.equal(hex(header.params), c.params_hex);
    const y = await decodeLatent(header, payload, { channels: spec.channels });
    assertSameBits(y, readF32(c.expected_f32), c.name);
    const out = new Float32Array(y.length);
    assert.equal(await decodeLatent(header, payload, { channels: spec.channels, out }), out, 'decodes into out');
    assertSameBits(out, y, `${c.name} out`);
  });

  test(`codec vector ${c.name}: re-encoding its input gives Python's bytes`, async () => {
    const spec = parseCodec(c.codec_name, CAL);
    assert.equal(spec.name, c.codec_name);
    const x = readF32(c.input_f32);
    const enc = await encodeLatent(x, c.shape, spec);
    assert.equal(enc.dtype, DType[c.dtype.toUpperCase()]);
    assert.equal(enc.codec, c.codec);
    assert.equal(enc.compression, c.compression);
    assert.equal(hex(enc.params), c.params_hex, 'params');
    const rawWant = new Uint8Array(readBuffer(c.raw_payload));
    // zlib: compressed bytes may differ between zlib builds; node:zlib inflates ours
    const raw = c.compression === Compression.ZLIB ? new Uint8Array(inflateSync(enc.payload)) : enc.payload;
    assert.deepEqual(raw, rawWant, 'quantized payload');
    // and our frame decodes to Python's tensor too
    const [m] = encodeFrame({ seq: c.seq, captureMs: 0, split: c.split, shape: c.shape, ...enc }, enc.payload);
    const { header, payload } = decodeFrame(m);
    assertSameBits(await decodeLatent(header, payload, { channels: spec.channels }), readF32(c.expected_f32), c.name);
  });
}

test('int8-channel fingerprint is sha256(scale <f4, zero_point <i4)[:4] (node:crypto)', async () => {
  const { scale, zero_point: zp } = CAL.int8_channel;
  const buf = Buffer.alloc(8 * scale.length);
  scale.forEach((s, i) => buf.writeFloatLE(s, 4 * i));
  zp.forEach((z, i) => buf.writeInt32LE(z, 4 * scale.length + 4 * i));
  const want = createHash('sha256').update(buf).digest().subarray(0, 4).toString('hex');
  assert.equal(hex(await channelCalibration(CAL.int8_channel).fingerprint()), want);
  assert.equal(want, INDEX.codecs.find((c) => c.codec === Codec.AFFINE_CHANNEL).params_hex);
});

/**
 * The receiver's limit built from the vectors' "receiver" section (split id -> shape), as
 * receiver/session.js builds it from its manifest: unknown_split, shape_mismatch, or the most
 * a frame of that split can carry (codecs.maxPayloadLen).
 */
function receiverLimit(h) {
  const shape = INDEX.receiver.splits[h.split];
  if (shape === undefined) throw new FrameError('unknown_split', `split ${h.split}`, h.seq);
  if (shape.join(',') !== h.shape.join(',')) throw new FrameError('shape_mismatch', `[${h.shape}]`, h.seq);
  return maxPayloadLen(h);
}

for (const c of INDEX.invalid) {
  // this peer does not decompress zstd at all: every zstd frame is refused as
  // bad_compression, bombs included (Python, which can, says too_large)
  const code = c.needs_zstd ? 'bad_compression' : c.error;
  test(`invalid vector ${c.name} gives ${code} through decodeFrame + Reassembler + decodeLatent`, async () => {
    const channels = channelCalibration(CAL.int8_channel);
    const reasm = new Reassembler(c.needs_receiver ? receiverLimit : null);
    await rejectsWith((async () => {
      const { header, payload } = decodeFrame(readBuffer(c.message));
      const { frame } = reasm.push(header, payload);
      if (frame) await decodeLatent(frame.header, frame.payload, { channels });
    })(), code, null, c.name);
  });
}

test('a receiver\'s limit refuses an oversized first fragment before allocating its payload', () => {
  const c = INDEX.invalid.find((v) => v.name === 'oversized_first_fragment');
  assert.ok(c, 'the vector exists');
  const { header, payload } = decodeFrame(readBuffer(c.message));
  assert.equal(header.payloadLen, c.payload_len);
  // without a limit only the frame-level bound applies, and this fragment passes it
  const open = new Reassembler();
  assert.equal(open.push(header, payload).frame, null);
  assert.equal(open._buf.length, c.payload_len); // what the limit saves: a 64 MiB buffer
  const limited = new Reassembler(receiverLimit);
  assert.throws(() => limited.push(header, payload), { code: 'shape_mismatch' });
  assert.equal(limited._buf, null);
});

test('every vector with a receiver-side expectation is refused by that receiver only', () => {
  for (const c of INDEX.invalid.filter((v) => v.needs_receiver)) {
    const { header, payload } = decodeFrame(readBuffer(c.message));
    assert.doesNotThrow(() => new Reassembler().push(header, payload), c.name);
  }
});

// ---------------------------------------------------------------------------------------
// Refusals

test('a frame from another calibration, or without one, is refused (bad_params)', async () => {
  const x = readF32(INDEX.codecs[0].input_f32);
  const enc = await encodeLatent(x, [1, 4, 4, 4], parseCodec('int8-channel', CAL));
  const h = { seq: 3, shape: [1, 4, 4, 4], ...enc, payloadLen: enc.payload.length };
  const other = { scale: [0.1, 0.1, 0.1, 0.1], zero_point: [0, 0, 0, 0] };
  await rejectsWith(decodeLatent(h, enc.payload, { channels: other }), 'bad_params', /fingerprint/);
  await rejectsWith(decodeLatent(h, enc.payload), 'bad_params', /fingerprint/);
  // the manifest's plain object works as well as the parsed one
  assertSameBits(await decodeLatent(h, enc.payload, { channels: CAL.int8_channel }),
    readF32(INDEX.codecs.find((c) => c.name === 'codec_int8_channel').expected_f32), 'plain calibration');
  // a shape that does not split into the calibration's channels
  const h3 = { ...h, shape: [1, 3, 3, 3], payloadLen: 27 };
  await rejectsWith(decodeLatent(h3, new Uint8Array(27), { channels: CAL.int8_channel }), 'bad_shape');
});

test('zstd frames are refused as unsupported; the encoder will not make them', async () => {
  const [m] = encodeFrame({ seq: 5, captureMs: 0, split: 's', shape: [4], compression: Compression.ZSTD }, new Uint8Array(9));
  const { header, payload } = decodeFrame(m);
  await rejectsWith(decodeLatent(header, payload), 'bad_compression', /not supported by this peer/);
  for (const name of ['float32+zstd', 'clip4+zstd']) {
    const spec = parseCodec(name, { clip: [0, 1] }); // the names parse, as in Python
    await assert.rejects(encodeLatent(new Float32Array(4), [4], spec), /not supported by this peer/);
  }
});

test('a zlib bomb (10 MB of zeros) is refused without inflating it', async () => {
  const bomb = deflateSync(Buffer.alloc(10_000_000));
  // count what the platform's inflater gives out (what it takes in may just be buffered)
  const Real = globalThis.DecompressionStream;
  let fed = 0, inflated = 0;
  globalThis.DecompressionStream = class {
    constructor(format) {
      const inner = new Real(format);
      const countIn = new TransformStream({ transform(c, ctl) { fed += c.byteLength; ctl.enqueue(c); } });
      countIn.readable.pipeTo(inner.writable).catch(() => {});
      this.writable = countIn.writable;
      this.readable = inner.readable.pipeThrough(new TransformStream({
        transform(c, ctl) { inflated += c.byteLength; ctl.enqueue(c); },
      }));
    }
  };
  try {
    const h = { seq: 1, shape: [1, 4, 4, 4], dtype: DType.FLOAT32, codec: 0, compression: Compression.ZLIB,
      params: new Uint8Array(0), payloadLen: bomb.length };
    await rejectsWith(decodeLatent(h, new Uint8Array(bomb)), 'too_large', /inflates beyond the 256 bytes/);
  } finally {
    globalThis.DecompressionStream = Real;
  }
  assert.ok(fed > 0, 'the wrapper saw the stream');
  assert.ok(inflated > 256 && inflated < 2_000_000, `inflated ${inflated} bytes of 10 MB`);
});

test('zlib streams that end at the wrong size or early are refused', async () => {
  const h = (p) => ({ seq: 2, shape: [64], dtype: DType.INT8, codec: Codec.AFFINE_TENSOR,
    compression: Compression.ZLIB, params: Uint8Array.of(0, 0, 0x80, 0x3f, 0, 0, 0, 0), payloadLen: p.length }); // scale 1.0
  const z = (n) => new Uint8Array(deflateSync(Buffer.alloc(n, 7)));
  assert.equal((await decodeLatent(h(z(64)), z(64))).length, 64);
  await rejectsWith(decodeLatent(h(z(63)), z(63)), 'bad_length');
  await rejectsWith(decodeLatent(h(z(65)), z(65)), 'bad_length');
  await rejectsWith(decodeLatent(h(z(66)), z(66)), 'too_large', /inflates beyond/);
  await rejectsWith(decodeLatent(h(z(64).subarray(0, 5)), z(64).subarray(0, 5)), 'bad_compression');
  const corrupt = z(64);
  corrupt[corrupt.length - 1] ^= 1; // adler32
  await rejectsWith(decodeLatent(h(corrupt), corrupt), 'bad_compression');
  await rejectsWith(decodeLatent(h(new Uint8Array(0)), new Uint8Array(0)), 'bad_compression');
  await rejectsWith(decodeLatent({ ...h(z(64)), payloadLen: 3 }, z(64)), 'bad_length', /payload_len says 3/);
});

test('decodeFrame refuses payload_len above 4 bytes an element + 1024, as Python', () => {
  const frame = (n) => encodeFrame({ seq: 6, captureMs: 0, split: 's', shape: [2, 3], compression: 1 }, new Uint8Array(n))[0];
  assert.equal(decodeFrame(frame(24 + 1024)).header.payloadLen, 1048);
  assert.throws(() => decodeFrame(frame(24 + 1025)), (e) => e.code === 'bad_length' && e.seq === 6);
});

test('frame.js decodeTensor still decodes codec none and sends other frames to decodeLatent', async () => {
  const x = Float32Array.of(1, -2, 3.5, 0);
  for (const [name, code] of [['int8-tensor', 'bad_codec'], ['clip4', 'bad_codec'],
    ['int8-channel', 'bad_params'], ['float32+zlib', 'bad_compression']]) {
    const enc = await encodeLatent(x, [1, 4, 1, 1], parseCodec(name, CAL));
    const h = { seq: 1, shape: [1, 4, 1, 1], ...enc, payloadLen: enc.payload.length };
    assert.throws(() => decodeTensor(h, enc.payload), (e) => e.code === code && /decodeLatent/.test(e.message), name);
  }
  const enc = await encodeLatent(x, [4], parseCodec('float32'));
  assertSameBits(decodeTensor({ seq: 1, shape: [4], ...enc, payloadLen: 16 }, enc.payload), x, 'float32');
});

test('parseCodec: names, missing or bad calibration', () => {
  assert.deepEqual({ ...parseCodec('clip4+zlib', calibration(2)) }.clip, [0, 6]);
  assert.equal(parseCodec('int8-tensor').compression, Compression.NONE);
  assert.equal(parseCodec('float16+zstd').compression, Compression.ZSTD);
  for (const bad of ['int3', 'float32+gzip', 'float16+lz4', 'float32+', '+zlib', 'clip4+zlib+zlib', '', 'FLOAT32']) {
    assert.throws(() => parseCodec(bad), /unknown codec/, bad);
  }
  assert.throws(() => parseCodec('clip4'), /clip range/);
  assert.throws(() => parseCodec('clip4', { clip: [1, 1] }), /hi > lo/);
  assert.throws(() => parseCodec('int8-channel'), /per-channel/);
  assert.throws(() => parseCodec('int8-channel', { int8_channel: { scale: [1, 2], zero_point: [0] } }), /same number/);
  assert.throws(() => parseCodec('int8-channel', { int8_channel: { scale: [0], zero_point: [0] } }), /positive/);
  assert.throws(() => parseCodec('int8-channel', { int8_channel: { scale: [1], zero_point: [200] } }), /-128, 127/);
});

test('parseCodec refuses the clip ranges Python\'s parse refuses (float32 lo, step, lo + 15 step)', () => {
  // Each verdict and figure is what splitcore.wire.codecs.parse / _clip_params give for the
  // same range (checked against Python when this test was written).
  const refused = [
    [[0, 1e300], /step Infinity/],                       // step overflows float32
    [[0, 3.5e38], /step 2\.33\d*e\+37 and top value Infinity/], // lo + 15 step overflows
    [[-3e38, 3e38], /top value Infinity/],               // 15 step overflows, lo finite
    [[0, 1e-46], /step 0 /],                             // step underflows to 0
    [[1e39, 1e40], /lo Infinity/],                       // lo itself is not a float32
    [[NaN, 1], /must be finite/], [[0, Infinity], /must be finite/], [[2, 1], /hi > lo/],
    [['a', 1], /must be finite/],
  ];
  for (const [clip, re] of refused) {
    assert.throws(() => parseCodec('clip4', { clip }), (e) => e instanceof RangeError && re.test(e.message), String(clip));
  }
  for (const clip of [[0, 3.4e38], [0, 3.402e38], [-1e-44, 1e-44], [0, 1], [-6, 6]]) {
    assert.deepEqual([...parseCodec('clip4+zlib', { clip }).clip], clip, String(clip));
  }
  const { lo32, step32, top32 } = clipParams(-3e38, 3e38);
  assert.equal(lo32, Math.fround(-3e38));
  assert.equal(step32, Math.fround(4e37));
  assert.equal(top32, Infinity); // 15 * step in float32 is already infinite
});

test('clip4 parameters on the wire are clipParams(lo, hi), so decoders accept every parsed range', async () => {
  for (const clip of [[0, 3.4e38], [-1e-44, 1e-44], [-6, 6]]) {
    const spec = parseCodec('clip4', { clip });
    const enc = await encodeLatent(Float32Array.of(clip[0], clip[1], 0), [3], spec);
    const pv = new DataView(enc.params.buffer, enc.params.byteOffset, 8);
    const { lo32, step32 } = clipParams(...clip);
    assert.equal(pv.getFloat32(0, true), lo32);
    assert.equal(pv.getFloat32(4, true), step32);
    const y = await decodeLatent({ seq: 1, shape: [3], ...enc, payloadLen: enc.payload.length }, enc.payload);
    assert.ok(y.every(Number.isFinite), `${clip}: ${y}`);
  }
});

test('int8-tensor floors its scale at the smallest float32 subnormal, as Python (bytes from numpy)', async () => {
  // x -> (params hex, payload hex), as splitcore.wire.codecs.encode(x, parse("int8-tensor"))
  // gives them: a range of a few subnormals makes (hi - lo) / 255 underflow to 0, which every
  // decoder refuses (bad_params); the floor keeps such a frame decodable.
  const cases = [
    [[0, 1e-45, 3e-45, -1e-45], '0100000081ffffff', '81828380'],
    [[1e-44, 2e-44], '0100000080ffffff', '878e'],
    [[-3e-45], '0100000082ffffff', '80'],
    [[0, 0, 0], '0000803f80ffffff', '808080'], // all zeros: scale 1, as before
  ];
  assert.equal(SMALLEST_SUBNORMAL_F32, Math.fround(SMALLEST_SUBNORMAL_F32));
  assert.equal(Math.fround(SMALLEST_SUBNORMAL_F32 / 2), 0);
  for (const [values, params, payload] of cases) {
    const x = Float32Array.from(values);
    const enc = await encodeLatent(x, [x.length], parseCodec('int8-tensor'));
    assert.equal(hex(enc.params), params, `params of ${values}`);
    assert.equal(hex(enc.payload), payload, `payload of ${values}`);
    const y = await decodeLatent({ seq: 3, shape: [x.length], ...enc, payloadLen: enc.payload.length }, enc.payload);
    assertSameBits(y, x, `subnormals ${values} survive exactly`); // a multiple of 2^-149 each
  }
});

test('the encoder refuses input it would quantize into garbage', async () => {
  await assert.rejects(encodeLatent(Float32Array.of(1, Infinity), [2], parseCodec('int8-tensor')), /Infinity/);
  await assert.rejects(encodeLatent(Float32Array.of(NaN), [1], parseCodec('clip4', CAL)), /NaN/);
  await assert.rejects(encodeLatent(new Float32Array(6), [1, 6], parseCodec('int8-channel', CAL)), /4 calibrated channels/);
  await assert.rejects(encodeLatent(new Float32Array(3), [4], parseCodec('float32')), /do not fill/);
});

// ---------------------------------------------------------------------------------------
// Seeded round trips with tests/unit/test_codecs.py's error bounds

const COMPS = ['', '+zlib'];

test('float32 and float16 round trips', async () => {
  const rand = mulberry32(11);
  for (let k = 0; k < 20; k++) {
    const { x, shape } = randomLatent(rand);
    const comp = COMPS[k % 2];
    assertSameBits((await roundTrip(x, shape, `float32${comp}`)).y, x, `float32${comp} #${k}`);
    const { y } = await roundTrip(x, shape, `float16${comp}`);
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(y[i] - x[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25, `float16 #${k}[${i}]: ${x[i]} -> ${y[i]}`);
    }
  }
});

test('int8-tensor: error at most half a step, zeros stay zero', async () => {
  const rand = mulberry32(12);
  for (let k = 0; k < 40; k++) {
    const { x, shape } = randomLatent(rand);
    if (k === 0) x.fill(0);
    if (k === 1) x.fill(-3.25);
    const comp = COMPS[k % 2];
    const { y, enc } = await roundTrip(x, shape, `int8-tensor${comp}`);
    let lo = 0, hi = 0;
    for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const step = hi > lo ? (hi - lo) / 255 : 1;
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(y[i] - x[i]) <= (step / 2) * 1.001 + 1e-6, `#${k}[${i}]: ${x[i]} -> ${y[i]}, step ${step}`);
      if (x[i] === 0) assert.equal(y[i], 0, `#${k}[${i}]: zero stays zero`);
    }
    if (!comp) assert.equal(enc.payload.length, x.length);
  }
});

test('int8-channel: clips to the calibrated range, error at most half a step inside it', async () => {
  const rand = mulberry32(13);
  for (let k = 0; k < 40; k++) {
    const { x, shape } = randomLatent(rand);
    const cal = calibration(shape[1]);
    const comp = COMPS[k % 2];
    const { y, enc } = await roundTrip(x, shape, `int8-channel${comp}`, cal);
    const block = x.length / shape[1];
    for (let i = 0; i < x.length; i++) {
      const s = cal.int8_channel.scale[Math.floor(i / block)], zp = -100;
      const clipped = Math.min(Math.max(x[i], (-128 - zp) * s), (127 - zp) * s);
      assert.ok(Math.abs(y[i] - clipped) <= (s / 2) * 1.001 + 1e-6, `#${k}[${i}]: ${x[i]} -> ${y[i]}, scale ${s}`);
    }
    if (!comp) assert.equal(enc.payload.length, x.length);
  }
});

test('clip4: clips to [lo, hi], 16 levels, two values a byte', async () => {
  const rand = mulberry32(14);
  let odd = 0;
  for (let k = 0; k < 40; k++) {
    const { x, shape } = randomLatent(rand);
    const comp = COMPS[k % 2];
    const { y, enc } = await roundTrip(x, shape, `clip4${comp}`, calibration(shape[1]));
    const step = Math.fround(6 / 15);
    for (let i = 0; i < x.length; i++) {
      const clipped = Math.min(Math.max(x[i], 0), 6);
      assert.ok(Math.abs(y[i] - clipped) <= (step / 2) * 1.001 + 1e-6, `#${k}[${i}]: ${x[i]} -> ${y[i]}`);
      if (x[i] === 0) assert.equal(y[i], 0, 'lo 0 is exact');
    }
    assert.ok(new Set(y).size <= 16);
    if (!comp) assert.equal(enc.payload.length, (x.length + 1) >> 1);
    odd += x.length % 2;
  }
  assert.ok(odd > 0, 'odd element counts were exercised');
});

test('large latents fragment and still round trip (int8-tensor+zlib, clip4)', async () => {
  const rand = mulberry32(15);
  const shape = [1, 64, 32, 32];
  const x = Float32Array.from({ length: 65536 }, () => (rand() < 0.3 ? 0 : rand() * 8));
  const a = await roundTrip(x, shape, 'clip4', { clip: [0, 8] }, 65536);
  assert.equal(a.header.fragCount, 1);
  const b = await roundTrip(x, shape, 'int8-tensor+zlib', null, 4096);
  assert.ok(b.header.fragCount > 1);
  const c = await roundTrip(x, shape, 'int8-tensor', null, 4096);
  assertSameBits(b.y, c.y, 'zlib does not change the tensor');
});
