/**
 * The sender's account of every frame: the browser twin of `sender/ledger.py`.
 *
 * Every captured frame ends in exactly one bucket: dropped before sending (the pacer fell
 * behind: "stale"; the channel was backed up: "backpressure"; no receiver connected:
 * "no_receiver"; the channel closed: "channel_closed"), answered, dropped by the receiver
 * (with its reason), refused (the receiver's error code, or "bad_reply" when the receiver's
 * answer itself was malformed), lost with the connection, or still in flight. `check()`
 * proves the books balance:
 *
 *     replied + dropped_by_receiver + errors + lost + in_flight == sent
 *     sent + dropped_by_sender == captured
 *
 * `tests/vectors/ledger.json` pins these rules: the node suite replays it through this
 * class, the Python suite through `sender/ledger.py`.
 *
 * For the adaptive controller (`sender/switching.js`) a frame sent with its operating point
 * and size also counts its bytes: in flight until settled by the receiver (`settledBytes`),
 * and the reply's `timing.total_ms` per split (`serverMs`), as Python's ledger does.
 * @module ledger
 */
import { MessageError, parse } from '../wire/messages.js';

/** A Python Counter: name -> count, with total(). */
export class Counter {
  constructor() { this.counts = Object.create(null); }
  add(key, n = 1) { this.counts[key] = (this.counts[key] ?? 0) + n; }
  get(key) { return this.counts[key] ?? 0; }
  total() { let t = 0; for (const k in this.counts) t += this.counts[k]; return t; }
  toJSON() { return { ...this.counts }; }
}

/** numpy.percentile's default (linear) interpolation, on a copy; null for no data. */
export function percentile(values, q) {
  const n = values.length;
  if (!n) return null;
  const a = Float64Array.from(values).sort();
  const pos = (n - 1) * (q / 100);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return a[lo] + (a[hi] - a[lo]) * (pos - lo);
}

const round3 = (v) => (v === null ? null : Math.round(v * 1000) / 1000);

/** A fixed-size window of the latest values (Python's deque(maxlen=n)). */
class Window {
  constructor(n) { this.n = n; this.buf = []; this.next = 0; }
  push(v) {
    if (this.buf.length < this.n) this.buf.push(v);
    else { this.buf[this.next] = v; this.next = (this.next + 1) % this.n; }
  }
  values() { return this.buf; }
}

export class Ledger {
  /**
   * @param {string[]} classes class names, index = label
   * @param {{onRecord?: (r: object) => void, clock?: () => number}} [opts] onRecord gets one
   *   object per settled frame (the lines of Python's --log); clock in ms (performance.now)
   */
  constructor(classes, { onRecord = null, clock = () => performance.now() } = {}) {
    this.classes = classes;
    this.onRecord = onRecord;
    this.clock = clock;
    this.captured = 0;
    this.sent = 0;
    this.replied = 0;
    this.droppedSender = new Counter();
    this.droppedReceiver = new Counter();
    this.errors = new Counter();
    this.lost = 0;      // in flight when the connection went
    this.unmatched = 0; // answers for a seq not in flight (duplicates, unknown, unreadable)
    this.latencies = [];
    this.recent = new Window(300);
    this.lastLabel = '';
    this.lastReply = null;
    /** @type {Map<number, {captureMs: number, frame: number|null, point: string[]|null, nbytes: number}>} */
    this.inFlight = new Map();
    this.inFlightBytes = 0;  // of frames sent with nbytes, not yet settled
    this.settledBytes = 0;   // of frames settled by the receiver (reply, drop, error), in all
    /** split -> [sum, n] of reply total_ms, for frames sent with their point (the controller empties it) */
    this.serverMs = new Map();
    this.started = null;
    this.firstSent = 0;
    this.lastSent = 0;
  }

  onCaptured() {
    this.captured += 1;
    if (this.started === null) this.started = this.clock();
  }

  /** Seconds since the first capture (connecting is not streaming time). */
  elapsed() { return this.started === null ? 0 : (this.clock() - this.started) / 1000; }

  /** Sustained send rate: frame intervals over the time from first to last send. */
  fps() {
    if (this.sent < 2 || this.lastSent <= this.firstSent) return 0;
    return Math.round(((this.sent - 1) / ((this.lastSent - this.firstSent) / 1000)) * 100) / 100;
  }

  /** Deadlines the pacer skipped because the pipeline fell behind: captured, stale, never sent. */
  onSkipped(n) {
    this.captured += n;
    this.droppedSender.add('stale', n);
  }

  /** A captured frame not sent ("backpressure", "no_receiver", "channel_closed"...). */
  dropBeforeSend(reason) { this.droppedSender.add(reason); }

  /**
   * @param {number} seq
   * @param {number} captureMs the sender's clock at capture (echoed by the receiver)
   * @param {number} [nowMs] when it was sent (for fps)
   * @param {number|null} [frame] the source's frame index, for the records
   * @param {{point?: string[]|null, nbytes?: number}} [opts] adaptive: the frame's
   *   [split, codec, head] (each record names it) and its bytes on the channel
   */
  onSent(seq, captureMs, nowMs = this.clock(), frame = null, { point = null, nbytes = 0 } = {}) {
    this.lastSent = nowMs;
    if (!this.sent) this.firstSent = nowMs;
    this.sent += 1;
    this.inFlight.set(seq, { captureMs, frame, point, nbytes });
    this.inFlightBytes += nbytes;
  }

