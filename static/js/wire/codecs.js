/**
 * Latent codecs in the browser: how a float32 tensor becomes payload bytes and back, the
 * twin of Python's `splitcore/wire/codecs.py` (`docs/wire-format.md`, section "Codecs").
 *
 * A codec is a quantizer (`dtype` and `codec` header bytes) optionally followed by a lossless
 * compressor (`compression`). Names, as on the Python command line:
 *
 *     float32 | float16 | int8-tensor | int8-channel | clip4   [+zlib | +zstd]
 *
 * Byte compatibility with Python is the point of this module, so it copies numpy's
 * arithmetic exactly: encoders compute `x / scale` (or `(x - lo) / step`) in float64, round
 * half to even ({@link rint}; `Math.round` rounds halves up), add the zero point and
 * saturate; decoders compute in float32 (`Math.fround` after every operation, as numpy does
 * for float32 arrays). `tests/vectors/` checks both sides produce the same bytes and tensors.
 *
 * zlib uses the platform's `CompressionStream` / `DecompressionStream('deflate')` (the
 * RFC 1950 format of Python's `zlib.compress`). zstd is not available here: frames
 * using it are refused with `bad_compression`, and the encoder will not produce them.
 *
 * An ES module with no dependencies beyond `frame.js`, for the browser and Node 20.
 * @module codecs
 */

import {
  Codec, Compression, DType, DTYPE_NAMES, FrameError, elementCount,
} from './frame.js';

/** Typed arrays use the platform's byte order; the wire is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Quantizer names, in Python's order (`codecs.QUANTIZERS`). */
export const QUANTIZERS = Object.freeze(['float32', 'float16', 'int8-tensor', 'int8-channel', 'clip4']);
/** Compressor suffixes and their header values (Python's `codecs.COMPRESSORS`). */
export const COMPRESSORS = Object.freeze({ zlib: Compression.ZLIB, zstd: Compression.ZSTD });
/** Compressions this peer can encode and decode (besides none). */
export const SUPPORTED_COMPRESSIONS = Object.freeze([Compression.ZLIB]);

const COMPRESSION_NAMES = Object.freeze({ 0: 'none', 1: 'zlib', 2: 'zstd' });
/**
 * Compressed bytes handed to the inflater at a time. deflate expands at most ~1032:1, so
 * however eagerly a platform inflates a written chunk, a bomb can make it produce at most
 * about 1 MB before we see the output and stop.
 */
const INFLATE_FEED = 1024;

// ---------------------------------------------------------------------------------------
// Codec "none": the elements are the values, little-endian float32 or float16.

const ITEMSIZE = { [DType.FLOAT32]: 4, [DType.FLOAT16]: 2 };
/** Parameter bytes each codec carries in the header (Python's `raw_size`). */
const PARAMS_LEN = { [Codec.NONE]: 0, [Codec.AFFINE_TENSOR]: 8, [Codec.AFFINE_CHANNEL]: 4, [Codec.CLIP4]: 8 };
const CODEC_NAMES = { 0: 'NONE', 1: 'AFFINE_TENSOR', 2: 'AFFINE_CHANNEL', 3: 'CLIP4' };

/**
 * Bytes of the quantized payload of `h` before compression (for codec none: the payload
 * itself), or FrameError for a frame no codec can decode: `bad_dtype` when dtype and codec do
 * not go together, `bad_params` when the params have the wrong length. Same codes and order
 * as Python's `codecs.raw_size` (alias `payload_size`).
 * @param {FrameHeader} h
 * @returns {number}
 */
export function payloadSize(h) {
  const n = elementCount(h.shape);
  let size;
  if (h.codec === Codec.NONE && ITEMSIZE[h.dtype] !== undefined) size = ITEMSIZE[h.dtype] * n;
  else if ((h.codec === Codec.AFFINE_TENSOR || h.codec === Codec.AFFINE_CHANNEL) && h.dtype === DType.INT8) size = n;
  else if (h.codec === Codec.CLIP4 && h.dtype === DType.UINT4) size = Math.floor((n + 1) / 2);
  else {
    throw new FrameError('bad_dtype', `dtype ${DTYPE_NAMES[h.dtype] ?? h.dtype} does not go with codec ` +
      `${CODEC_NAMES[h.codec] ?? h.codec}`, h.seq);
  }
  const want = PARAMS_LEN[h.codec];
  const got = h.params ? h.params.length : 0;
  if (got !== want) {
    throw new FrameError('bad_params', `codec ${CODEC_NAMES[h.codec]} takes ${want} parameter bytes, got ${got}`, h.seq);
  }
  return size;
}

