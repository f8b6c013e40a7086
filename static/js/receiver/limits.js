/**
 * How much a receiver page gives each sender, and the budget that ends a hostile one: the
 * browser twin of `receiver/limits.py` (and of the admission rules of `receiver/service.py`).
 *
 * Every bound a peer could otherwise push around is here, with the defaults of
 * `python -m receiver`: sessions in total and per sender id (the newest offer from a sender
 * replaces its oldest session), how long an offer may take to become an open data channel,
 * how long a silent peer is kept, how many malformed messages a peer may send, and how long
 * a sender disconnected for abuse is refused. Pure logic with an injectable clock, so the
 * rules are tested in node (tests/js/limits.test.mjs) and the page only wires them.
 * @module limits
 */

/**
 * The defaults, in milliseconds where Python has seconds (`Limits` in receiver/limits.py).
 * @typedef {object} Limits
 * @property {number} maxSessions     concurrent sessions, all senders together
 * @property {number} maxPerSender    concurrent sessions of one sender id (a new offer replaces the oldest)
 * @property {number} offerTimeoutMs  an offer whose data channel is not open by then is torn down
 * @property {number} peerTimeoutMs   nothing at all received for this long: the peer is gone
 * @property {number} pingIntervalMs  docs/wire-format.md: each side pings every 0.5 s
 * @property {number} malformedRate   malformed messages a second a peer may sustain ...
 * @property {number} malformedBurst  ... after a burst of this many; beyond: disconnected
 * @property {number} maxBuffered     bytes of our replies a peer may leave unread in the channel
 * @property {number} logIntervalMs   a peer's warnings are summarised once per interval
 * @property {number} keepClosed      ended sessions kept for display and the test hooks
 * @property {number} banMs           offers from a sender disconnected for abuse are refused this long
 */
export const LIMITS = Object.freeze({
  maxSessions: 64,
  maxPerSender: 1,
  offerTimeoutMs: 10_000,
  peerTimeoutMs: 2_000,
  pingIntervalMs: 500,
  malformedRate: 20,
  malformedBurst: 200,
  maxBuffered: 1 << 20,
  logIntervalMs: 5_000,
  keepClosed: 16,
  banMs: 30_000,
});

/**
 * {@link LIMITS} with `overrides` (unknown keys refused, values must be finite and >= 0;
 * the two session caps at least 1), frozen.
 * @param {Partial<Limits>} [overrides]
 * @returns {Readonly<Limits>}
 */
export function limitsFrom(overrides = {}) {
  const out = { ...LIMITS };
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (!Object.hasOwn(LIMITS, k)) throw new RangeError(`unknown limit ${JSON.stringify(k)}: one of ${Object.keys(LIMITS).join(', ')}`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`limit ${k} must be a finite number >= 0, got ${v}`);
    out[k] = v;
  }
  for (const k of ['maxSessions', 'maxPerSender']) {
    if (!Number.isInteger(out[k]) || out[k] < 1) throw new RangeError(`limit ${k} must be an integer >= 1, got ${out[k]}`);
  }
  return Object.freeze(out);
}

/**
 * A token bucket: `burst` malformed messages at once, `rate` a second after that (Python's
 * `MalformedBudget`). A sender with a bug sends a few bad frames and keeps its session; one
 * that sends them faster than `rate` for long enough runs out and is disconnected.
 */
export class MalformedBudget {
  /**
   * @param {number} rate   tokens a second
   * @param {number} burst  bucket size (full at the start)
   * @param {() => number} [clock] milliseconds
   */
  constructor(rate, burst, clock = () => performance.now()) {
    this.rate = rate;
    this.burst = burst;
    this.clock = clock;
    this._tokens = burst;
    this._at = clock();
  }

  /** Take one token; false when the budget is spent. */
  spend() {
    const now = this.clock();
    this._tokens = Math.min(this.burst, this._tokens + ((now - this._at) / 1000) * this.rate);
    this._at = now;
    if (this._tokens < 1) return false;
    this._tokens -= 1;
    return true;
  }
}

/**
 * Why an offer that has not become an open data channel is torn down now, or null:
 * `receiver/session.py`'s `tick` before its channel exists.
 * @param {number} createdMs when the offer was admitted (clock ms)
 * @param {boolean} opened   whether its data channel is open (or was)
 * @param {number} now
 * @param {Readonly<Limits>} [limits]
 * @returns {string|null}
 */
export function offerVerdict(createdMs, opened, now, limits = LIMITS) {
  if (opened || now - createdMs <= limits.offerTimeoutMs) return null;
  return `no data channel within ${limits.offerTimeoutMs / 1000} s of the offer`;
}

/**
 * Who gets a session (the twin of `Receiver._admit` in receiver/service.py): the caps on
 * sessions in total and per sender id, and the ban of a sender disconnected for abuse. The
 * caller keeps the sessions; {@link admit} tells it which to end and under which key to
 * register the new one, synchronously, so concurrent offers cannot all pass.
 */
export class Admission {
  /**
   * @param {Readonly<Limits>} [limits]
   * @param {() => number} [clock] milliseconds
   */
  constructor(limits = LIMITS, clock = () => performance.now()) {
    this.limits = limits;
    this.clock = clock;
    /** @type {Map<string, number>} sender id -> refused until (clock ms), oldest first */
    this.banned = new Map();
    this._next = 2;
  }

  /**
   * Make room for an offer from `sender`.
   * @param {string} sender
   * @param {Iterable<[string, {sender: string}]>} sessions open sessions, key -> {sender}, oldest first
   * @returns {{key: string|null, replace: string[], refused: null|{kind: string, detail: string}}}
   *   `replace`: keys of this sender's sessions to end first (its oldest, to stay within
   *   maxPerSender); `key`: the new session's key (the sender id unless taken), null when
   *   `refused` says why (kind "banned" or "full")
   */
  admit(sender, sessions) {
    const now = this.clock();
    const until = this.banned.get(sender);
    if (until !== undefined) {
      if (now < until) {
        return { key: null, replace: [], refused: { kind: 'banned', detail: `${sender} was disconnected for abuse; ` +
          `its offers are refused for ${Math.ceil((until - now) / 1000)} s more` } };
      }
      this.banned.delete(sender);
    }
    const all = [...sessions];
    const own = all.filter(([, s]) => s.sender === sender).map(([k]) => k);
    const replace = own.slice(0, Math.max(0, own.length - this.limits.maxPerSender + 1));
    const remaining = all.length - replace.length;
    if (remaining >= this.limits.maxSessions) {
      return { key: null, replace, refused: { kind: 'full', detail: `${sender}: already serving ${remaining} ` +
        `sessions (max ${this.limits.maxSessions})` } };
    }
    const taken = new Set(all.map(([k]) => k).filter((k) => !replace.includes(k)));
    let key = sender;
    while (taken.has(key)) key = `${sender}.${this._next++}`;
    return { key, replace, refused: null };
  }

  /** Refuse `sender`'s offers for `banMs` (it was disconnected for abuse); bounded. */
  ban(sender) {
    if (!(this.limits.banMs > 0)) return;
    this.banned.delete(sender);
    this.banned.set(sender, this.clock() + this.limits.banMs);
    while (this.banned.size > 4 * this.limits.maxSessions) this.banned.delete(this.banned.keys().next().value);
  }
}