  /** Take frame `seq` out of the books (undefined if not in flight): its bytes are settled. */
  _pop(seq) {
    const entry = seq === null ? undefined : this.inFlight.get(seq);
    if (entry !== undefined) {
      this.inFlight.delete(seq);
      this.inFlightBytes -= entry.nbytes;
      this.settledBytes += entry.nbytes;
    }
    return entry;
  }

  /**
   * A text from the receiver: parsed and validated (`wire/messages.js`), then settled.
   * A refused text whose `seq` is in flight settles that frame as errors "bad_reply"; one
   * without a usable seq, or about a seq not in flight, counts as unmatched.
   * @returns {{kind: string, msg: object|null, error: MessageError|null}} kind: "reply",
   *   "drop", "error", "ping", "pong", "bad_reply" or "unmatched"
   */
  onText(text, nowMs = this.clock()) {
    let msg;
    try {
      msg = parse(text);
    } catch (err) {
      if (!(err instanceof MessageError)) throw err;
      const entry = this._pop(err.seq);
      if (entry === undefined) {
        this.unmatched += 1;
        return { kind: 'unmatched', msg: null, error: err };
      }
      this.errors.add('bad_reply');
      this._log({ seq: err.seq, frame: entry.frame, status: 'error', reason: 'bad_reply' }, entry);
      return { kind: 'bad_reply', msg: null, error: err };
    }
    return { kind: this.onMessage(msg, nowMs), msg, error: null };
  }

  /**
   * Settle one frame from a parsed message (`messages.parse`).
   * @returns {string} "reply", "drop", "error", "ping", "pong" or "unmatched"
   */
  onMessage(msg, nowMs = this.clock()) {
    if (msg.type === 'ping' || msg.type === 'pong') return msg.type; // liveness settles nothing
    const entry = this._pop(msg.seq);
    if (entry === undefined) { // a duplicate, a seq we never sent, an error about an unreadable header
      this.unmatched += 1;
      return 'unmatched';
    }
    if (msg.type === 'reply') {
      this._reply(msg, entry, nowMs - entry.captureMs);
    } else if (msg.type === 'drop') {
      this.droppedReceiver.add(msg.reason);
      this._log({ seq: msg.seq, frame: entry.frame, status: 'dropped', reason: msg.reason }, entry);
    } else {
      this.errors.add(msg.reason);
      this._log({ seq: msg.seq, frame: entry.frame, status: 'error', reason: msg.reason }, entry);
    }
    return msg.type;
  }

  /** The connection to the receiver is gone: nothing in flight will be answered. */
  onConnectionLost() {
    for (const [seq, entry] of this.inFlight) this._log({ seq, frame: entry.frame, status: 'lost' }, entry);
    this.lost += this.inFlight.size;
    this.inFlight.clear();
    this.inFlightBytes = 0;
  }

  _reply(msg, entry, latencyMs) {
    this.replied += 1;
    if (entry.point !== null) {
      let acc = this.serverMs.get(msg.split);
      if (acc === undefined) { acc = [0, 0]; this.serverMs.set(msg.split, acc); }
      acc[0] += msg.timing.total_ms;
      acc[1] += 1;
    }
    this.latencies.push(latencyMs);
    this.recent.push(latencyMs);
    const label = msg.label;
    this.lastLabel = label < this.classes.length ? this.classes[label] : String(label);
    this.lastReply = msg;
    this._log({ seq: msg.seq, frame: entry.frame, label, name: this.lastLabel,
      latency_ms: Math.round(latencyMs * 1000) / 1000, receiver: msg.timing }, entry);
  }

  /** One record per settled frame; an adaptive frame's names its point (Python's --log lines). */
  _log(record, entry = null) {
    if (!this.onRecord) return;
    if (entry?.point) [record.split, record.codec, record.head] = entry.point;
    this.onRecord(record);
  }

  /** [p50, p99] of the end-to-end latency in ms (all replies, or the last 300). */
  percentiles(recent = false) {
    const data = recent ? this.recent.values() : this.latencies;
    if (!data.length) return [null, null];
    return [round3(percentile(data, 50)), round3(percentile(data, 99))];
  }

  /** Sent frames are all settled or still in flight; captured ones all sent or dropped. */
  check() {
    const settled = this.replied + this.droppedReceiver.total() + this.errors.total() + this.lost;
    return settled + this.inFlight.size === this.sent
      && this.sent + this.droppedSender.total() === this.captured;
  }

  /** The books, with the names of `tests/vectors/ledger.json`'s `expected`. */
  counts() {
    return {
      captured: this.captured, sent: this.sent, replied: this.replied,
      dropped_by_sender: this.droppedSender.toJSON(), dropped_by_receiver: this.droppedReceiver.toJSON(),
      errors: this.errors.toJSON(), lost: this.lost, in_flight: this.inFlight.size,
      unmatched: this.unmatched, accounted: this.check(), last_label: this.lastLabel,
    };
  }

  /** The same keys as Python's Ledger.summary(), plus `lost`. */
  summary() {
    const [p50, p99] = this.percentiles();
    return {
      frames_captured: this.captured, frames_sent: this.sent, replies: this.replied,
      dropped_by_sender: this.droppedSender.toJSON(), dropped_by_receiver: this.droppedReceiver.toJSON(),
      errors: this.errors.toJSON(), lost: this.lost, in_flight_at_exit: this.inFlight.size,
      unmatched_messages: this.unmatched, accounted: this.check(),
      seconds: Math.round(this.elapsed() * 1000) / 1000, fps: this.fps(),
      latency_p50_ms: p50, latency_p99_ms: p99,
    };
  }
}