/**
 * float32 bits -> float16 bits, round to nearest, ties to even; a transcription of numpy's
 * `npy_floatbits_to_halfbits`, so `encodeTensor(x, FLOAT16)` equals numpy's
 * `x.astype(np.float16)` bit for bit (overflow -> inf, subnormals, -0, NaN payload kept).
 * @param {number} f uint32 bits of a float32
 * @returns {number} uint16 bits of the float16
 */
export function f32BitsToF16Bits(f) {
  const hSgn = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  let fSig = f & 0x007fffff;
  if (fExp >= 0x47800000) { // overflow, inf or NaN
    if (fExp === 0x7f800000 && fSig !== 0) {
      let ret = 0x7c00 + (fSig >>> 13); // NaN: keep the top payload bits...
      if (ret === 0x7c00) ret++; // ...but make sure it stays a NaN
      return hSgn + ret;
    }
    return hSgn + 0x7c00; // inf, or finite overflow to inf
  }
  if (fExp <= 0x38000000) { // result is subnormal or zero
    if (fExp < 0x33000000) return hSgn; // below half the smallest subnormal: signed zero
    const e = fExp >>> 23;
    fSig = (0x00800000 + fSig) >>> (113 - e);
    // ties to even: skip the increment only on an exact tie with an even result (the shift
    // may have dropped up to 11 bits, which are checked in the original)
    if ((fSig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) fSig += 0x1000;
    return hSgn + (fSig >>> 13); // a carry into the exponent is the right answer
  }
  const hExp = (fExp - 0x38000000) >>> 13;
  if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000;
  return hSgn + ((fSig >>> 13) + hExp); // carry may reach 0x7c00 = inf, which is right
}

/**
 * float16 bits -> float32 bits, exact (numpy's `npy_halfbits_to_floatbits`).
 * @param {number} h uint16 bits
 * @returns {number} uint32 bits
 */
export function f16BitsToF32Bits(h) {
  const sgn = (h & 0x8000) << 16;
  const exp = h & 0x7c00;
  let sig = h & 0x03ff;
  if (exp === 0) {
    if (sig === 0) return sgn >>> 0; // signed zero
    let e = 113; // subnormal: normalise
    while ((sig & 0x0400) === 0) { sig <<= 1; e--; }
    return (sgn | (e << 23) | ((sig & 0x03ff) << 13)) >>> 0;
  }
  if (exp === 0x7c00) return (sgn | 0x7f800000 | (sig << 13)) >>> 0; // inf / NaN
  return (sgn | (((exp >>> 10) + 112) << 23) | (sig << 13)) >>> 0;
}

let F16_TO_F32 = null; // 256 KiB table, built on the first float16 decode
function f16Table() {
  if (F16_TO_F32 === null) {
    F16_TO_F32 = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) F16_TO_F32[i] = f16BitsToF32Bits(i);
  }
  return F16_TO_F32;
}

/**
 * Payload bytes for `x` with codec none. float32 is a zero-copy view of `x`'s bytes (on a
 * little-endian platform, i.e. every browser in practice); float16 converts like numpy's
 * `astype(np.float16)`.
 * @param {Float32Array} x tensor values, row-major
 * @param {number} [dtype] DType.FLOAT32 or DType.FLOAT16
 * @returns {Uint8Array}
 */
export function encodeTensor(x, dtype = DType.FLOAT32) {
  if (!(x instanceof Float32Array)) x = Float32Array.from(x);
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length); // Float32Array is 4-aligned
  if (dtype === DType.FLOAT32) {
    if (LITTLE_ENDIAN) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const out = new Uint8Array(x.byteLength);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < bits.length; i++) dv.setUint32(4 * i, bits[i], true);
    return out;
  }
  if (dtype === DType.FLOAT16) {
    const out = new Uint16Array(x.length);
    for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
    if (!LITTLE_ENDIAN) for (let i = 0; i < out.length; i++) out[i] = (out[i] >>> 8) | ((out[i] & 0xff) << 8);
    return new Uint8Array(out.buffer);
  }
  throw new RangeError(`dtype ${dtype} is not available with codec none`);
}

