/**
 * getStats() -> the `report` of a `stats` event (docs/signaling.md), and rates from two
 * reports. Pure functions, node-tested.
 *
 * A browser peer publishes what getStats() returned for its `data-channel` and `transport`
 * entries (W3C RTCDataChannelStats / RTCTransportStats names, counters cumulative, timestamp
 * in ms since the Unix epoch). A receiver serves several senders, one RTCPeerConnection each,
 * and the browser numbers each connection's entries alike ("D1", "T01"...), so their ids
 * get a per-connection prefix to stay unique inside one report.
 * @module stats
 */

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

const FIELDS = {
  'data-channel': {
    payloadSentBps: 'bytesSent', payloadReceivedBps: 'bytesReceived',
    messagesSentPs: 'messagesSent', messagesReceivedPs: 'messagesReceived',
  },
  transport: {
    wireSentBps: 'bytesSent', wireReceivedBps: 'bytesReceived',
    packetsSentPs: 'packetsSent', packetsReceivedPs: 'packetsReceived',
  },
};

/**
 * Per-direction rates between two reports of one peer, summed over its channels and
 * transports; entries matched by id; one with no baseline or whose counters went back
 * (a replaced connection) is skipped. Null when nothing matched.
 */
export function reportRates(previous, current) {
  const before = new Map((previous ?? []).map((e) => [e.id, e]));
  const out = { intervalS: 0, payloadSentBps: 0, payloadReceivedBps: 0, messagesSentPs: 0,
    messagesReceivedPs: 0, wireSentBps: 0, wireReceivedBps: 0, packetsSentPs: 0, packetsReceivedPs: 0 };
  let matched = false;
  for (const cur of current ?? []) {
    const fields = FIELDS[cur?.type];
    const prev = fields && before.get(cur.id);
    if (!prev || prev.type !== cur.type) continue;
    const dt = (cur.timestamp - prev.timestamp) / 1000;
    if (!(dt > 0)) continue;
    const deltas = {};
    let ok = true;
    for (const [key, f] of Object.entries(fields)) {
      const d = (cur[f] ?? 0) - (prev[f] ?? 0);
      if (!(d >= 0)) ok = false;
      deltas[key] = d;
    }
    if (!ok) continue;
    matched = true;
    out.intervalS = Math.max(out.intervalS, dt);
    for (const [key, d] of Object.entries(deltas)) out[key] += d / dt;
  }
  return matched ? out : null;
}

/** 12345 -> "12.3 kB" (SI, like the Python status line). */
export function humanBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return i === 0 ? `${n.toFixed(0)} ${units[i]}` : `${n.toFixed(1)} ${units[i]}`;
}

/** Bytes of a string in UTF-8 (what a data channel sends for a text message). */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { n += 4; i++; } // surrogate pair
    else n += 3;
  }
  return n;
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
