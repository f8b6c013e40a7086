/**
 * The `stats` a peer publishes (docs/signaling.md): getStats() -> a report, our own channel
 * counters, rates between two reports, and the publisher: the browser twin of
 * `splitcore/rtc/stats.py`. Everything but the publisher is pure and node-tested; the
 * dashboard, the pages and a Python peer's status line compute rates the same way.
 *
 * A browser peer publishes what getStats() returned for its `data-channel` and `transport`
 * entries (W3C RTCDataChannelStats / RTCTransportStats names, counters cumulative, timestamp
 * in ms since the Unix epoch). A receiver serves several senders, one RTCPeerConnection each,
 * and the browser numbers each connection's entries alike ("D1", "T01"...), so their ids
 * get a per-connection prefix to stay unique inside one report.
 * @module stats
 */

import { utf8Length } from '../wire/messages.js';

export { utf8Length };

/** The entry types a `stats` report carries. */
export const REPORT_TYPES = Object.freeze(['data-channel', 'transport']);

/**
 * The data-channel and transport entries of an RTCStatsReport (or any iterable of stats
 * objects / [id, stats] pairs), as plain JSON-ready objects: every primitive field is kept.
 * @param {Iterable<any>|{values: () => Iterable<any>}} report
 * @param {{prefix?: string, state?: string}} [opts] prefix: prepended to ids ("peer:"),
 *   state: overrides data-channel `state` (e.g. "closed" for a connection that ended)
 * @returns {object[]}
 */
export function reportEntries(report, { prefix = '', state } = {}) {
  const items = typeof report?.values === 'function' ? report.values() : report;
  const out = [];
  for (let s of items ?? []) {
    if (Array.isArray(s)) s = s[1];
    if (!s || !REPORT_TYPES.includes(s.type)) continue;
    const e = {};
    for (const [k, v] of Object.entries(s)) {
      if (v === null || ['number', 'string', 'boolean'].includes(typeof v)) e[k] = v;
    }
    e.id = prefix + String(s.id ?? '');
    if (state !== undefined && e.type === 'data-channel') e.state = state;
    out.push(e);
  }
  return out;
}

/** Counters of each entry type: rate key -> [sent field, received field]. */
const RATE_FIELDS = {
  "data-channel": {
    payload: ["bytesSent", "bytesReceived"],
    messages: ["messagesSent", "messagesReceived"],
  },
  transport: {
    wire: ["bytesSent", "bytesReceived"],
    packets: ["packetsSent", "packetsReceived"],
  },
};
/** The rate keys, per direction and both together (Python's `Rates`, camel-cased). */
const RATE_KEYS = {
  payload: ["payloadSentBps", "payloadReceivedBps", "payloadBps"],
  messages: ["messagesSentPs", "messagesReceivedPs", "messagesPs"],
  wire: ["wireSentBps", "wireReceivedBps", "wireBps"],
  packets: ["packetsSentPs", "packetsReceivedPs", "packetsPs"],
};