/**
 * The float32 tensor of a complete codec-none, uncompressed frame (flat, row-major;
 * `header.shape` gives its shape). Synchronous, so other frames are refused, each with the
 * code Python's `decode_tensor` gives where it can tell: `bad_dtype` / `bad_params` (see
 * {@link payloadSize}), `bad_length`, `bad_compression` for any compressed payload (it cannot
 * be inflated synchronously: use `decodeLatent` in `codecs.js`), `bad_params` for int8
 * per-channel (no calibration here, as Python without `channels`), and `bad_codec` for the
 * other quantizing codecs (use `decodeLatent`). A frame whose length does not match its shape
 * is refused instead of becoming a wrong tensor.
 *
 * float32 whose bytes start 4-byte aligned (always so for a message received as an
 * ArrayBuffer: header_len is a multiple of 8) is returned as a view, without copying; it
 * aliases the message/reassembly buffer. Otherwise the values are copied, into `out` when it
 * is given and has the right length (reuse it across frames to avoid allocation).
 *
 * @param {FrameHeader} header
 * @param {Uint8Array} payload the whole payload (a complete frame)
 * @param {Float32Array} [out]
 * @returns {Float32Array}
 */
export function decodeTensor(header, payload, out) {
  const size = payloadSize(header);
  if (payload.byteLength !== header.payloadLen) {
    throw new FrameError('bad_length', `payload is ${payload.byteLength} bytes, payload_len says ${header.payloadLen}`, header.seq);
  }
  if (header.compression !== Compression.NONE) {
    throw new FrameError('bad_compression', `compression ${header.compression} is not decoded by decodeTensor ` +
      '(synchronous, uncompressed only): use decodeLatent from codecs.js', header.seq);
  }
  if (payload.byteLength !== size) {
    throw new FrameError('bad_length', `${DTYPE_NAMES[header.dtype]}[${header.shape}] needs ${size} bytes, ` +
      `got ${payload.byteLength} (payload_len ${header.payloadLen})`, header.seq);
  }
  if (header.codec === Codec.AFFINE_CHANNEL) {
    throw new FrameError('bad_params', 'int8-channel frame needs this receiver\'s calibration: ' +
      'use decodeLatent from codecs.js', header.seq);
  }
  if (header.codec !== Codec.NONE) {
    throw new FrameError('bad_codec', `codec ${CODEC_NAMES[header.codec]} is not decoded by decodeTensor ` +
      '(codec none only): use decodeLatent from codecs.js', header.seq);
  }
  const n = elementCount(header.shape);
  const dst = out instanceof Float32Array && out.length === n ? out : null;
  if (header.dtype === DType.FLOAT32) {
    if (LITTLE_ENDIAN) {
      if (dst === null && payload.byteOffset % 4 === 0) {
        return new Float32Array(payload.buffer, payload.byteOffset, n);
      }
      const res = dst ?? new Float32Array(n);
      new Uint8Array(res.buffer, res.byteOffset, res.byteLength).set(payload);
      return res;
    }
    const res = dst ?? new Float32Array(n);
    const bits = new Uint32Array(res.buffer, res.byteOffset, n);
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    for (let i = 0; i < n; i++) bits[i] = dv.getUint32(4 * i, true);
    return res;
  }
  // float16
  const table = f16Table();
  const res = dst ?? new Float32Array(n);
  const bits = new Uint32Array(res.buffer, res.byteOffset, n);
  if (LITTLE_ENDIAN && payload.byteOffset % 2 === 0) {
    const src = new Uint16Array(payload.buffer, payload.byteOffset, n);
    for (let i = 0; i < n; i++) bits[i] = table[src[i]];
  } else {
    for (let i = 0; i < n; i++) bits[i] = table[payload[2 * i] | (payload[2 * i + 1] << 8)];
  }
  return res;
}

// ---------------------------------------------------------------------------------------
// Rounding

/**
 * Round to the nearest integer, halves to even: numpy's `np.rint`, which the Python encoder
 * uses. `Math.round` rounds halves towards +Infinity (2.5 -> 3, -2.5 -> -2), which would
 * make one code in every tie differ from Python's.
 *
 * Exact for every double: `Math.round(v) - v` is computed without rounding error (both lie
 * within 0.5 of each other and the integer is a multiple of v's ulp). Keeps the sign of a
 * zero result (rint(-0.5) is -0, as in numpy) and passes NaN and infinities through.
 * @param {number} v
 * @returns {number}
 */
export function rint(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The smallest positive float32 (a subnormal, 2^-149): numpy's `finfo(float32).smallest_subnormal`. */
export const SMALLEST_SUBNORMAL_F32 = 2 ** -149;

const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);
const fround = Math.fround;

// ---------------------------------------------------------------------------------------
// Calibration and codec names

