// The browser's wire format (static/js/wire/frame.js, codec none from wire/codecs.js) against the vectors that Python writes
// (tests/vectors/), plus round trips, float16 rounding and reassembly edge cases.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  MAX_ELEMENTS, MAX_MESSAGE, MAX_PAYLOAD, DType, DTYPE_NAMES, FrameError, Reassembler, decodeFrame, encodeFrame,
  maxPayloadLen, shapePayloadBound,
} from '../../static/js/wire/frame.js';
import { decodeTensor, encodeTensor, f16BitsToF32Bits, f32BitsToF16Bits } from '../../static/js/wire/codecs.js';

const VECTORS = new URL('../vectors/', import.meta.url);
const INDEX = JSON.parse(readFileSync(new URL('index.json', VECTORS), 'utf8'));

/** A vector file as its own ArrayBuffer (offset 0), the way a data channel delivers it. */
function readBuffer(rel) {
  const b = readFileSync(new URL(rel, VECTORS));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

/** Bitwise comparison of two float arrays, reporting the first difference. */
function assertSameBits(got, want, what) {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) {
      assert.fail(`${what}: element ${i} is ${got[i]} (0x${g[i].toString(16)}), ` +
        `expected ${want[i]} (0x${w[i].toString(16)})`);
    }
  }
}

function decodeAll(messages) {
  const r = new Reassembler();
  let done = null;
  for (const m of messages) {
    const { header, payload } = decodeFrame(m);
    const res = r.push(header, payload);
    assert.equal(res.abandoned, null);
    done = res.frame;
  }
  assert.notEqual(done, null, 'last message completes the frame');
  return { header: done.header, payload: done.payload, x: decodeTensor(done.header, done.payload) };
}

const DTYPE_BY_NAME = Object.fromEntries(Object.entries(DTYPE_NAMES).map(([k, v]) => [v, Number(k)]));

// ---------------------------------------------------------------------------------------
// Shared vectors

test('index lists vectors', () => {
  assert.ok(INDEX.valid.length >= 4 && INDEX.invalid.length >= 15);
});

for (const c of INDEX.valid) {
  test(`valid vector ${c.name} decodes to its expected float32 tensor`, () => {
    const messages = c.messages.map(readBuffer);
    assert.ok(messages.every((m) => m.byteLength <= MAX_MESSAGE));
    const { header: h, payload, x } = decodeAll(messages);
    assert.equal(h.seq, c.seq);
    assert.equal(h.captureMs, c.capture_ms);
    assert.equal(h.split, c.split);
    assert.deepEqual(h.shape, c.shape);
    assert.equal(DTYPE_NAMES[h.dtype], c.dtype);
    assert.equal(h.codec, c.codec);
    assert.equal(h.compression, c.compression);
    assert.equal(h.payloadLen, c.payload_len);
    assert.equal(h.headerLen, c.header_len);
    assert.equal(h.headerLen % 8, 0);
    assert.equal(h.fragCount, c.messages.length);
    const expected = new Float32Array(readBuffer(c.expected_f32));
    assertSameBits(x, expected, c.name);
    if (c.dtype === 'float32') {
      // zero-copy: the tensor is a view of the message (one fragment) or reassembly buffer
      assert.equal(x.buffer, messages.length === 1 ? messages[0] : payload.buffer);
    }
  });

  test(`valid vector ${c.name} is reproduced byte for byte by the encoder`, () => {
    const expected = new Float32Array(readBuffer(c.expected_f32));
    const dtype = DTYPE_BY_NAME[c.dtype];
    const got = encodeFrame(
      { seq: c.seq, captureMs: c.capture_ms, split: c.split, shape: c.shape, dtype },
      encodeTensor(expected, dtype));
    const want = c.messages.map(readBuffer);
    assert.equal(got.length, want.length, 'fragment count');
    got.forEach((m, i) => {
      assert.ok(m instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(m), new Uint8Array(want[i]), `message ${i}`);
    });
  });
}

