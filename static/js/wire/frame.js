/**
 * The latent frame on the data channel: header layout, encoding into <= 64 KiB messages,
 * decoding and reassembly. The browser twin of `splitcore/wire/frame.py`; what the payload
 * bytes mean (codecs, codec "none" tensors) is `codecs.js`, the JSON text messages are
 * `messages.js`.
 *
 * `docs/wire-format.md` is the specification. Both test suites read `tests/vectors/`, which
 * keeps the twins byte-compatible: this module must produce the same bytes as Python's
 * `encode` and report the same error code as Python's `decode` for every malformed message.
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
export const MAX_PAYLOAD = shapePayloadBound(MAX_ELEMENTS);

/**
 * The largest `payload_len` any frame of `n` elements may declare, whatever its dtype, codec
 * and compression: 4 bytes a value, plus more than the worst-case expansion of any
 * compressor on incompressible data (under 1/256, plus 1 KiB). The frame-level check, made
 * before the codec is looked at; `codecs.js`'s `maxPayloadLen(header)` is the tight one.
 * Same rule as Python's `splitcore.wire.frame.shape_payload_bound`.
 * @param {number} n
 */
export function shapePayloadBound(n) {
  return 4 * n + Math.floor((4 * n) / 256) + 1024;
}

/**
 * Former name of {@link shapePayloadBound} (Python renamed `frame.max_payload_len`), kept
 * so callers can move over; not to be confused with `codecs.js`'s `maxPayloadLen(header)`.
 * @deprecated use shapePayloadBound
 */
export const maxPayloadLen = shapePayloadBound;

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
  'shape_mismatch', 'too_large',
]);

const DTYPE_VALUES = new Set(Object.values(DType));
const CODEC_VALUES = new Set(Object.values(Codec));
const COMPRESSION_VALUES = new Set(Object.values(Compression));
const SPLIT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SPLIT_BYTE_OK = (b) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
  b === 0x5f || b === 0x2e || b === 0x2d;
const EMPTY = new Uint8Array(0);

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
  if (h.payloadLen > shapePayloadBound(elementCount(h.shape))) { // 4 B a value + compressor overhead
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
 * `limit(header)` runs for every frame (its only fragment, or fragment 0) BEFORE anything is
 * allocated for it: it throws a FrameError (a receiver refuses an unknown split or a wrong
 * shape there) or returns the largest `payload_len` it accepts (a receiver passes
 * `codecs.maxPayloadLen`); a frame that declares more is refused with `too_large`. So what
 * a peer declares never decides how much we allocate. Without a limit, `payload_len` is
 * bounded by {@link MAX_PAYLOAD} (`bad_length`, as before the limit existed).
 *
 * One deliberate difference from Python: each multi-fragment frame gets a fresh buffer of at
 * most the limit (Python reuses one), because `codecs.decodeTensor` returns a zero-copy
 * Float32Array over it that the caller may keep. When a fragment throws after ending an
 * older, incomplete frame, the error's `abandoned` carries that frame's header.
 */
export class Reassembler {
  /** @param {((h: FrameHeader) => number)|null} [limit] */
  constructor(limit = null) {
    this.limit = limit;
    /** @type {FrameHeader|null} header of fragment 0 of the frame being collected */
    this._head = null;
    /** @type {Uint8Array|null} */
    this._buf = null;
    this._nextOffset = 0;
  }

  /** Refuse a new frame that declares more than the limit (or the limit's own FrameError). */
  _admit(h) {
    if (this.limit === null) {
      if (h.payloadLen > MAX_PAYLOAD) {
        throw new FrameError('bad_length', `payload_len ${h.payloadLen} exceeds ${MAX_PAYLOAD} (${MAX_ELEMENTS} float32)`, h.seq);
      }
      return;
    }
    const most = this.limit(h);
    if (h.payloadLen > most) {
      throw new FrameError('too_large', `payload_len ${h.payloadLen} exceeds the ${most} bytes a ` +
        `${DTYPE_NAMES[h.dtype] ?? h.dtype}[${h.shape}] frame of split ${h.split} can need`, h.seq);
    }
  }

  /**
   * @param {FrameHeader} h       from {@link decodeFrame}
   * @param {Uint8Array} part     this fragment's payload bytes
   * @returns {{frame: {header: FrameHeader, payload: Uint8Array}|null, abandoned: FrameHeader|null}}
   *   `frame` once the frame is complete (its header is fragment 0's); `abandoned` is the
   *   header of an older frame that this fragment ended before it completed.
   */
  push(h, part) {
    let abandoned = null;
    if (this._head !== null && (h.fragCount === 1 || h.seq !== this._head.seq || h.fragIndex === 0)) {
      abandoned = this._head;
      this._head = null;
      this._buf = null;
    }
    const fail = (err) => {
      this._head = null;
      this._buf = null;
      if (!(err instanceof FrameError)) throw err;
      err.abandoned = abandoned;
      return err;
    };
    if (h.fragCount === 1) {
      try { this._admit(h); } catch (err) { throw fail(err); }
      return { frame: { header: h, payload: part }, abandoned };
    }
    if (this._head === null) {
      if (h.fragIndex !== 0) throw fail(new FrameError('bad_fragment', `fragment ${h.fragIndex} without fragment 0`, h.seq));
      try { this._admit(h); } catch (err) { throw fail(err); }
      this._buf = new Uint8Array(h.payloadLen);
      this._head = h;
      this._nextOffset = 0;
    }
    if (h.fragOffset !== this._nextOffset || h.payloadLen !== this._head.payloadLen) {
      throw fail(new FrameError('bad_fragment', `fragment ${h.fragIndex} at offset ${h.fragOffset}, ` +
        `expected ${this._nextOffset}`, h.seq));
    }
    this._buf.set(part, h.fragOffset);
    this._nextOffset += part.length;
    if (h.fragIndex + 1 < h.fragCount) return { frame: null, abandoned };
    const first = this._head;
    const buf = this._buf;
    this._head = null;
    this._buf = null;
    if (this._nextOffset !== h.payloadLen) {
      throw fail(new FrameError('truncated', `fragments gave ${this._nextOffset} of ${h.payloadLen} bytes`, h.seq));
    }
    return { frame: { header: first, payload: buf }, abandoned };
  }
}