/**
 * Per-channel int8 parameters: channel `c` is the `c`-th of `scale.length` equal contiguous
 * blocks of the flattened latent (for [1,C,H,W], exactly the C channels).
 * @typedef {object} ChannelCalibration
 * @property {Float32Array} scale     float32, as Python's `np.asarray(scale, np.float32)`
 * @property {Int32Array} zeroPoint   within [-128, 127]
 * @property {() => Promise<Uint8Array>} fingerprint  first 4 bytes of sha256(scale as <f4,
 *   zero_point as <i4); computed once (async: WebCrypto)
 */

const CHANNELS = new WeakMap(); // manifest object -> ChannelCalibration, so frames reuse it

/**
 * A {@link ChannelCalibration} from a manifest's `calibration.int8_channel`
 * (`{scale: number[], zero_point: number[]}`); an object this function returned is passed
 * through. Refuses (TypeError/RangeError) parameters Python would quantize garbage with:
 * unequal lengths, no channels, a scale that is not a positive finite float32, a zero point
 * that is not an integer in [-128, 127].
 * @param {{scale: ArrayLike<number>, zero_point: ArrayLike<number>}|ChannelCalibration} c
 * @returns {ChannelCalibration}
 */
export function channelCalibration(c) {
  if (c === null || typeof c !== 'object') throw new TypeError('int8-channel calibration must be an object {scale, zero_point}');
  if (c.scale instanceof Float32Array && c.zeroPoint instanceof Int32Array && typeof c.fingerprint === 'function') return c;
  const cached = CHANNELS.get(c);
  if (cached) return cached;
  const rawScale = c.scale, rawZp = c.zero_point ?? c.zeroPoint;
  if (!rawScale || !rawZp || typeof rawScale.length !== 'number' || typeof rawZp.length !== 'number') {
    throw new TypeError('int8-channel calibration needs "scale" and "zero_point" arrays');
  }
  if (rawScale.length < 1 || rawScale.length !== rawZp.length) {
    throw new RangeError(`int8-channel calibration: ${rawScale.length} scales and ${rawZp.length} zero points ` +
      '(need the same number, at least 1)');
  }
  const scale = Float32Array.from(rawScale, Number);
  const zeroPoint = new Int32Array(rawZp.length);
  for (let i = 0; i < scale.length; i++) {
    if (!(scale[i] > 0) || scale[i] === Infinity) {
      throw new RangeError(`int8-channel calibration: scale[${i}] = ${rawScale[i]} is not a positive finite float32`);
    }
    const z = Number(rawZp[i]);
    if (!Number.isInteger(z) || z < -128 || z > 127) {
      throw new RangeError(`int8-channel calibration: zero_point[${i}] = ${rawZp[i]} is not an integer in [-128, 127]`);
    }
    zeroPoint[i] = z;
  }
  let digest = null;
  const cal = Object.freeze({
    scale, zeroPoint,
    fingerprint: () => (digest ??= calibrationFingerprint(scale, zeroPoint)),
  });
  CHANNELS.set(c, cal);
  return cal;
}