/** A counter as a finite number, or null: reports come from other clients, trust nothing. */
function counter(entry, field) {
  const v = entry[field];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * Rates between two reports of one peer, summed over its channels and transports, per
 * direction (`payloadSentBps`, `payloadReceivedBps`...) and both together (`payloadBps`,
 * `messagesPs`, `wireBps`, `packetsPs`), and `intervalS`. The one rate computation of the
 * browser: the pages' status, the publisher and the dashboard all use it, with the same
 * rules as Python's `splitcore.rtc.stats.rates`.
 *
 * Entries are matched by `id`, and each uses its own timestamps (browsers stamp entries
 * individually). An entry without a baseline (new connection) or whose counters went
 * backwards (replaced connection) is skipped rather than shown as a spike; one that did not
 * change at all, timestamp included (the final stats of a closed channel), counts as idle.
 * Returns null when nothing could be compared.
 */
export function rates(previous, current) {
  const before = new Map();
  for (const e of previous ?? []) if (e && typeof e.id === "string") before.set(e.id, e);
  const out = { intervalS: 0 };
  for (const keys of Object.values(RATE_KEYS)) for (const k of keys) out[k] = 0;
  let matched = false;
  for (const cur of current ?? []) {
    const fields = cur && RATE_FIELDS[cur.type];
    const prev = fields && before.get(cur.id);
    if (!prev || prev.type !== cur.type) continue;
    const t0 = counter(prev, "timestamp");
    const t1 = counter(cur, "timestamp");
    const dt = t0 === null || t1 === null ? 0 : (t1 - t0) / 1000;
    const deltas = entryDeltas(prev, cur, fields);
    if (deltas === null) continue;
    if (!(dt > 0)) {
      // a frozen entry (same timestamp, same counters): an ended connection whose final
      // stats a Python peer keeps reporting as they were; it moves nothing
      if (t0 !== null && t0 === t1 && deltas.every(([, s, r]) => s === 0 && r === 0)) matched = true;
      continue;
    }
    matched = true;
    out.intervalS = Math.max(out.intervalS, dt);
    for (const [key, sent, received] of deltas) {
      const [kSent, kReceived, kBoth] = RATE_KEYS[key];
      out[kSent] += sent / dt;
      out[kReceived] += received / dt;
      out[kBoth] += (sent + received) / dt;
    }
  }
  return matched ? out : null;
}

/** [[rateKey, sent delta, received delta]...], or null if a counter is missing or went back. */
function entryDeltas(prev, cur, fields) {
  const deltas = [];
  for (const [key, names] of Object.entries(fields)) {
    const d = names.map((name) => {
      const a = counter(prev, name);
      const b = counter(cur, name);
      return a === null || b === null || b < a ? null : b - a;
    });
    if (d.includes(null)) return null;
    deltas.push([key, d[0], d[1]]);
  }
  return deltas;
}

/** Size of one data-channel message as RTCDataChannelStats counts it. */
export function messageSize(data) {
  if (typeof data === 'string') return utf8Length(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return data?.size ?? 0; // Blob
}

/**
 * Our own count of one channel's messages and bytes, with the RTCDataChannelStats names.
 * Chromium drops a data channel's entry from getStats() once the channel closes, so the
 * last counters of a finished connection (which the dashboard and the tests want, like the
 * Python receiver's "closed" entries) come from here; `entry` keeps the id of the last
 * browser entry so rates stay continuous.
 */
export class ChannelCounter {
  constructor(id, label = 'latent') {
    this.id = id;
    this.label = label;
    this.messagesSent = 0;
    this.bytesSent = 0;
    this.messagesReceived = 0;
    this.bytesReceived = 0;
    this.last = null; // the browser's last entry for this channel
  }

  sent(data) { this.messagesSent += 1; this.bytesSent += messageSize(data); }

  received(data) { this.messagesReceived += 1; this.bytesReceived += messageSize(data); }

  /** Remember the browser's entry (from reportEntries) when the report has one. */
  observe(entries) {
    const e = entries.find((x) => x.type === 'data-channel' && x.label === this.label);
    if (e) this.last = e;
    return e ?? null;
  }

  /** An RTCDataChannelStats entry from our counters. */
  entry({ state = 'open', timestamp = Date.now() } = {}) {
    return { ...(this.last ?? {}), type: 'data-channel', id: this.last?.id ?? this.id, label: this.label,
      state, timestamp, messagesSent: this.messagesSent, bytesSent: this.bytesSent,
      messagesReceived: this.messagesReceived, bytesReceived: this.bytesReceived };
  }
}

/**
 * The connection state to show for a report: data-channel states ("open", or
 * "open 2, closing 1" for a receiver with several), else the DTLS state, else "no channel".
 */
export function channelState(report) {
  const counts = new Map();
  let dtls = null;
  for (const e of report ?? []) {
    if (e?.type === "data-channel" && typeof e.state === "string") {
      counts.set(e.state, (counts.get(e.state) ?? 0) + 1);
    } else if (e?.type === "transport" && typeof e.dtlsState === "string") {
      dtls = e.dtlsState;
    }
  }
  if (counts.size === 0) return dtls ? `dtls ${dtls}` : "no channel";
  if (counts.size === 1 && [...counts.values()][0] === 1) return [...counts.keys()][0];
  return [...counts].map(([state, n]) => `${state} ${n}`).join(", ");
}

/** `app[key]` when it is a finite number, else null: app stats come from other clients. */
export function appNumber(app, key) {
  const v = app?.[key];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * Frames per second for a peer that does not publish `app.fps` (a receiver publishes a
 * `frames` counter): the counter's rate between two stats messages, `time` in ms.
 * Null without a usable baseline or when the counter went back (a restarted peer).
 */
export function counterRate(prev, cur) {
  if (!prev || !cur) return null;
  const { value: a, time: t0 } = prev;
  const { value: b, time: t1 } = cur;
  if (![a, b, t0, t1].every((v) => typeof v === "number" && Number.isFinite(v))) return null;
  if (!(t1 > t0) || b < a) return null;
  return (b - a) / ((t1 - t0) / 1000);
}

/** The numbers the dashboard charts for one peer, from its latest rates and app stats. */
export function peerMetrics(r, app, derivedFps = null) {
  return {
    payloadBps: r?.payloadBps ?? null,
    wireBps: r?.wireBps ?? null,
    messagesPs: r?.messagesPs ?? null,
    fps: appNumber(app, "fps") ?? derivedFps,
    p50: appNumber(app, "latency_p50_ms"),
    p99: appNumber(app, "latency_p99_ms"),
  };
}

/**
 * Emits `stats` {report, app} once a second (docs/signaling.md). A failed round is logged
 * and retried next round: losing one dashboard update is harmless, stopping is not.
 * Keeps the latest report and the per-direction rates since the previous one.
 */
export class StatsPublisher {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {() => Promise<object[]>} report
   * @param {() => object} app
   */
  constructor(signaling, report, app, intervalMs = 1000) {
    this.signaling = signaling;
    this.reportFn = report;
    this.appFn = app;
    this.intervalMs = intervalMs;
    this.lastReport = [];
    this.lastRates = null;
    this.emitted = 0;
    this.onUpdate = null;
    this._timer = null;
  }

  start() {
    if (this._timer !== null) return;
    const tick = async () => {
      await this.publishOnce();
      if (this._timer !== null) this._timer = setTimeout(tick, this.intervalMs);
    };
    this._timer = setTimeout(tick, 0);
  }

  stop() {
    clearTimeout(this._timer);
    this._timer = null;
  }

  async publishOnce() {
    try {
      const report = await this.reportFn();
      const payload = { report, app: this.appFn() };
      if (this.lastReport.length) this.lastRates = rates(this.lastReport, report) ?? this.lastRates;
      this.lastReport = report;
      this.signaling.stats(payload);
      this.emitted += 1;
      this.onUpdate?.(this.lastRates, report);
      return true;
    } catch (e) {
      console.warn('stats round failed (will retry)', e);
      return false;
    }
  }
}
