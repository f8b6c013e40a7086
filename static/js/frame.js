/**
 * The latent frame on the data channel: header layout, encoding into <= 64 KiB messages,
 * decoding, reassembly, codec "none" tensors, and the JSON text messages.
 *
 * `docs/wire-format.md` is the specification and `splitcore/wire/frame.py` + `splitcore/wire/codecs.py`
 * are the Python twin. Both test suites read `tests/vectors/`, which keeps the two
 * byte-compatible: this module must produce the same bytes as Python's `encode` and report
 * the same error code as Python's `decode` + `decode_tensor` for every malformed message.
 *
 * An ES module with no dependencies, so the same file runs in the browser and in Node 20.
 * @module frame
 */

/** First two bytes of every latent frame, "SR". */
export const MAGIC = Object.freeze([0x53, 0x52]);
/** Wire-format version this side speaks. */
export const VERSION = 1;
/** `msg_type` of a latent frame (the only binary message type in version 1). */
export const MSG_LATENT = 1;
/**
 * Largest message either side sends: aiortc advertises `max-message-size:65536` and does not
 * enforce the peer's limit on send, so we hold ourselves to it.
 */
export const MAX_MESSAGE = 65536;
/** Most tensor dimensions a header can carry. */
export const MAX_NDIM = 8;
/** Most elements a tensor may have (2^24); bounds what a decoder ever allocates. */
export const MAX_ELEMENTS = 1 << 24;
/** Size of the fixed part of the header, before shape, split id and params. */
export const FIXED_SIZE = 40;
/** Longest split id. */
export const MAX_SPLIT_LEN = 64;
/**
 * Largest payload a version-1 frame can need: MAX_ELEMENTS float32 elements. The Reassembler
 * refuses a larger `payload_len` before allocating for it (see {@link Reassembler}).
 */
export const MAX_PAYLOAD = maxPayloadLen(MAX_ELEMENTS);

/**
 * The largest `payload_len` a frame of `n` elements may declare: 4 bytes a value, plus the
 * worst-case expansion of any compressor on incompressible data (under 1/256, plus 1 KiB).
 * Same rule as Python's `splitcore.wire.frame.max_payload_len`.
 * @param {number} n
 */
export function maxPayloadLen(n) {
  return 4 * n + Math.floor((4 * n) / 256) + 1024;
}

/** Element type on the wire (`dtype` header byte). */
export const DType = Object.freeze({ FLOAT32: 1, FLOAT16: 2, INT8: 3, UINT8: 4, UINT4: 5 });
/**
 * How elements map back to float32 (`codec` header byte), as Python's `frame.Codec`. This
 * module decodes only NONE ({@link decodeTensor}); `codecs.js` decodes them all.
 */
export const Codec = Object.freeze({ NONE: 0, AFFINE_TENSOR: 1, AFFINE_CHANNEL: 2, CLIP4: 3 });
/**
 * Lossless stage after the codec (`compression` header byte), as Python's
 * `frame.Compression`. decodeFrame accepts every value so that a frame this peer cannot
 * decompress still gets Python's error code; `codecs.js` decompresses (zlib only).
 */
// 3 was lz4, retired (docs/wire-format.md): frames with it are refused as an unknown compression.
export const Compression = Object.freeze({ NONE: 0, ZLIB: 1, ZSTD: 2 });

/** dtype names as they appear in `tests/vectors/index.json` and in the UI. */
export const DTYPE_NAMES = Object.freeze({
  1: 'float32', 2: 'float16', 3: 'int8', 4: 'uint8', 5: 'uint4',
});

/**
 * Every error code a peer can put in an `error` message's `reason` (decoder codes plus the
 * receiver's own `unknown_split` / `shape_mismatch`); the strings are identical to Python's.
 */
export const ERROR_CODES = Object.freeze([
  'bad_magic', 'bad_version', 'bad_type', 'truncated', 'bad_header', 'bad_dtype', 'bad_codec',
  'bad_compression', 'bad_params', 'bad_shape', 'bad_length', 'bad_fragment', 'unknown_split',
  'shape_mismatch',
]);

const DTYPE_VALUES = new Set(Object.values(DType));
const CODEC_VALUES = new Set(Object.values(Codec));
const COMPRESSION_VALUES = new Set(Object.values(Compression));
const SPLIT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SPLIT_BYTE_OK = (b) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
  b === 0x5f || b === 0x2e || b === 0x2d;