/** sha256(scale <f4 || zero_point <i4)[:4], as Python's `ChannelCalibration.fingerprint`. */
async function calibrationFingerprint(scale, zeroPoint) {
  const bytes = new Uint8Array(8 * scale.length);
  const dv = new DataView(bytes.buffer);
  const c = scale.length;
  for (let i = 0; i < c; i++) {
    dv.setFloat32(4 * i, scale[i], true);
    dv.setInt32(4 * c + 4 * i, zeroPoint[i], true);
  }
  const subtle = globalThis.crypto?.subtle;
  if (subtle) return new Uint8Array(await subtle.digest('SHA-256', bytes)).slice(0, 4);
  // crypto.subtle exists only in secure contexts (https, localhost): a page opened over plain
  // http on a LAN address falls back to the pure-JS digest, loaded only then.
  const { sha256HexSync } = await import('./sha256.js');
  const hex = sha256HexSync(bytes);
  return Uint8Array.from({ length: 4 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

/**
 * A parsed codec name plus what it needs from the manifest for one split.
 * @typedef {object} CodecSpec
 * @property {string} name            canonical name, e.g. "clip4+zlib"
 * @property {string} quantizer       one of {@link QUANTIZERS}
 * @property {number} compression     {@link Compression}
 * @property {[number, number]|null} clip  calibrated [lo, hi] for clip4
 * @property {ChannelCalibration|null} channels  for int8-channel
 */

/**
 * `"clip4+zlib"` -> {@link CodecSpec}, like Python's `codecs.parse`, taking the clip range or
 * the per-channel parameters from the split's `calibration` (`manifest.json`:
 * `splits[i].calibration`, the same shape as `tests/vectors/index.json`'s `calibration`).
 *
 * zstd names parse (so a name from a Python peer or the manifest is understood), but
 * {@link encodeLatent} refuses them: see {@link SUPPORTED_COMPRESSIONS}.
 * @param {string} name
 * @param {{clip?: [number, number], int8_channel?: {scale: number[], zero_point: number[]}}|null} [calibration]
 * @returns {CodecSpec}
 */
export function parseCodec(name, calibration = null) {
  const plus = typeof name === 'string' ? name.indexOf('+') : -1;
  const quant = plus < 0 ? name : name.slice(0, plus);
  const comp = plus < 0 ? null : name.slice(plus + 1);
  if (!QUANTIZERS.includes(quant) || (comp !== null && !Object.hasOwn(COMPRESSORS, comp))) {
    throw new RangeError(`unknown codec ${JSON.stringify(name)}: use one of ${QUANTIZERS.join(', ')}, ` +
      `optionally followed by +${Object.keys(COMPRESSORS).join(', +')}`);
  }
  const cal = calibration ?? {};
  let clip = null, channels = null;
  if (quant === 'clip4') {
    if (!cal.clip) throw new RangeError("clip4 needs the split's calibrated clip range (manifest 'calibration.clip')");
    const lo = Number(cal.clip[0]), hi = Number(cal.clip[1]);
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) {
      throw new RangeError(`clip range [${cal.clip}] must be finite with hi > lo`);
    }
    // What decoders refuse (bad_params) or decode to infinities must not be produced, as
    // Python's `parse`: lo and step go on the wire as float32 and decoding computes
    // lo + 15 * step in float32, so all three must be finite there and the step positive.
    const { lo32, step32, top32 } = clipParams(lo, hi);
    if (!(Number.isFinite(lo32) && Number.isFinite(top32) && Number.isFinite(step32) && step32 > 0)) {
      throw new RangeError(`clip range [${lo}, ${hi}] gives lo ${lo32}, step ${step32} and top value ${top32} ` +
        'in float32: all must be finite and the step positive');
    }
    clip = Object.freeze([lo, hi]);
  }
  if (quant === 'int8-channel') {
    if (!cal.int8_channel) {
      throw new RangeError("int8-channel needs calibrated per-channel parameters (manifest 'calibration.int8_channel')");
    }
    channels = channelCalibration(cal.int8_channel);
  }
  const compression = comp === null ? Compression.NONE : COMPRESSORS[comp];
  return Object.freeze({ name: comp === null ? quant : `${quant}+${comp}`, quantizer: quant, compression, clip, channels });
}

/**
 * clip4's lo and step as they go on the wire (float32) for a calibrated range, and the value
 * code 15 decodes to (float32 arithmetic, as decoders do): Python's `codecs._clip_params`.
 * @param {number} lo
 * @param {number} hi
 * @returns {{lo32: number, step32: number, top32: number}}
 */
export function clipParams(lo, hi) {
  const lo32 = fround(lo), step32 = fround((hi - lo) / 15);
  return { lo32, step32, top32: fround(lo32 + fround(15 * step32)) };
}

// ---------------------------------------------------------------------------------------
// Encode

/**
 * Encode a float32 latent with `spec`: the header fields and the payload, the same bytes as
 * Python's `codecs.encode` (quantized bytes and params exactly; zlib output may differ
 * between zlib builds but inflates to the same bytes). Pass the result's fields to
 * `encodeFrame` together with seq/captureMs/split/shape.
 *
 * Refuses (RangeError) what Python would encode into garbage or a frame receivers refuse:
 * NaN for the quantizing codecs, infinities for int8-tensor (its range comes from min/max),
 * an element count that does not split into the calibration's channels, zstd, and a
 * compressed payload over the spec's `4 * elements + 1024` bytes.
 *
 * @param {Float32Array} x     tensor values, row-major (float32 payloads view x, no copy)
 * @param {number[]} shape     its shape, batch dimension included
 * @param {CodecSpec} spec     from {@link parseCodec}
 * @returns {Promise<{dtype: number, codec: number, compression: number, params: Uint8Array, payload: Uint8Array}>}
 */
export async function encodeLatent(x, shape, spec) {
  if (!(x instanceof Float32Array)) throw new TypeError('encodeLatent takes a Float32Array');
  const n = elementCount(shape);
  if (x.length !== n) throw new RangeError(`${x.length} values do not fill shape [${shape}] (${n} elements)`);
  if (spec.compression !== Compression.NONE && !SUPPORTED_COMPRESSIONS.includes(spec.compression)) {
    throw new RangeError(`${COMPRESSION_NAMES[spec.compression] ?? spec.compression} compression is not supported ` +
      'by this peer (browser: zlib only)');
  }
  const { dtype, codec, params, raw } = quantize(x, spec);
  const fullParams = codec === Codec.AFFINE_CHANNEL ? await channelCalibration(spec.channels).fingerprint() : params;
  let payload = raw;
  if (spec.compression === Compression.ZLIB) {
    payload = await deflate(raw);
    const most = maxPayloadLen({ shape, dtype, codec, compression: spec.compression, params: fullParams, seq: null });
    if (payload.length > most) {
      throw new RangeError(`zlib payload of ${payload.length} bytes exceeds the ${most} bytes receivers accept: ` +
        'receivers would refuse the frame (bad_length); send it uncompressed');
    }
  }
  return { dtype, codec, compression: spec.compression, params: fullParams, payload };
}

/**
 * The codec stage alone (Python's `codecs._quantize`): `{dtype, codec, params, raw}`, with
 * `params` null for int8-channel (its fingerprint is async; {@link encodeLatent} adds it).
 */
function quantize(x, spec) {
  const q = spec.quantizer;
  if (q === 'float32') return { dtype: DType.FLOAT32, codec: Codec.NONE, params: new Uint8Array(0), raw: encodeTensor(x, DType.FLOAT32) };
  if (q === 'float16') return { dtype: DType.FLOAT16, codec: Codec.NONE, params: new Uint8Array(0), raw: encodeTensor(x, DType.FLOAT16) };
  const n = x.length;
  if (q === 'int8-tensor') {
    let lo = 0, hi = 0; // the range always includes 0, so ReLU zeros stay exact zeros
    for (let i = 0; i < n; i++) {
      const v = x[i];
      if (!Number.isFinite(v)) throw new RangeError(`int8-tensor cannot encode ${v} (element ${i})`);
      if (v < lo) lo = v;
      else if (v > hi) hi = v;
    }
    let scale = hi > lo ? fround((hi - lo) / 255) : 1;
    // a range of a few subnormals: (hi - lo) / 255 underflows float32 to 0, which decoders
    // refuse (bad_params); Python floors it at the smallest subnormal too
    if (scale === 0) scale = SMALLEST_SUBNORMAL_F32;
    const zp = clamp(rint(-128 - lo / scale), -128, 127);
    const raw = new Int8Array(n);
    for (let i = 0; i < n; i++) raw[i] = clamp(rint(x[i] / scale) + zp, -128, 127);
    const params = new Uint8Array(8);
    const dv = new DataView(params.buffer);
    dv.setFloat32(0, scale, true);
    dv.setInt32(4, zp, true);
    return { dtype: DType.INT8, codec: Codec.AFFINE_TENSOR, params, raw: new Uint8Array(raw.buffer) };
  }
  if (q === 'int8-channel') {
    const { scale, zeroPoint } = channelCalibration(spec.channels);
    const c = scale.length;
    if (n % c) throw new RangeError(`${n} elements do not split into ${c} calibrated channels`);
    const block = n / c;
    const raw = new Int8Array(n);
    for (let ch = 0, i = 0; ch < c; ch++) {
      const s = scale[ch], z = zeroPoint[ch];
      for (const end = i + block; i < end; i++) {
        if (Number.isNaN(x[i])) throw new RangeError(`int8-channel cannot encode NaN (element ${i})`);
        raw[i] = clamp(rint(x[i] / s) + z, -128, 127);
      }
    }
    return { dtype: DType.INT8, codec: Codec.AFFINE_CHANNEL, params: null, raw: new Uint8Array(raw.buffer) };
  }
  if (q === 'clip4') {
    const { lo32, step32: step } = clipParams(...spec.clip);
    const raw = new Uint8Array((n + 1) >> 1); // an odd count leaves the last high nibble 0
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(x[i])) throw new RangeError(`clip4 cannot encode NaN (element ${i})`);
      const code = clamp(rint((x[i] - lo32) / step), 0, 15);
      raw[i >> 1] |= i & 1 ? code << 4 : code; // element 2i low nibble, 2i+1 high nibble
    }
    const params = new Uint8Array(8);
    const dv = new DataView(params.buffer);
    dv.setFloat32(0, lo32, true);
    dv.setFloat32(4, step, true);
    return { dtype: DType.UINT4, codec: Codec.CLIP4, params, raw };
  }
  throw new RangeError(`unknown quantizer ${JSON.stringify(q)}`);
}