const PRE_HEADER = new Set(['bad_magic', 'bad_version', 'bad_type', 'short_header']);
// vectors refused by the codec layer or a receiver's limit (bombs, codec parameters, sizes a
// receiver does not expect) need the whole receiving path: codecs.test.mjs replays them
const CODEC_LEVEL = (c) => c.needs_receiver || c.needs_zstd || c.inflates_to !== undefined || c.params_hex !== undefined;
for (const c of INDEX.invalid.filter((v) => !CODEC_LEVEL(v))) {
  test(`invalid vector ${c.name} gives ${c.error}`, () => {
    const msg = readBuffer(c.message);
    assert.throws(() => {
      const { header, payload } = decodeFrame(msg);
      decodeTensor(header, payload);
    }, (err) => {
      assert.ok(err instanceof FrameError, `FrameError, got ${err}`);
      assert.equal(err.code, c.error, err.message);
      if (PRE_HEADER.has(c.name)) assert.equal(err.seq, null);
      else assert.equal(typeof err.seq, 'number');
      return true;
    });
  });
}

test('decode of a payload not 4-byte aligned copies, with the same values', () => {
  const c = INDEX.valid.find((v) => v.name === 'f32_small');
  const msg = new Uint8Array(readBuffer(c.messages[0]));
  const shifted = new Uint8Array(msg.length + 1);
  shifted.set(msg, 1);
  const { header, payload } = decodeFrame(shifted.subarray(1));
  assert.equal(payload.byteOffset % 4, 1);
  const x = decodeTensor(header, payload);
  assert.notEqual(x.buffer, shifted.buffer);
  assertSameBits(x, new Float32Array(readBuffer(c.expected_f32)), 'unaligned');
  const out = new Float32Array(8);
  assert.equal(decodeTensor(header, payload, out), out, 'decodes into the given out');
  assertSameBits(out, x, 'out');
});

test('truncated inputs of every length are refused with a FrameError, never a crash', () => {
  const msg = new Uint8Array(readBuffer(INDEX.valid[0].messages[0]));
  for (let n = 0; n < msg.length; n++) {
    assert.throws(() => {
      const { header, payload } = decodeFrame(msg.subarray(0, n));
      decodeTensor(header, payload);
    }, (e) => e instanceof FrameError && ['truncated', 'bad_header'].includes(e.code), `length ${n}`);
  }
});

// ---------------------------------------------------------------------------------------
// Round trips

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Independent float16 reference in float64 arithmetic: round |x| / quantum to nearest, ties
 * to even; the quantum is 2^(e-10) for the binade of x, 2^-24 for subnormals.
 */
function refF16(x) {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const q = 2 ** (Math.max(e, -14) - 10);
  const r = a / q; // exact: q is a power of two
  let n = Math.floor(r);
  const frac = r - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n++;
  const y = n * q;
  return Math.sign(x) * (y >= 65520 ? Infinity : y) || (x < 0 ? -0 : 0);
}

test('round trip over random shapes, fragment sizes, seqs and dtypes', () => {
  const rand = mulberry32(20240601);
  for (let k = 0; k < 60; k++) {
    const ndim = 1 + Math.floor(rand() * 4);
    const shape = Array.from({ length: ndim }, () => 1 + Math.floor(rand() * 40));
    const n = shape.reduce((a, b) => a * b, 1);
    const maxMessage = 256 + Math.floor(rand() * 3841);
    const seq = Math.floor(rand() * 2 ** 32);
    const dtype = rand() < 0.5 ? DType.FLOAT32 : DType.FLOAT16;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = 1 - rand(), v = rand(); // Box-Muller, scaled to cover several binades
      x[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * 10 ** (rand() * 6 - 3);
    }
    const msgs = encodeFrame({ seq, captureMs: 3.25, split: 's-1.x', shape, dtype },
      encodeTensor(x, dtype), maxMessage);
    const what = `case ${k} shape [${shape}] max ${maxMessage} ${DTYPE_NAMES[dtype]}`;
    assert.ok(msgs.every((m) => m.byteLength <= maxMessage), what);
    const itemsize = dtype === DType.FLOAT32 ? 4 : 2;
    const { header, x: y } = decodeAll(msgs);
    assert.equal(header.seq, seq, what);
    assert.equal(header.captureMs, 3.25, what);
    assert.deepEqual(header.shape, shape, what);
    assert.equal(header.fragCount, msgs.length, what);
    assert.equal(msgs.length, Math.max(1, Math.ceil(n * itemsize / (maxMessage - header.headerLen))), what);
    const want = dtype === DType.FLOAT32 ? x : Float32Array.from(x, refF16);
    assertSameBits(y, want, what);
  }
});