const EMPTY = new Uint8Array(0);
/** Typed arrays use the platform's byte order; the wire is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A message that is not a valid frame. Thrown (never a crash) so a receiver can answer with
 * an `error` message whose `reason` is {@link FrameError#code}.
 */
export class FrameError extends Error {
  /**
   * @param {string} code   the spec's error code, e.g. "truncated" (same strings as Python)
   * @param {string} detail human-readable explanation
   * @param {number|null} [seq] the frame's seq when the header was readable, else null
   */
  constructor(code, detail, seq = null) {
    super(`${code}: ${detail}`);
    this.name = 'FrameError';
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.detail = detail;
    /** @type {number|null} */
    this.seq = seq ?? null;
    /**
     * Set by {@link Reassembler#push} when the failing fragment also ended an older,
     * incomplete frame, so the sender can still be told that older frame was dropped.
     * @type {FrameHeader|null}
     */
    this.abandoned = null;
  }
}

/**
 * Everything in a frame but the payload bytes.
 * @typedef {object} FrameHeader
 * @property {number} seq          u32 frame sequence number
 * @property {number} captureMs    sender's capture time (f64 ms), echoed in replies
 * @property {string} split        split point id
 * @property {number[]} shape      tensor shape, batch dimension included
 * @property {number} dtype        {@link DType}
 * @property {number} codec        {@link Codec}
 * @property {number} compression  {@link Compression}
 * @property {number} payloadLen   bytes of the whole encoded tensor
 * @property {number} fragIndex    0-based index of this fragment
 * @property {number} fragCount    number of fragments
 * @property {number} fragOffset   where this fragment's bytes start in the payload
 * @property {Uint8Array} params   codec parameters (empty for codec 0)
 * @property {number} headerLen    bytes before the payload (as read from / written to the wire)
 */

