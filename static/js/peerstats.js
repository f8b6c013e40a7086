// Rates and summaries from successive `stats` reports (docs/signaling.md, "Stats payload").
//
// Pure functions, no DOM: the same code serves browser and Python peers, whose reports use
// the W3C RTCDataChannelStats / RTCTransportStats names, and it can be unit-tested in node.
// Mirrors splitcore.rtc.stats.rates so the dashboard and a Python peer's status line agree.

/** Counters summed into each rate; `payload` is application bytes, `wire` bytes on the wire. */
const RATE_FIELDS = {
  "data-channel": {
    payloadBps: ["bytesSent", "bytesReceived"],
    messagesPs: ["messagesSent", "messagesReceived"],
  },
  transport: {
    wireBps: ["bytesSent", "bytesReceived"],
    packetsPs: ["packetsSent", "packetsReceived"],
  },
};

/** A counter as a finite number, or null: reports come from other clients, trust nothing. */
function counter(entry, field) {
  const v = entry[field];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * Rates between two reports of one peer, summed over its channels and transports.
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
  const out = { intervalS: 0, payloadBps: 0, messagesPs: 0, wireBps: 0, packetsPs: 0 };
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
      if (t0 !== null && t0 === t1 && Object.values(deltas).every((d) => d === 0)) matched = true;
      continue;
    }
    matched = true;
    out.intervalS = Math.max(out.intervalS, dt);
    for (const [key, delta] of Object.entries(deltas)) out[key] += delta / dt;
  }
  return matched ? out : null;
}

/** {rateKey: delta of the summed counters}, or null if any counter is missing or went back. */
function entryDeltas(prev, cur, fields) {
  const deltas = {};
  for (const [key, names] of Object.entries(fields)) {
    let delta = 0;
    for (const name of names) {
      const a = counter(prev, name);
      const b = counter(cur, name);
      if (a === null || b === null || b < a) return null;
      delta += b - a;
    }
    deltas[key] = delta;
  }
  return deltas;
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

/** Bytes per second in SI units, three significant digits from 1 kB/s: "1.05 MB/s", "995.3 kB/s". */
export function formatRate(bps) {
  if (typeof bps !== "number" || !Number.isFinite(bps)) return "–";
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let v = bps;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return i === 0 ? `${v.toFixed(0)} ${units[0]}` : `${v.toFixed(Math.abs(v) < 10 ? 2 : 1)} ${units[i]}`;
}

/** A number with fixed decimals, or "–" when the peer did not report it. */
export function formatNumber(value, digits = 0) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** A share in [0, 1] as a percentage, e.g. fidelity 1 -> "100%", 0.98765 -> "98.77%". */
export function formatPercent(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value === 1 ? "100%" : `${(value * 100).toFixed(2)}%`;
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

/** A short message rate / frame rate for axes: "30", "1.5k". */
export function formatCount(value, digits = 1) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** Milliseconds with a precision that suits the size: "0.85 ms", "12.3 ms", "140 ms". */
export function formatMs(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const digits = Math.abs(value) < 1 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return `${value.toFixed(digits)} ms`;
}
