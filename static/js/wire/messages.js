/**
 * The JSON text messages on the latent channel, validated on receipt: the browser twin of
 * `splitcore/wire/messages.py` (`docs/wire-format.md`, "Text messages (JSON)").
 *
 * Binary messages are latent frames (`frame.js`); text messages are these. The receiver
 * answers every frame with exactly one `reply`, `drop` or `error`, so a sender can account
 * for each frame it sent; `ping` and `pong` go both ways and keep each side sure the other
 * is alive. `tests/vectors/messages.json` keeps the twins in agreement: both suites parse
 * every vector and must accept it with the same value or refuse it with the same code and
 * `seq`.
 *
 * Validation is strict about what a sender needs to account for a frame (`seq`, `type`, the
 * reply's label) and lenient about what it does not: unknown fields are ignored, and a
 * `drop` or `error` reason outside the known lists is kept, so a newer receiver that adds a
 * reason still has its frames accounted for.
 *
 * Parsed messages are plain objects with the wire's field names (`capture_ms`, `t_ms`...):
 * `{type: "reply", seq, capture_ms, split, label, name, logits?, probs, timing}`,
 * `{type: "drop", seq, capture_ms, reason}`, `{type: "error", seq (null when unknown),
 * reason, detail}`, `{type: "ping"|"pong", t_ms}`. Unknown fields are not copied.
 *
 * An ES module with no dependencies, for the browser and Node 20.
 * @module messages
 */

/** Split ids (the frame header's rule). */
export const SPLIT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** Reasons a receiver gives in a `drop` (others are accepted, see the module comment). */
export const DROP_REASONS = Object.freeze(['stale', 'incomplete']);
/** Fields of a reply's `timing`, ms on the receiver's clock. */
export const TIMING_FIELDS = Object.freeze(['decode_ms', 'queue_ms', 'tail_ms', 'total_ms']);
/** A reply of 10 classes is ~600 B; anything longer than this is refused unread. */
export const MAX_TEXT = 16 * 1024;
/** probs/logits longer than this are refused, not allocated; labels are below it. */
export const MAX_CLASSES = 1000;
export const MAX_REASON = 64;
export const MAX_DETAIL = 1024;
const MAX_NAME = 256;
const U32_MAX = 0xffffffff;
/**
 * Deepest nesting a text may have. No message nests deeper than 2 (a reply's `timing`);
 * Python's parser gives up at its recursion limit (about 1,000) and refuses the text as
 * `bad_message`, JavaScript's parses any depth: this bound makes the browser refuse such
 * texts too, without walking them, and long before Python's limit.
 */
export const MAX_DEPTH = 32;

/**
 * A text message that is not one of ours. `code` is `bad_json` (not JSON at all) or
 * `bad_message` (not an object, unknown type, a field missing or mistyped); `seq` is the
 * frame it was about when that much was readable (else null), so the sender can still
 * settle the frame (as `bad_reply`).
 */
export class MessageError extends Error {
  /**
   * @param {string} code
   * @param {string} detail
   * @param {number|null} [seq]
   */
  constructor(code, detail, seq = null) {
    super(`${code}: ${detail}`);
    this.name = 'MessageError';
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.detail = detail;
    /** @type {number|null} */
    this.seq = seq ?? null;
  }
}

const isInt = (v) => Number.isInteger(v); // 12, 12.0 and 1.2e1 alike, as Python's _is_int
const isU32 = (v) => isInt(v) && v >= 0 && v <= U32_MAX;
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const isNumbers = (v) => Array.isArray(v) && v.length <= MAX_CLASSES && v.every(isNum);
const isReason = (v) => typeof v === 'string' && v.length >= 1 && v.length <= MAX_REASON;
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const REASON_WHAT = `a string of 1..${MAX_REASON} characters`;