/** Product of the dimensions. */
export function elementCount(shape) {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Header length for this shape / split / params: fixed part + variable part, padded to 8. */
export function headerLength(shape, split, params = EMPTY) {
  return (FIXED_SIZE + 4 * shape.length + split.length + params.length + 7) & ~7;
}

function checkUint(name, v, max) {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${name} ${v} must be an integer in 0..${max}`);
  }
}

/**
 * Serialise the header fields that are the same on every fragment, with the fragment fields
 * zero; {@link encodeFrame} patches those per fragment. Refuses (RangeError/TypeError) what
 * Python's `pack_header` refuses and anything that would not fit its field.
 */
function packTemplate(h, payloadLen) {
  const { seq, captureMs, split, shape } = h;
  const dtype = h.dtype ?? DType.FLOAT32;
  const codec = h.codec ?? Codec.NONE;
  const compression = h.compression ?? Compression.NONE;
  const params = h.params ?? EMPTY;
  if (typeof split !== 'string' || !SPLIT_RE.test(split)) {
    throw new RangeError(`split id ${JSON.stringify(split)} must match ${SPLIT_RE.source}`);
  }
  if (!Array.isArray(shape) && !ArrayBuffer.isView(shape)) throw new TypeError('shape must be an array');
  if (shape.length < 1 || shape.length > MAX_NDIM) {
    throw new RangeError(`shape [${shape}] must have 1..${MAX_NDIM} dimensions`);
  }
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1 || d > 0xffffffff) {
      throw new RangeError(`shape [${shape}]: each dimension must be an integer >= 1 (u32)`);
    }
  }
  checkUint('seq', seq, 0xffffffff);
  if (typeof captureMs !== 'number') throw new TypeError('captureMs must be a number');
  checkUint('dtype', dtype, 0xff);
  checkUint('codec', codec, 0xff);
  checkUint('compression', compression, 0xff);
  checkUint('params length', params.length, 0xffff);
  checkUint('payload length', payloadLen, 0xffffffff);
  const hlen = headerLength(shape, split, params);
  checkUint('header_len', hlen, 0xffff);

  const bytes = new Uint8Array(hlen); // zero-filled: padding, flags, reserved, fragment fields
  const dv = new DataView(bytes.buffer);
  bytes[0] = MAGIC[0];
  bytes[1] = MAGIC[1];
  bytes[2] = VERSION;
  bytes[3] = MSG_LATENT;
  dv.setUint16(4, hlen, true);
  bytes[6] = dtype;
  bytes[7] = codec;
  bytes[8] = compression;
  bytes[9] = shape.length;
  bytes[10] = split.length;
  dv.setUint32(12, seq, true);
  dv.setFloat64(16, captureMs, true);
  dv.setUint32(24, payloadLen, true);
  dv.setUint16(36, params.length, true);
  let off = FIXED_SIZE;
  for (const d of shape) { dv.setUint32(off, d, true); off += 4; }
  for (let i = 0; i < split.length; i++) bytes[off++] = split.charCodeAt(i);
  bytes.set(params, off);
  return bytes;
}

/**
 * Split `payload` into messages of at most `maxMessage` bytes, the full header on each, the
 * same bytes as Python's `splitcore.wire.frame.encode`. Fragments carry `maxMessage - header_len`
 * payload bytes each (the last one the rest), in order.
 *
 * Each message is its own ArrayBuffer because `RTCDataChannel.send` sends a whole buffer;
 * the payload is copied exactly once, into those buffers.
 *
 * @param {{seq: number, captureMs: number, split: string, shape: number[], dtype?: number,
 *          codec?: number, compression?: number, params?: Uint8Array}} h
 * @param {Uint8Array} payload encoded tensor bytes (e.g. from {@link encodeTensor})
 * @param {number} [maxMessage]
 * @returns {ArrayBuffer[]}
 */
export function encodeFrame(h, payload, maxMessage = MAX_MESSAGE) {
  if (!(payload instanceof Uint8Array)) {
    if (ArrayBuffer.isView(payload)) {
      payload = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    } else if (payload instanceof ArrayBuffer) {
      payload = new Uint8Array(payload);
    } else {
      throw new TypeError('payload must be a Uint8Array');
    }
  }
  const template = packTemplate(h, payload.length);
  const hlen = template.length;
  const room = maxMessage - hlen; // header_len depends on shape, split and params only
  if (room <= 0) throw new RangeError(`header alone exceeds maxMessage=${maxMessage}`);
  const count = Math.max(1, Math.ceil(payload.length / room));
  if (count > 0xffff) {
    throw new RangeError(`payload of ${payload.length} bytes needs ${count} fragments (max 65535)`);
  }
  const out = [];
  for (let i = 0; i < count; i++) {
    const off = i * room;
    const part = payload.subarray(off, off + room);
    const msg = new Uint8Array(hlen + part.length);
    msg.set(template, 0);
    const dv = new DataView(msg.buffer);
    dv.setUint16(28, i, true);
    dv.setUint16(30, count, true);
    dv.setUint32(32, off, true);
    msg.set(part, hlen);
    out.push(msg.buffer);
  }
  return out;
}

/**
 * Parse one message into its header and this fragment's payload bytes, a view into `msg`
 * (no copy). Checks run in the same order as Python's `decode`, so a malformed message gets
 * the same {@link FrameError} code on both sides.
 *
 * Like Python, the frame layer bounds `payload_len` by the shape (at most 4 bytes an element
 * plus 1,024) but does not interpret payload bytes: the exact length a codec needs is checked
 * by {@link decodeTensor} / `codecs.js` `decodeLatent` (as Python's `decode_tensor`).
 *
 * @param {ArrayBuffer|ArrayBufferView} msg
 * @returns {{header: FrameHeader, payload: Uint8Array}}
 */
export function decodeFrame(msg) {
  let view;
  if (msg instanceof ArrayBuffer) view = new Uint8Array(msg);
  else if (ArrayBuffer.isView(msg)) view = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
  else throw new TypeError('message must be an ArrayBuffer or a typed array');
  const len = view.length;
  if (len < 4) throw new FrameError('truncated', `${len} bytes is shorter than any header`);
  if (view[0] !== MAGIC[0] || view[1] !== MAGIC[1]) {
    throw new FrameError('bad_magic', `starts with 0x${hex2(view[0])}${hex2(view[1])}, expected "SR"`);
  }
  if (view[2] !== VERSION) throw new FrameError('bad_version', `version ${view[2]}, this side speaks ${VERSION}`);
  if (view[3] !== MSG_LATENT) {
    throw new FrameError('bad_type', `message type ${view[3]} is not a latent frame (${MSG_LATENT})`);
  }
  if (len < FIXED_SIZE) {
    throw new FrameError('truncated', `${len} bytes is shorter than the ${FIXED_SIZE}-byte header`);
  }
  const dv = new DataView(view.buffer, view.byteOffset, len);
  const hlen = dv.getUint16(4, true);
  const dtype = view[6], codec = view[7], compression = view[8];
  const ndim = view[9], slen = view[10];
  const seq = dv.getUint32(12, true);
  const captureMs = dv.getFloat64(16, true);
  const payloadLen = dv.getUint32(24, true);
  const fragIndex = dv.getUint16(28, true);
  const fragCount = dv.getUint16(30, true);
  const fragOffset = dv.getUint32(32, true);
  const paramsLen = dv.getUint16(36, true);
  const need = FIXED_SIZE + 4 * ndim + slen + paramsLen;
  if (hlen % 8 || hlen < need) {
    throw new FrameError('bad_header', `header_len ${hlen} (needs >= ${need}, multiple of 8)`, seq);
  }
  if (len < hlen) throw new FrameError('truncated', `${len} bytes is shorter than header_len ${hlen}`, seq);
  if (ndim < 1 || ndim > MAX_NDIM || slen < 1 || slen > MAX_SPLIT_LEN) {
    throw new FrameError('bad_header', `ndim ${ndim} or split length ${slen} out of range`, seq);
  }
  const shape = new Array(ndim);
  for (let i = 0; i < ndim; i++) shape[i] = dv.getUint32(FIXED_SIZE + 4 * i, true);
  const splitStart = FIXED_SIZE + 4 * ndim;
  let split = '';
  let splitOk = true;
  for (let i = 0; i < slen; i++) {
    const b = view[splitStart + i];
    splitOk &&= SPLIT_BYTE_OK(b);
    split += String.fromCharCode(b);
  }
  if (!splitOk) {
    throw new FrameError('bad_header', `split id ${JSON.stringify(split)} has characters outside [A-Za-z0-9_.-]`, seq);
  }
  if (!DTYPE_VALUES.has(dtype)) throw new FrameError('bad_dtype', `unknown DType ${dtype}`, seq);
  if (!CODEC_VALUES.has(codec)) throw new FrameError('bad_codec', `unknown Codec ${codec}`, seq);
  if (!COMPRESSION_VALUES.has(compression)) {
    throw new FrameError('bad_compression', `unknown Compression ${compression}`, seq);
  }
  const params = view.slice(need - paramsLen, need); // a copy: tiny, and outlives the message
  /** @type {FrameHeader} */
  const header = {
    seq, captureMs, split, shape, dtype, codec, compression, payloadLen, fragIndex, fragCount,
    fragOffset, params, headerLen: hlen,
  };
  checkGeometry(header, len - hlen);
  return { header, payload: view.subarray(hlen) };
}

function hex2(b) { return b.toString(16).padStart(2, '0'); }

/** Same checks, order and codes as Python's `_check_geometry`. */
function checkGeometry(h, fragLen) {
  if (Math.min(...h.shape) < 1 || elementCount(h.shape) > MAX_ELEMENTS) {
    throw new FrameError('bad_shape', `shape [${h.shape}] (each dim >= 1, <= ${MAX_ELEMENTS} elements)`, h.seq);
  }
  if (h.payloadLen > maxPayloadLen(elementCount(h.shape))) { // 4 B a value + compressor overhead
    throw new FrameError('bad_length', `payload_len ${h.payloadLen} is too large for shape [${h.shape}]`, h.seq);
  }
  if (h.fragCount < 1 || h.fragIndex >= h.fragCount) {
    throw new FrameError('bad_fragment', `fragment ${h.fragIndex} of ${h.fragCount}`, h.seq);
  }
  if (h.fragCount === 1 && (h.fragOffset !== 0 || fragLen !== h.payloadLen)) {
    const code = fragLen < h.payloadLen ? 'truncated' : 'bad_length';
    throw new FrameError(code, `payload is ${fragLen} bytes at offset ${h.fragOffset}, ` +
      `payload_len says ${h.payloadLen}`, h.seq);
  }
  if (h.fragOffset + fragLen > h.payloadLen) {
    throw new FrameError('bad_fragment', `bytes ${h.fragOffset}+${fragLen} overrun payload_len ` +
      `${h.payloadLen}`, h.seq);
  }
}

/**
 * Collects the fragments of one frame at a time, for one sender connection; behaves like
 * Python's `Reassembler`.
 *
 * The channel is reliable and ordered, so fragments of a frame arrive in order and a newer
 * `seq` (or a new fragment 0) means the older frame will never complete: it is given up and
 * reported as `abandoned`, so the sender can be told it was dropped as `incomplete`.
 *
 * Two deliberate differences from Python, neither changing which messages are accepted as
 * valid nor any code Python's decode + decode_tensor would give for a codec-0 float frame:
 * - each multi-fragment frame gets a fresh buffer (Python reuses one), because
 *   {@link decodeTensor} returns a zero-copy Float32Array over it that the caller may keep;
 * - a `payload_len` above {@link MAX_PAYLOAD} is refused with `bad_length` before allocating
 *   (Python allocates it and refuses it later in `decode_tensor`); otherwise one forged
 *   header could make us allocate up to 4 GiB.
 * When a fragment throws after ending an older incomplete frame, the error's `abandoned`
 * carries that frame's header (Python loses it).
 */
export class Reassembler {
  constructor() {
    /** @type {FrameHeader|null} header of fragment 0 of the frame being collected */
    this._head = null;
    /** @type {Uint8Array|null} */
    this._buf = null;
    this._nextOffset = 0;
  }

  /**
   * @param {FrameHeader} h       from {@link decodeFrame}
   * @param {Uint8Array} part     this fragment's payload bytes
   * @returns {{frame: {header: FrameHeader, payload: Uint8Array}|null, abandoned: FrameHeader|null}}
   *   `frame` once the frame is complete (its header is fragment 0's); `abandoned` is the
   *   header of an older frame that this fragment ended before it completed.
   */
  push(h, part) {
    if (h.fragCount === 1) {
      const abandoned = this._head;
      this._head = null;
      this._buf = null;
      return { frame: { header: h, payload: part }, abandoned };
    }
    let abandoned = null;
    if (this._head !== null && (h.seq !== this._head.seq || h.fragIndex === 0)) {
      abandoned = this._head;
      this._head = null;
      this._buf = null;
    }
    const fail = (code, detail) => {
      this._head = null;
      this._buf = null;
      const err = new FrameError(code, detail, h.seq);
      err.abandoned = abandoned;
      return err;
    };
    if (this._head === null) {
      if (h.fragIndex !== 0) throw fail('bad_fragment', `fragment ${h.fragIndex} without fragment 0`);
      if (h.payloadLen > MAX_PAYLOAD) {
        throw fail('bad_length', `payload_len ${h.payloadLen} exceeds ${MAX_PAYLOAD} (${MAX_ELEMENTS} float32)`);
      }
      this._buf = new Uint8Array(h.payloadLen);
      this._head = h;
      this._nextOffset = 0;
    }
    if (h.fragOffset !== this._nextOffset || h.payloadLen !== this._head.payloadLen) {
      throw fail('bad_fragment', `fragment ${h.fragIndex} at offset ${h.fragOffset}, expected ${this._nextOffset}`);
    }
    this._buf.set(part, h.fragOffset);
    this._nextOffset += part.length;
    if (h.fragIndex + 1 < h.fragCount) return { frame: null, abandoned };
    const first = this._head;
    const buf = this._buf;
    this._head = null;
    this._buf = null;
    if (this._nextOffset !== h.payloadLen) {
      throw fail('truncated', `fragments gave ${this._nextOffset} of ${h.payloadLen} bytes`);
    }
    return { frame: { header: first, payload: buf }, abandoned };
  }
}

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
// Receiver to sender: JSON text messages.

/** Reasons a receiver gives in a `drop` message (others are accepted, see parseMessage). */
export const DROP_REASONS = Object.freeze(['stale', 'incomplete']);
/** Fields of a reply's `timing`, all in ms, measured on the receiver. */
export const TIMING_FIELDS = Object.freeze(['decode_ms', 'queue_ms', 'tail_ms', 'total_ms']);

/**
 * A text message that is not valid JSON (`code` "bad_json") or lacks / mistypes a field the
 * spec requires (`code` "bad_message").
 */
export class MessageError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.name = 'MessageError';
    this.code = code;
    this.detail = detail;
  }
}

const isU32 = (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

function requireField(m, key, ok, what) {
  if (!ok(m[key])) {
    throw new MessageError('bad_message', `${m.type} message: "${key}" must be ${what}, got ${JSON.stringify(m[key])}`);
  }
}

/**
 * Validate a reply/drop/error object in place; throws MessageError. Values of `reason` are
 * not restricted to the known lists: a sender must still account for the frame if a newer
 * receiver adds a reason.
 */
function validate(m) {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) {
    throw new MessageError('bad_message', 'message is not a JSON object');
  }
  switch (m.type) {
    case 'reply':
      requireField(m, 'seq', isU32, 'a u32 integer');
      requireField(m, 'capture_ms', isNum, 'a finite number');
      requireField(m, 'split', (v) => typeof v === 'string' && SPLIT_RE.test(v), 'a split id');
      requireField(m, 'label', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
      requireField(m, 'name', (v) => typeof v === 'string', 'a string');
      requireField(m, 'probs', (v) => Array.isArray(v) && v.every(isNum), 'an array of finite numbers');
      requireField(m, 'timing', (v) => v !== null && typeof v === 'object' && !Array.isArray(v), 'an object');
      for (const k of TIMING_FIELDS) {
        if (!isNum(m.timing[k])) {
          throw new MessageError('bad_message', `reply message: "timing.${k}" must be a finite number, got ${JSON.stringify(m.timing[k])}`);
        }
      }
      return m;
    case 'drop':
      requireField(m, 'seq', isU32, 'a u32 integer');
      requireField(m, 'capture_ms', isNum, 'a finite number');
      requireField(m, 'reason', (v) => typeof v === 'string' && v.length > 0, 'a non-empty string');
      return m;
    case 'error':
      // seq is present only when the header was readable; normalise absent to null
      if (m.seq === undefined) m.seq = null;
      requireField(m, 'seq', (v) => v === null || isU32(v), 'a u32 integer or null');
      requireField(m, 'reason', (v) => typeof v === 'string' && v.length > 0, 'a non-empty string');
      if (m.detail === undefined) m.detail = '';
      requireField(m, 'detail', (v) => typeof v === 'string', 'a string');
      return m;
    default:
      throw new MessageError('bad_message', `unknown message type ${JSON.stringify(m.type)}`);
  }
}

/**
 * Parse a text message from the receiver. Returns the validated object (`type` is "reply",
 * "drop" or "error"; an error's `seq` is null when absent); throws MessageError otherwise.
 * @param {string} text
 */
export function parseMessage(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new MessageError('bad_json', `not JSON (${e.message}): ${String(text).slice(0, 80)}`);
  }
  return validate(m);
}

/**
 * JSON text of a `reply`; throws MessageError if a field is missing or mistyped, so a bad
 * reply is caught on the side that builds it.
 * @param {{seq: number, capture_ms: number, split: string, label: number, name: string,
 *          probs: number[], timing: {decode_ms: number, queue_ms: number, tail_ms: number,
 *          total_ms: number}}} r
 * @returns {string}
 */
export function makeReply(r) {
  const m = { type: 'reply', seq: r.seq, capture_ms: r.capture_ms, split: r.split, label: r.label,
    name: r.name, probs: r.probs == null ? r.probs : Array.from(r.probs), timing: r.timing };
  return JSON.stringify(validate(m));
}

/** JSON text of a `drop` ({seq, capture_ms, reason: "stale"|"incomplete"}). */
export function makeDrop({ seq, capture_ms, reason }) {
  return JSON.stringify(validate({ type: 'drop', seq, capture_ms, reason }));
}

/**
 * JSON text of an `error`. Pass a FrameError to report it with its code, detail and seq.
 * @param {FrameError|{seq?: number|null, reason: string, detail?: string}} e
 */
export function makeError(e) {
  const m = e instanceof FrameError
    ? { type: 'error', seq: e.seq, reason: e.code, detail: e.detail }
    : { type: 'error', seq: e.seq ?? null, reason: e.reason, detail: e.detail ?? '' };
  return JSON.stringify(validate(m));
}