test('fragmenting happens at maxMessage - header_len', () => {
  const h = { seq: 1, captureMs: 0, split: 'a', shape: [1] }; // header_len 48
  const room = 256 - 48;
  assert.equal(encodeFrame(h, new Uint8Array(room), 256).length, 1);
  const two = encodeFrame(h, new Uint8Array(room + 1), 256);
  assert.deepEqual(two.map((m) => m.byteLength), [256, 49]);
  assert.equal(new DataView(two[1]).getUint32(32, true), room, 'frag_offset');
  assert.equal(encodeFrame(h, new Uint8Array(0), 256).length, 1);
});

test('header_len is the fixed part + shape + split, zero-padded to the next multiple of 8', () => {
  for (const [shape, split, want] of [[[1], 'abc', 48], [[1, 2, 3], 'x', 56], [[1, 1], 'a', 56],
    [[1, 2, 3, 4, 5, 6, 7, 8], 'y'.repeat(64), 136], [[1], 'abcd', 48], [[1], 'abcde', 56]]) {
    const [m] = encodeFrame({ seq: 0, captureMs: 0, split, shape }, new Uint8Array(4));
    const bytes = new Uint8Array(m);
    assert.equal(new DataView(m).getUint16(4, true), want, `[${shape}] ${split}`);
    assert.equal(bytes.length, want + 4);
    const used = 40 + 4 * shape.length + split.length;
    assert.ok(bytes.subarray(used, want).every((b) => b === 0), 'padding is zeros');
    assert.equal(decodeFrame(m).header.headerLen, want);
  }
});

test('encoder refuses what it must never send', () => {
  const p = new Uint8Array(4);
  assert.throws(() => encodeFrame({ seq: 0, captureMs: 0, split: 'no spaces', shape: [1] }, p), RangeError);
  assert.throws(() => encodeFrame({ seq: 0, captureMs: 0, split: 'x'.repeat(65), shape: [1] }, p), RangeError);
  assert.throws(() => encodeFrame({ seq: 0, captureMs: 0, split: 's', shape: [1, 0] }, p), RangeError);
  assert.throws(() => encodeFrame({ seq: 0, captureMs: 0, split: 's', shape: new Array(9).fill(1) }, p), RangeError);
  assert.throws(() => encodeFrame({ seq: 2 ** 32, captureMs: 0, split: 's', shape: [1] }, p), RangeError);
  assert.throws(() => encodeFrame({ seq: 0, captureMs: 0, split: 's', shape: [1] }, p, 48), RangeError);
  assert.throws(() => encodeTensor(new Float32Array(1), DType.INT8), RangeError);
});

// ---------------------------------------------------------------------------------------
// float16

const F32BITS = (v) => new Uint32Array(Float32Array.of(v).buffer)[0];
const FROM_BITS = (b) => new Float32Array(Uint32Array.of(b).buffer)[0];

test('float16 encoding of known values (round to nearest even, like numpy)', () => {
  const cases = [
    [65504, 0x7bff], [65519.99, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-65504, 0xfbff],
    [2 ** -14, 0x0400], [6.1e-5, 0x03ff], [6.0975552e-5, 0x03ff], [2 ** -24, 0x0001],
    [2 ** -25, 0x0000], [FROM_BITS(F32BITS(2 ** -25) + 1), 0x0001], [1.5 * 2 ** -24, 0x0002],
    [2.5 * 2 ** -24, 0x0002], [1e-10, 0x0000], [-1e-10, 0x8000],
    [1 / 3, 0x3555], [-2, 0xc000], [1, 0x3c00], [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66],
    [Infinity, 0x7c00], [-Infinity, 0xfc00], [0, 0x0000], [-0, 0x8000], [NaN, 0x7e00],
  ];
  const x = Float32Array.from(cases, ([v]) => v);
  const enc = new Uint16Array(encodeTensor(x, DType.FLOAT16).buffer);
  cases.forEach(([v, bits], i) => {
    assert.equal(enc[i], bits, `${v}: got 0x${enc[i].toString(16)}, expected 0x${bits.toString(16)}`);
    assert.equal(f32BitsToF16Bits(F32BITS(v)), bits, `${v} (scalar)`);
  });
  // NaN payloads are kept in the top bits and never become infinity (numpy does the same)
  assert.equal(f32BitsToF16Bits(0x7f800001), 0x7c01);
  assert.equal(f32BitsToF16Bits(0xffc00001), 0xfe00);
});

