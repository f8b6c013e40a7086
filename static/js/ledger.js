/**
 * The sender's account of every frame: the browser twin of `sender/ledger.py`.
 *
 * Every captured frame ends in exactly one bucket: dropped before sending (the pacer fell
 * behind: "stale"; the channel was backed up: "backpressure"), answered, dropped by the
 * receiver (with its reason), refused as malformed, or still in flight. `check()` proves
 * the books balance, with the same rules as Python's `Ledger.check`.
 * @module ledger
 */

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
    this.unmatched = 0; // replies for a seq we were not waiting for
    this.latencies = [];
    this.recent = new Window(300);
    this.lastLabel = '';
    this.lastReply = null;
    /** @type {Map<number, {captureMs: number, frame: number}>} */
    this.inFlight = new Map();
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

  /** Frames the pacer skipped because the pipeline fell behind: stale, never sent. */
  onSkipped(n) {
    this.captured += n;
    this.droppedSender.add('stale', n);
  }

  /** A captured frame not sent (e.g. "backpressure": the channel is backed up). */
  dropBeforeSend(reason) { this.droppedSender.add(reason); }

  onSent(seq, captureMs, frame) {
    this.lastSent = this.clock();
    if (!this.sent) this.firstSent = this.lastSent;
    this.sent += 1;
    this.inFlight.set(seq, { captureMs, frame });
  }

  /**
   * Settle one frame from the receiver's reply, drop or error message (a parsed JSON object;
   * only the fields the accounting needs are trusted, like Python's Ledger.on_message).
   * @returns {string} what it was: "reply", "drop", "error" or "unmatched"
   */
  onMessage(msg, nowMs = this.clock()) {
    const seq = msg?.seq;
    const entry = Number.isInteger(seq) ? this.inFlight.get(seq) : undefined;
    if (entry === undefined) { // not ours, a duplicate, or an error about an unreadable header
      this.unmatched += 1;
      return 'unmatched';
    }
    this.inFlight.delete(seq);
    const kind = msg.type;
    if (kind === 'reply') {
      this._reply(seq, msg, entry, nowMs - entry.captureMs);
      return 'reply';
    }
    if (kind === 'drop') {
      this.droppedReceiver.add(msg.reason ?? 'unknown');
      this._log({ seq, frame: entry.frame, status: 'dropped', reason: msg.reason ?? null });
      return 'drop';
    }
    this.errors.add(msg.reason ?? 'unknown');
    this._log({ seq, frame: entry.frame, status: 'error', reason: msg.reason ?? null });
    return 'error';
  }

  _reply(seq, msg, entry, latencyMs) {
    this.replied += 1;
    this.latencies.push(latencyMs);
    this.recent.push(latencyMs);
    const label = Number(msg.label);
    this.lastLabel = label >= 0 && label < this.classes.length ? this.classes[label] : String(label);
    this.lastReply = msg;
    this._log({ seq, frame: entry.frame, label, name: this.lastLabel,
      latency_ms: Math.round(latencyMs * 1000) / 1000 });
  }

  _log(record) { if (this.onRecord) this.onRecord(record); }

  /** [p50, p99] of the end-to-end latency in ms (all replies, or the last 300). */
  percentiles(recent = false) {
    const data = recent ? this.recent.values() : this.latencies;
    if (!data.length) return [null, null];
    return [round3(percentile(data, 50)), round3(percentile(data, 99))];
  }

  /** Sent frames are all settled or still in flight; captured ones all sent or dropped. */
  check() {
    const settled = this.replied + this.droppedReceiver.total() + this.errors.total();
    return settled + this.inFlight.size === this.sent
      && this.sent + this.droppedSender.total() === this.captured;
  }

  /** The same keys as Python's Ledger.summary(). */
  summary() {
    const [p50, p99] = this.percentiles();
    return {
      frames_captured: this.captured, frames_sent: this.sent, replies: this.replied,
      dropped_by_sender: this.droppedSender.toJSON(), dropped_by_receiver: this.droppedReceiver.toJSON(),
      errors: this.errors.toJSON(), in_flight_at_exit: this.inFlight.size,
      unmatched_messages: this.unmatched, accounted: this.check(),
      seconds: Math.round(this.elapsed() * 1000) / 1000, fps: this.fps(),
      latency_p50_ms: p50, latency_p99_ms: p99,
    };
  }
}