// ---------------------------------------------------------------------------------------
// Decode

/**
 * The largest `payload_len` a frame with `h`'s shape, dtype, codec and compression can
 * legitimately carry: the quantized size ({@link payloadSize}, which throws `bad_dtype` /
 * `bad_params` for a frame no codec can decode) for no compression, plus the compressor's
 * worst case on incompressible input for zlib / zstd: zlib's `compressBound` (stored
 * blocks: 5 bytes every 16 KiB, plus header and checksum, rounded up by its shifts) and
 * zstd's `ZSTD_COMPRESSBOUND` (n/256, plus a margin for inputs under 128 KiB). The twin of
 * Python's `codecs.max_payload_len`; a receiver's `Reassembler` limit.
 * @param {import('./frame.js').FrameHeader} h
 * @returns {number}
 */
export function maxPayloadLen(h) {
  const n = payloadSize(h);
  if (h.compression === Compression.ZLIB) return n + (n >>> 12) + (n >>> 14) + Math.floor(n / 2 ** 25) + 13;
  if (h.compression === Compression.ZSTD) return n + (n >>> 8) + (n < 131072 ? (131072 - n) >>> 11 : 0);
  return n;
}

/**
 * Refuse codec parameters no encoder produces (`bad_params`): int8-tensor's scale must be a
 * positive finite float32, clip4's lo finite and its step positive and finite. Decoding with
 * them would give NaN or infinite latents, and a tail that answers garbage.
 */