test('float16 decoding of known values', () => {
  const cases = [[0x7bff, 65504], [0x0400, 2 ** -14], [0x03ff, 1023 * 2 ** -24], [0x0001, 2 ** -24],
    [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity], [0x8000, -0], [0x0000, 0],
    [0xc000, -2]];
  const payload = new Uint8Array(Uint16Array.from(cases, ([b]) => b).buffer);
  const header = { seq: 0, shape: [cases.length], dtype: DType.FLOAT16, codec: 0, compression: 0,
    payloadLen: payload.length };
  const y = decodeTensor(header, payload);
  cases.forEach(([b, v], i) => {
    assert.ok(Object.is(y[i], v), `0x${b.toString(16)} -> ${y[i]}, expected ${v}`);
    assert.ok(Object.is(FROM_BITS(f16BitsToF32Bits(b)), v));
  });
  assert.ok(Number.isNaN(FROM_BITS(f16BitsToF32Bits(0x7e00))));
  assert.equal(f16BitsToF32Bits(0x7c01), 0x7f802000, 'NaN payload kept');
});

test('float16 encoding agrees with an independent reference on random and edge floats', () => {
  const rand = mulberry32(7);
  const bits = new Uint32Array(40000);
  for (let i = 0; i < bits.length; i++) {
    // half uniform over all bit patterns, half in the exponents float16 can represent
    bits[i] = i % 2 ? Math.floor(rand() * 2 ** 32) >>> 0
      : (((Math.floor(rand() * 2) << 31) | ((0x60 + Math.floor(rand() * 0x30)) << 23) |
          Math.floor(rand() * 2 ** 23)) >>> 0);
  }
  const x = new Float32Array(bits.buffer);
  const enc = new Uint16Array(encodeTensor(x, DType.FLOAT16).buffer);
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i])) {
      assert.equal(enc[i] & 0x7c00, 0x7c00);
      assert.notEqual(enc[i] & 0x3ff, 0, 'NaN stays NaN');
      continue;
    }
    const want = refF16(x[i]);
    const got = FROM_BITS(f16BitsToF32Bits(enc[i]));
    assert.ok(Object.is(got, want), `0x${bits[i].toString(16)} (${x[i]}): got ${got}, expected ${want}`);
  }
});

test('float16 vector: payload equals numpy\'s astype(float16) of the source tensor', () => {
  const c = INDEX.valid.find((v) => v.dtype === 'float16');
  const { payload } = decodeFrame(readBuffer(c.messages[0]));
  const src = Float32Array.from({ length: 8 }, (_, i) => i * 0.5 - 1.0); // make_vectors' "small"
  assert.deepEqual(encodeTensor(src, DType.FLOAT16), payload.slice());
  assert.deepEqual(Array.from(new Uint16Array(payload.slice().buffer)),
    [0xbc00, 0xb800, 0x0000, 0x3800, 0x3c00, 0x3e00, 0x4000, 0x4100]);
});

test('float32 encoding is a zero-copy view of the tensor', () => {
  const x = new Float32Array([1, 2, 3]);
  const p = encodeTensor(x, DType.FLOAT32);
  assert.equal(p.buffer, x.buffer);
  assert.equal(p.byteLength, 12);
});

// ---------------------------------------------------------------------------------------
// Reassembly

function fragments(seq, maxMessage = 1024) {
  const x = new Float32Array(4 * 16 * 16).fill(seq);
  return encodeFrame({ seq, captureMs: 0, split: 'stage1', shape: [1, 4, 16, 16] }, encodeTensor(x), maxMessage);
}

function push(r, msg) {
  const { header, payload } = decodeFrame(msg);
  return r.push(header, payload);
}