/** A value for an error detail: JSON, cut to 60 characters. */
function show(v) {
  const text = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`;
}

function field(m, key, ok, what, seq = null) {
  const value = m[key];
  if (!ok(value)) {
    throw new MessageError('bad_message', `${m.type} message: "${key}" must be ${what}, got ${show(value)}`, seq);
  }
  return value;
}

/** Bytes of a string in UTF-8 (what a data channel sends for a text message). */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

/** True when brackets outside strings nest deeper than MAX_DEPTH (one pass, no allocation). */
function tooDeep(text) {
  let depth = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) { if (++depth > MAX_DEPTH) return true; }
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Validate one text message into its typed object; throws {@link MessageError}.
 * @param {string} text
 * @returns {object}
 */
export function parse(text) {
  if (typeof text !== 'string') throw new MessageError('bad_message', 'a text message must be a string');
  if (text.length > MAX_TEXT || (text.length > MAX_TEXT / 3 && utf8Length(text) > MAX_TEXT)) {
    throw new MessageError('bad_message', `text of ${text.length} characters is longer than any message (${MAX_TEXT} bytes)`);
  }
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new MessageError('bad_json', `not JSON (${String(e?.message ?? e).slice(0, 80)})`);
  }
  if (tooDeep(text)) throw new MessageError('bad_message', 'nested too deeply to be a message');
  if (!isObject(m)) throw new MessageError('bad_message', 'message is not a JSON object');
  switch (m.type) {
    case 'reply':
      return parseReply(m);
    case 'drop': {
      const seq = field(m, 'seq', isU32, 'a u32 integer');
      return { type: 'drop', seq, capture_ms: field(m, 'capture_ms', isNum, 'a finite number', seq),
        reason: field(m, 'reason', isReason, REASON_WHAT, seq) };
    }
    case 'error': {
      const raw = m.seq ?? null;
      if (raw !== null && !isU32(raw)) {
        throw new MessageError('bad_message', `error message: "seq" must be a u32 integer or null, got ${show(raw)}`);
      }
      const detail = m.detail === undefined ? '' : m.detail;
      if (typeof detail !== 'string' || detail.length > MAX_DETAIL) {
        throw new MessageError('bad_message', `error message: "detail" must be a string of at most ${MAX_DETAIL} characters`, raw);
      }
      return { type: 'error', seq: raw, reason: field(m, 'reason', isReason, REASON_WHAT, raw), detail };
    }
    case 'ping':
    case 'pong':
      return { type: m.type, t_ms: field(m, 't_ms', isNum, 'a finite number') };
    default:
      throw new MessageError('bad_message', `unknown message type ${show(m.type)}`, isU32(m.seq) ? m.seq : null);
  }
}

function parseReply(m) {
  const seq = field(m, 'seq', isU32, 'a u32 integer');
  const out = {
    type: 'reply', seq,
    capture_ms: field(m, 'capture_ms', isNum, 'a finite number', seq),
    split: field(m, 'split', (v) => typeof v === 'string' && SPLIT_RE.test(v), 'a split id', seq),
    label: field(m, 'label', (v) => isInt(v) && v >= 0 && v < MAX_CLASSES, `an integer in [0, ${MAX_CLASSES})`, seq),
    name: field(m, 'name', (v) => typeof v === 'string' && v.length <= MAX_NAME, 'a string', seq),
  };
  const probs = field(m, 'probs', isNumbers, `an array of at most ${MAX_CLASSES} finite numbers`, seq);
  const logits = m.logits ?? null;
  if (logits !== null && !isNumbers(logits)) {
    throw new MessageError('bad_message', `reply message: "logits" must be an array of at most ${MAX_CLASSES} finite numbers`, seq);
  }
  const timing = field(m, 'timing', isObject, 'an object', seq);
  const t = {};
  for (const k of TIMING_FIELDS) {
    if (!isNum(timing[k])) {
      throw new MessageError('bad_message', `reply message: "timing.${k}" must be a finite number, got ${show(timing[k])}`, seq);
    }
    t[k] = timing[k];
  }
  if (logits !== null) out.logits = logits;
  out.probs = probs;
  out.timing = t;
  return out;
}

function finite(v, what) {
  if (!isNum(v)) throw new RangeError(`${what} ${v} is not a finite number: JSON cannot carry it`);
  return v;
}

function finiteArray(a, what) {
  const out = Array.from(a);
  for (let i = 0; i < out.length; i++) finite(out[i], `${what}[${i}]`);
  return out;
}

/**
 * Compact JSON of a message (an object of the shapes above, `type` included), the same text
 * as Python's `dumps`. RangeError for NaN or an infinity, which `JSON.stringify` would
 * silently turn into null and every receiver would refuse.
 * @param {object} msg
 * @returns {string}
 */
export function dumps(msg) {
  let out;
  switch (msg?.type) {
    case 'reply':
      out = { type: 'reply', seq: msg.seq, capture_ms: finite(msg.capture_ms, 'capture_ms'), split: msg.split,
        label: msg.label, name: msg.name };
      if (msg.logits !== undefined && msg.logits !== null) out.logits = finiteArray(msg.logits, 'logits');
      out.probs = finiteArray(msg.probs, 'probs');
      out.timing = {};
      for (const k of TIMING_FIELDS) out.timing[k] = finite(msg.timing?.[k], `timing.${k}`);
      break;
    case 'drop':
      out = { type: 'drop', seq: msg.seq, capture_ms: finite(msg.capture_ms, 'capture_ms'), reason: msg.reason };
      break;
    case 'error':
      out = { type: 'error', seq: msg.seq ?? null, reason: msg.reason, detail: String(msg.detail ?? '').slice(0, MAX_DETAIL) };
      break;
    case 'ping':
    case 'pong':
      out = { type: msg.type, t_ms: finite(msg.t_ms, 't_ms') };
      break;
    default:
      throw new RangeError(`unknown message type ${show(msg?.type)}`);
  }
  return JSON.stringify(out);
}

/** `{type: "error"}` for a refused frame: its code, detail and seq (FrameError or MessageError). */
export function errorFor(err) {
  return { type: 'error', seq: err.seq ?? null, reason: err.code, detail: String(err.detail ?? '').slice(0, MAX_DETAIL) };
}