function checkParams(h) {
  if (h.codec !== Codec.AFFINE_TENSOR && h.codec !== Codec.CLIP4) return;
  const pv = new DataView(h.params.buffer, h.params.byteOffset, h.params.byteLength);
  const a = pv.getFloat32(0, true);
  if (h.codec === Codec.AFFINE_TENSOR) {
    if (!(Number.isFinite(a) && a > 0)) throw new FrameError('bad_params', `int8-tensor scale ${a} is not positive and finite`, h.seq);
    return;
  }
  const step = pv.getFloat32(4, true);
  if (!Number.isFinite(a) || !(Number.isFinite(step) && step > 0)) {
    throw new FrameError('bad_params', `clip4 lo ${a} / step ${step}: lo must be finite, step positive and finite`, h.seq);
  }
}


/**
 * The float32 tensor of a complete frame (flat, row-major; `header.shape` gives its shape),
 * bit-identical to Python's `codecs.decode_tensor`, with the same checks, order and codes:
 * `bad_dtype` (dtype does not go with codec), `bad_params` (wrong params length), `bad_length`
 * (payload vs payload_len, or decompressed size vs dtype and shape), `bad_compression` (does
 * not inflate, inflates past the expected size, or zstd, which this peer cannot
 * decompress), `bad_params` for an int8-channel frame without `channels` or with another
 * calibration's fingerprint. One addition: `bad_shape` for an int8-channel frame whose element
 * count does not split into the calibration's channels (Python raises a plain ValueError).
 *
 * Uncompressed float32 payloads are returned as a view, like `decodeTensor` in `frame.js`.
 *
 * @param {import('./frame.js').FrameHeader} header   from decodeFrame / Reassembler
 * @param {Uint8Array} payload   the whole payload of the frame
 * @param {{channels?: ChannelCalibration|{scale: number[], zero_point: number[]}|null,
 *          out?: Float32Array|null}} [opts]  `channels`: this receiver's calibration for the
 *   frame's split (needed for int8-channel); `out`: written into when its length fits
 * @returns {Promise<Float32Array>}
 */
export async function decodeLatent(header, payload, { channels = null, out = null } = {}) {
  const size = payloadSize(header);
  checkParams(header);
  const raw = await decompress(header, payload, size);
  if (raw.length !== size) {
    throw new FrameError('bad_length', `codec ${header.codec} dtype ${header.dtype} [${header.shape}] needs ${size} ` +
      `bytes, got ${raw.length} (payload_len ${header.payloadLen})`, header.seq);
  }
  return dequantize(header, raw, channels, out);
}

async function decompress(h, payload, size) {
  if (payload.byteLength !== h.payloadLen) {
    throw new FrameError('bad_length', `payload is ${payload.byteLength} bytes, payload_len says ${h.payloadLen}`, h.seq);
  }
  if (h.compression === Compression.NONE) return payload;
  if (h.compression === Compression.ZLIB) return inflateBounded(payload, size, h.seq);
  const name = COMPRESSION_NAMES[h.compression];
  throw new FrameError('bad_compression', name
    ? `${name} compression is not supported by this peer (browser: zlib only)`
    : `unknown Compression ${h.compression}`, h.seq);
}

