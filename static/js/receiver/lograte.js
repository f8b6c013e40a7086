/**
 * Logging that a hostile peer cannot turn into a flood: one line per interval, with counts.
 * The twin of `receiver/lograte.py`.
 *
 * The first event of each kind in an interval (up to {@link MAX_SHOWN} kinds) is logged with
 * its detail (peer, frame, what was wrong), so a lone bad message is as easy to diagnose as
 * before; the rest of the interval is counted by kind and summarised in one line when the
 * interval is over. A subject costs at most MAX_SHOWN + 1 console lines per interval.
 * @module lograte
 */

/** Kinds are error codes and reasons we name ourselves; a cap keeps it bounded anyway. */
export const MAX_KINDS = 32;
/** Kinds logged in full per interval; further kinds are only counted. */
export const MAX_SHOWN = 4;

export class RateLimitedLog {
  /**
   * @param {{warn: (...a: any[]) => void}} log  `console`, or anything with `warn`
   * @param {string} subject  e.g. "peer X: malformed message"
   * @param {number} [intervalMs]
   * @param {() => number} [clock] milliseconds
   */
  constructor(log, subject, intervalMs = 5000, clock = () => performance.now()) {
    this.log = log;
    this.subject = subject;
    this.intervalMs = intervalMs;
    this.clock = clock;
    this._since = null; // start of the current interval (null: none open)
    this._held = new Map(); // events counted, not logged, in this interval
    this._shown = new Set(); // kinds logged in full in this interval
    this.total = 0;
  }

  /** One occurrence of `kind`; logs `detail` only if it opens the kind's interval. */
  event(kind, detail) {
    this.total += 1;
    const now = this.clock();
    if (this._since !== null && now - this._since >= this.intervalMs) this.flush();
    if (this._since === null) this._since = now;
    if (!this._shown.has(kind) && this._shown.size < MAX_SHOWN) {
      this._shown.add(kind);
      this.log.warn(`${this.subject}: ${detail}`);
      return;
    }
    if (!this._held.has(kind) && this._held.size >= MAX_KINDS) kind = 'other';
    this._held.set(kind, (this._held.get(kind) ?? 0) + 1);
  }

  /** Called periodically: closes an interval that is over, so its summary is not held back. */
  tick() {
    if (this._since !== null && this.clock() - this._since >= this.intervalMs) this.flush();
  }

  /** Log what the open interval counted (if anything) and close it. */
  flush() {
    if (this._since !== null && this._held.size) {
      let n = 0;
      for (const v of this._held.values()) n += v;
      const kinds = [...this._held].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
      this.log.warn(`${this.subject}: ${n} more in the last ${((this.clock() - this._since) / 1000).toFixed(1)} s (${kinds})`);
    }
    this._since = null;
    this._held = new Map();
    this._shown = new Set();
  }
}