test('a newer frame abandons an incomplete older one', () => {
  const r = new Reassembler();
  const old = fragments(1), neu = fragments(2);
  assert.ok(old.length > 2 && neu.length > 2);
  assert.deepEqual(push(r, old[0]), { frame: null, abandoned: null });
  assert.deepEqual(push(r, old[1]), { frame: null, abandoned: null });
  const abandoned = [];
  let done = null;
  for (const m of neu) {
    const res = push(r, m);
    if (res.abandoned) abandoned.push(res.abandoned.seq);
    done = res.frame;
  }
  assert.deepEqual(abandoned, [1]);
  assert.equal(done.header.seq, 2);
  assert.ok(decodeTensor(done.header, done.payload).every((v) => v === 2));
});

test('a restarted fragment 0 of the same seq abandons the partial frame', () => {
  const r = new Reassembler();
  const f = fragments(3);
  push(r, f[0]);
  assert.equal(push(r, f[0]).abandoned.seq, 3);
});

test('a single-fragment frame abandons an incomplete multi-fragment one', () => {
  const r = new Reassembler();
  push(r, fragments(4)[0]);
  const res = push(r, fragments(5, MAX_MESSAGE)[0]);
  assert.equal(res.abandoned.seq, 4);
  assert.equal(res.frame.header.seq, 5);
});

test('a fragment without its start is refused, and reports the frame it ended', () => {
  assert.throws(() => push(new Reassembler(), fragments(5)[1]),
    (e) => e instanceof FrameError && e.code === 'bad_fragment' && e.seq === 5 && e.abandoned === null);
  const r = new Reassembler();
  push(r, fragments(6)[0]);
  assert.throws(() => push(r, fragments(7)[1]),
    (e) => e.code === 'bad_fragment' && e.seq === 7 && e.abandoned.seq === 6);
});

test('a missing middle fragment is refused', () => {
  const r = new Reassembler();
  const f = fragments(8);
  push(r, f[0]);
  assert.throws(() => push(r, f[2]), (e) => e.code === 'bad_fragment' && e.seq === 8);
  // and the reassembler starts over cleanly
  let done = null;
  for (const m of fragments(9)) done = push(r, m).frame;
  assert.equal(done.header.seq, 9);
});

function withPayloadLen(msg, n) {
  const copy = msg.slice(0);
  new DataView(copy).setUint32(24, n, true);
  return copy;
}

test('fragments that end short of payload_len are truncated', () => {
  const r = new Reassembler();
  const f = fragments(10);
  const total = new DataView(f[0]).getUint32(24, true);
  assert.throws(() => { for (const m of f) push(r, withPayloadLen(m, total + 4)); },
    (e) => e.code === 'truncated' && e.seq === 10);
});

test('a payload_len no v1 frame can have is refused before allocating', () => {
  const f = fragments(11);
  assert.throws(() => push(new Reassembler(), withPayloadLen(f[0], MAX_PAYLOAD + 1)),
    (e) => e.code === 'bad_length' && e.seq === 11);
});

test('each frame gets its own buffer, so a kept tensor is not overwritten', () => {
  const r = new Reassembler();
  let a = null, b = null;
  for (const m of fragments(12)) a = push(r, m).frame ?? a;
  const xa = decodeTensor(a.header, a.payload);
  for (const m of fragments(13)) b = push(r, m).frame ?? b;
  decodeTensor(b.header, b.payload);
  assert.ok(xa.every((v) => v === 12));
});

test('shapePayloadBound is Python\'s frame.shape_payload_bound; the old name stays an alias', () => {
  // 4 n + (4 n) // 256 + 1024, the values Python gives for these n
  for (const [n, want] of [[0, 1024], [1, 1028], [64, 1281], [2048, 9248], [MAX_ELEMENTS, 4 * MAX_ELEMENTS + Math.floor(MAX_ELEMENTS / 64) + 1024]]) {
    assert.equal(shapePayloadBound(n), want, `n=${n}`);
  }
  assert.equal(MAX_PAYLOAD, shapePayloadBound(MAX_ELEMENTS));
  assert.equal(maxPayloadLen, shapePayloadBound);
  const src = readFileSync(new URL('../../static/js/wire/frame.js', import.meta.url), 'utf8');
  assert.match(src, /shape_payload_bound/);
  assert.doesNotMatch(src, /frame\.max_payload_len`\./);
});