async function dequantize(h, raw, channels, out) {
  const n = elementCount(h.shape);
  if (h.codec === Codec.NONE) {
    return decodeTensor({ ...h, compression: Compression.NONE, payloadLen: raw.length }, raw, out ?? undefined);
  }
  const res = out instanceof Float32Array && out.length === n ? out : new Float32Array(n);
  const pv = new DataView(h.params.buffer, h.params.byteOffset, h.params.byteLength);
  if (h.codec === Codec.AFFINE_TENSOR) {
    const scale = pv.getFloat32(0, true), zp = fround(pv.getInt32(4, true));
    const q = new Int8Array(raw.buffer, raw.byteOffset, n);
    for (let i = 0; i < n; i++) res[i] = fround(fround(q[i] - zp) * scale); // numpy float32: (q - zp) * scale
    return res;
  }
  if (h.codec === Codec.AFFINE_CHANNEL) {
    const cal = channels === null || channels === undefined ? null : channelCalibration(channels);
    const mine = cal === null ? null : await cal.fingerprint();
    if (mine === null || mine.some((b, i) => b !== h.params[i])) {
      throw new FrameError('bad_params', 'int8-channel frame calibrated differently from this receiver\'s manifest ' +
        `(fingerprint mismatch${mine === null ? ': no calibration given' : ''})`, h.seq);
    }
    const c = cal.scale.length;
    if (n % c) throw new FrameError('bad_shape', `${n} elements do not split into ${c} calibrated channels`, h.seq);
    const block = n / c;
    const q = new Int8Array(raw.buffer, raw.byteOffset, n);
    for (let ch = 0, i = 0; ch < c; ch++) {
      const s = cal.scale[ch], z = fround(cal.zeroPoint[ch]);
      for (const end = i + block; i < end; i++) res[i] = fround(fround(q[i] - z) * s);
    }
    return res;
  }
  if (h.codec === Codec.CLIP4) {
    const lo = pv.getFloat32(0, true), step = pv.getFloat32(4, true);
    for (let i = 0; i < n; i++) {
      const code = i & 1 ? raw[i >> 1] >> 4 : raw[i >> 1] & 0x0f;
      res[i] = fround(lo + fround(code * step)); // numpy float32: lo + q * step
    }
    return res;
  }
  throw new FrameError('bad_codec', `unknown Codec ${h.codec}`, h.seq);
}

// ---------------------------------------------------------------------------------------
// zlib via the platform's (De)CompressionStream('deflate'), i.e. RFC 1950 like Python's zlib

/** zlib-compress `raw` (whole, one stream), as Python's `zlib.compress(raw, 6)` modulo build. */
async function deflate(raw) {
  const cs = new CompressionStream('deflate');
  const writer = cs.writable.getWriter();
  const writing = writer.write(raw).then(() => writer.close());
  const reader = cs.readable.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  await writing;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) { out.set(c, off); off += c.length; }
  return out;
}

/**
 * Inflate a zlib stream that must give `size` bytes, never holding much more: input is fed
 * {@link INFLATE_FEED} bytes at a time and reading stops as soon as the output passes
 * `size + 1` bytes (a decompression bomb: `bad_compression`, as Python, whose bounded
 * `decompress(payload, size + 1)` then has not reached the end of the stream). A stream that
 * ends early or is corrupt (bad checksum, junk) is `bad_compression`; one that ends at a
 * different size is returned as is, for the caller's `bad_length`.
 */
async function inflateBounded(payload, size, seq) {
  const Stream = globalThis.DecompressionStream;
  if (typeof Stream !== 'function') {
    throw new FrameError('bad_compression', 'zlib is not supported by this peer (no DecompressionStream)', seq);
  }
  const ds = new Stream('deflate');
  const writer = ds.writable.getWriter();
  const reader = ds.readable.getReader();
  let stopped = false;
  const feeding = (async () => {
    for (let off = 0; off < payload.length && !stopped; off += INFLATE_FEED) {
      await writer.write(payload.subarray(off, off + INFLATE_FEED));
    }
    if (!stopped) await writer.close();
  })().catch(() => {}); // a failed write or close also errors the readable: reported below
  const out = new Uint8Array(size + 1);
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.length > out.length) {
        throw new FrameError('too_large', `zlib payload inflates beyond the ${size} bytes its dtype and shape need`, seq);
      }
      out.set(value, total);
      total += value.length;
    }
  } catch (err) {
    stopped = true;
    reader.cancel().catch(() => {});
    if (err instanceof FrameError) throw err;
    throw new FrameError('bad_compression', `zlib payload does not decompress: ${err?.message ?? err}`, seq);
  }
  await feeding;
  return out.subarray(0, total);
}
