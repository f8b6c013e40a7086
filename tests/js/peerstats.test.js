// Unit tests of static/js/rtc/stats.js and ui/format.js (the dashboard's rate math): `npm test`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { appNumber, channelState, counterRate, peerMetrics, rates } from "../../static/js/rtc/stats.js";
import { formatCount, formatMs, formatNumber, formatPercent, formatRate } from "../../static/js/ui/format.js";

/** The both-directions rates the dashboard charts. */
const both = (r) => r && { intervalS: r.intervalS, payloadBps: r.payloadBps, messagesPs: r.messagesPs,
  wireBps: r.wireBps, packetsPs: r.packetsPs };
const dc = (ts, sent, recv, msent, mrecv, id = "DC1", state = "open") => ({
  type: "data-channel", id, timestamp: ts, state, bytesSent: sent, bytesReceived: recv,
  messagesSent: msent, messagesReceived: mrecv,
});
const tr = (ts, sent, recv, psent, precv, id = "T1") => ({
  type: "transport", id, timestamp: ts, bytesSent: sent, bytesReceived: recv,
  packetsSent: psent, packetsReceived: precv, dtlsState: "connected",
});

test("rates sum sent + received over matched entries, per entry interval", () => {
  const prev = [dc(1000, 100, 0, 1, 0), dc(1000, 0, 0, 0, 0, "DC2"), tr(1000, 500, 50, 5, 1),
    { type: "candidate-pair", id: "CP1", timestamp: 1000, bytesSent: 0 }];
  const cur = [dc(3000, 2100, 400, 21, 4), dc(3000, 1000, 0, 10, 0, "DC2"), tr(3000, 6500, 850, 45, 9),
    dc(3000, 9999, 0, 9, 0, "DC-new"), { type: "candidate-pair", id: "CP1", timestamp: 3000, bytesSent: 1e9 }];
  const r = rates(prev, cur);
  // per direction, as the pages and Python's Rates show them
  assert.equal(r.payloadSentBps, (2000 + 1000) / 2);
  assert.equal(r.payloadReceivedBps, 400 / 2);
  assert.equal(r.wireSentBps, 6000 / 2);
  assert.equal(r.packetsReceivedPs, 8 / 2);
  assert.deepEqual(both(r), {
    intervalS: 2, payloadBps: (2000 + 400 + 1000) / 2, messagesPs: (20 + 4 + 10) / 2,
    wireBps: (6000 + 800) / 2, packetsPs: (40 + 8) / 2,
  });
});

test("rates: null when nothing comparable; resets and bad values are skipped", () => {
  assert.equal(rates([], [dc(1000, 1, 1, 1, 1)]), null); // no baseline
  assert.equal(rates([dc(1000, 5, 0, 1, 0)], [dc(1000, 9, 0, 2, 0)]), null); // same timestamp, moved
  assert.equal(rates([dc(1000, 500, 0, 5, 0)], [dc(2000, 10, 0, 1, 0)]), null); // went back
  assert.equal(rates([dc(null, 0, 0, 0, 0)], [dc(2000, 10, 0, 1, 0)]), null); // no timestamp
  assert.equal(rates([dc(1000, 0, 0, 0, 0)], [dc(2000, "10", 0, 1, 0)]), null); // not a number
  assert.equal(rates(undefined, [null, 7, "x"]), null);
});

test("channelState summarises data channels, else DTLS", () => {
  assert.equal(channelState([dc(0, 0, 0, 0, 0), tr(0, 0, 0, 0, 0)]), "open");
  assert.equal(channelState([dc(0, 0, 0, 0, 0), dc(0, 0, 0, 0, 0, "D2"),
    dc(0, 0, 0, 0, 0, "D3", "closed")]), "open 2, closed 1");
  assert.equal(channelState([tr(0, 0, 0, 0, 0)]), "dtls connected");
  assert.equal(channelState([]), "no channel");
});

test("formatting", () => {
  assert.equal(formatRate(999), "999 B/s");
  assert.equal(formatRate(1500), "1.50 kB/s");
  assert.equal(formatRate(2.5e6), "2.50 MB/s");
  assert.equal(formatRate(1.0512e6), "1.05 MB/s");
  assert.equal(formatRate(995300), "995.3 kB/s");
  assert.equal(formatRate(12345), "12.3 kB/s");
  assert.equal(formatRate(undefined), "–");
  assert.equal(formatNumber(1.25, 1), "1.3");
  assert.equal(formatNumber("7"), "–");
});

test("formatting of shares, counts and milliseconds", () => {
  assert.equal(formatPercent(1), "100%");
  assert.equal(formatPercent(0.98765), "98.77%");
  assert.equal(formatPercent(null), "–");
  assert.equal(formatCount(30), "30");
  assert.equal(formatCount(29.54), "29.5");
  assert.equal(formatCount(1500), "1.5k");
  assert.equal(formatMs(0.853), "0.85 ms");
  assert.equal(formatMs(12.34), "12.3 ms");
  assert.equal(formatMs(140.2), "140 ms");
  assert.equal(formatMs(undefined), "–");
});

test("appNumber trusts only finite numbers", () => {
  assert.equal(appNumber({ fps: 30 }, "fps"), 30);
  assert.equal(appNumber({ fps: "30" }, "fps"), null);
  assert.equal(appNumber({ fps: NaN }, "fps"), null);
  assert.equal(appNumber(null, "fps"), null);
});

test("counterRate: frames per second from a counter, null without a usable baseline", () => {
  assert.equal(counterRate({ value: 100, time: 1000 }, { value: 130, time: 2000 }), 30);
  assert.equal(counterRate({ value: 100, time: 1000 }, { value: 145, time: 2500 }), 30);
  assert.equal(counterRate(null, { value: 1, time: 1 }), null);
  assert.equal(counterRate({ value: 100, time: 1000 }, { value: 90, time: 2000 }), null); // restarted
  assert.equal(counterRate({ value: 100, time: 1000 }, { value: 110, time: 1000 }), null);
  assert.equal(counterRate({ value: null, time: 1000 }, { value: 110, time: 2000 }), null);
});

test("peerMetrics: rates, app fps (or the derived one), latency", () => {
  const r = { payloadBps: 985000, wireBps: 1010000, messagesPs: 60, intervalS: 1, packetsPs: 700 };
  assert.deepEqual(peerMetrics(r, { fps: 30, latency_p50_ms: 4.2, latency_p99_ms: 9 }, 12), {
    payloadBps: 985000, wireBps: 1010000, messagesPs: 60, fps: 30, p50: 4.2, p99: 9 });
  assert.deepEqual(peerMetrics(r, { frames: 10 }, 29.5), {
    payloadBps: 985000, wireBps: 1010000, messagesPs: 60, fps: 29.5, p50: null, p99: null });
  assert.deepEqual(peerMetrics(null, {}), {
    payloadBps: null, wireBps: null, messagesPs: null, fps: null, p50: null, p99: null });
});

test("rates: a frozen entry (closed channel reported as it ended) is idle, not the last rate", () => {
  const closed = dc(1000, 5000, 100, 5, 1, "DC-old", "closed");
  assert.deepEqual(both(rates([closed], [closed])), {
    intervalS: 0, payloadBps: 0, messagesPs: 0, wireBps: 0, packetsPs: 0 });
  // next to a live channel it adds nothing
  const r = rates([closed, dc(1000, 0, 0, 0, 0)], [closed, dc(2000, 3000, 0, 3, 0)]);
  assert.equal(r.payloadBps, 3000);
  assert.equal(r.intervalS, 1);
});
