// Unit tests of the dashboard's pure parts: static/js/ui/ratechart.js (the rolling window, the
// live chart's rule "update in place, rebuild only when the series change", with a stand-in
// for uPlot, and the switch marks drawn over it), ui/point.js (operating point and leakage),
// ui/switches.js (switches between two stats events) and ui/pool.js (the pool's receivers).

import assert from "node:assert/strict";
import { test } from "node:test";

import { formatCpu, PoolModel, SATURATED_CPU, SATURATED_QUEUE } from "../../static/js/ui/pool.js";
import { leakageView, operatingPoint, pointText, PRIVATE_SSIM } from "../../static/js/ui/point.js";
import {
  LiveChart, RollingWindow, drawMarks, latest, marksInWindow, niceTop, relativeLabel, relativeTicks, tickStep,
} from "../../static/js/ui/ratechart.js";
import { MAX_MARKS, SwitchMarks } from "../../static/js/ui/switches.js";

test("RollingWindow keeps aligned columns and drops samples older than the window", () => {
  const w = new RollingWindow(10, ["a", "b"]);
  w.addPeer("p1");
  w.push(100, new Map([["p1", { a: 1, b: 2 }]]));
  w.addPeer("p2"); // joins later: its past is null
  w.push(101, new Map([["p1", { a: 3, b: Number.NaN }], ["p2", { a: 5 }]]));
  assert.deepEqual(w.times, [100, 101]);
  assert.deepEqual(w.column("p1", "a"), [1, 3]);
  assert.deepEqual(w.column("p1", "b"), [2, null]); // not finite: a gap
  assert.deepEqual(w.column("p2", "a"), [null, 5]);
  assert.deepEqual(w.column("p2", "b"), [null, null]);
  const col = w.column("p1", "a");
  for (let t = 102; t <= 112; t += 1) w.push(t, new Map()); // p1 and p2 silent
  assert.equal(w.times[0], 102); // 100 and 101 are older than 112 - 10
  assert.equal(w.times.length, 11);
  assert.equal(w.column("p1", "a"), col, "columns are mutated in place, not replaced");
  assert.equal(col.length, 11);
  assert.equal(w.hasValues("p1"), false);
  w.removePeer("p2");
  assert.equal(w.has("p2"), false);
  assert.equal(w.column("p2", "a"), null);
});

test("latest and niceTop", () => {
  assert.equal(latest([1, 2, null]), 2);
  assert.equal(latest([1, null, null, null]), null); // too old
  assert.equal(latest([]), null);
  assert.equal(niceTop(0, 1000), 2000);
  assert.equal(niceTop(985000, 1000), 2e6);
  assert.equal(niceTop(30, 1), 50);
  assert.equal(niceTop(Number.NaN, 1), 2);
});

test("x axis: ticks at round seconds back from the newest sample", () => {
  assert.equal(tickStep(60), 15);
  assert.equal(tickStep(10), 5);
  assert.equal(tickStep(600), 120);
  assert.deepEqual(relativeTicks(40, 100, 15), [40, 55, 70, 85, 100]);
  assert.deepEqual(relativeTicks(40, 100, 30), [40, 70, 100]);
  assert.equal(relativeLabel(0.2), "now");
  assert.equal(relativeLabel(-15), "-15 s");
  assert.equal(relativeLabel(-120), "-2 min");
});

class FakePlot {
  static built = 0;
  constructor(opts, data, el) {
    FakePlot.built += 1;
    this.opts = opts;
    this.data = data;
    this.el = el;
    this.setDataCalls = 0;
    this.destroyed = false;
    this.cursor = { left: -10, idx: null };
  }
  setData(data) { this.data = data; this.setDataCalls += 1; }
  setSize() {}
  destroy() { this.destroyed = true; }
}

test("LiveChart updates data in place and rebuilds only when the series change", () => {
  FakePlot.built = 0;
  const el = { clientWidth: 500, dataset: {} };
  const chart = new LiveChart(el, { uPlot: FakePlot, format: String, windowS: 60 });
  const times = [];
  const a = [];
  const b = [];
  const series = () => [{ id: "a", label: "sender", color: "#f00", values: a }];
  for (let t = 0; t < 30; t += 1) {
    times.push(t);
    a.push(t * 10);
    chart.update(times, series());
  }
  assert.equal(chart.builds, 1);
  assert.equal(FakePlot.built, 1);
  assert.equal(el.dataset.builds, "1");
  const first = chart.plot;
  assert.equal(first.setDataCalls, 29);
  assert.deepEqual(first.data[1].slice(-1), [290]);
  // x axis spans the whole window, ending at the newest sample
  assert.deepEqual(first.opts.scales.x.range(null, 0, 29), [29 - 60, 29]);
  assert.deepEqual(first.opts.scales.y.range(null, 0, 290), [0, 500]);

  // a second peer: one rebuild, the old plot destroyed
  times.push(30);
  a.push(300);
  b.push(...times.map(() => null));
  chart.update(times, [...series(), { id: "b", label: "receiver", color: "#00f", values: b }]);
  assert.equal(chart.builds, 2);
  assert.equal(first.destroyed, true);
  assert.equal(chart.plot.opts.series.length, 3);
  // renaming a peer changes its legend: rebuild; same list again: no rebuild
  chart.update(times, [...series(), { id: "b", label: "receiver-2", color: "#00f", values: b }]);
  chart.update(times, [...series(), { id: "b", label: "receiver-2", color: "#00f", values: b }]);
  assert.equal(chart.builds, 3);
});

class FakeCtx {
  constructor() { this.lines = []; this.texts = []; this.saved = 0; }
  save() { this.saved += 1; }
  restore() { this.saved -= 1; }
  setLineDash() {}
  beginPath() { this.path = []; }
  moveTo(x, y) { this.path.push([x, y]); }
  lineTo(x, y) { this.path.push([x, y]); }
  stroke() { this.lines.push({ path: this.path, color: this.strokeStyle }); }
  measureText(s) { return { width: 6 * s.length }; }
  fillRect() {}
  fillText(text, x, y) { this.texts.push({ text, x, y, color: this.fillStyle }); }
}

test("switch marks: kept in the window, drawn at their time, never a rebuild", () => {
  FakePlot.built = 0;
  const el = { clientWidth: 500, dataset: {} };
  const chart = new LiveChart(el, { uPlot: FakePlot, format: String, windowS: 10 });
  const times = [100, 101, 102];
  const a = [1, 2, 3];
  const series = [{ id: "a", label: "sender", color: "#f00", values: a }];
  const marks = [
    { t: 90, label: "too-old/float32/float32", color: "#f00" }, // before the window [92, 102]
    { t: 101.4, label: "stage2/int8-tensor/int8", color: "#f00" },
    { t: 103, label: "future/float32/float32", color: "#00f" }, // after the newest sample
  ];
  chart.update(times, series, marks);
  chart.update(times, series, marks);
  assert.equal(chart.builds, 1, "marks never rebuild the plot");
  assert.deepEqual(chart.marks.map((m) => m.label), ["stage2/int8-tensor/int8"]);
  assert.equal(el.dataset.marks, "1");
  assert.deepEqual(marksInWindow(marks, 92, 103).map((m) => m.t), [101.4, 103]);

  // the draw hook: one dashed line across the plot box at the mark's x, its label at the top
  const ctx = new FakeCtx();
  const box = { left: 50, top: 10, width: 400, height: 150 };
  const u = { ctx, bbox: box, valToPos: (t) => box.left + ((t - 92) / 10) * box.width };
  chart.plot.opts.hooks.draw[0](u);
  assert.equal(ctx.lines.length, 1);
  assert.equal(el.dataset.drawnMarks, "1");
  const x = Math.round(u.valToPos(101.4));
  assert.deepEqual(ctx.lines[0].path, [[x + 0.5, 10], [x + 0.5, 160]]);
  assert.deepEqual(ctx.texts.map((t) => [t.text, t.color]), [["stage2/int8-tensor/int8", "#f00"]]);
  assert.ok(ctx.texts[0].x + 6 * ctx.texts[0].text.length <= box.left + box.width, "the label stays in the box");
  assert.equal(ctx.saved, 0, "context restored");
  // a mark off the box (the plot not yet scaled to it) is skipped
  assert.equal(drawMarks(new FakeCtx(), [{ t: 0, label: "x", color: "#000" }], () => 10, box), 0);

  // as time goes on a mark scrolls out of the window, and a newer one comes into it
  times.push(110, 112);
  a.push(4, 5);
  chart.update(times, series, marks);
  assert.deepEqual(chart.marks.map((m) => m.label), ["future/float32/float32"]);
  times.push(114);
  a.push(6);
  chart.update(times, series, marks);
  assert.deepEqual(chart.marks, []);
  assert.equal(el.dataset.marks, "0");
  assert.equal(chart.builds, 1);
});

test("operatingPoint reads split / codec / head / switches from app stats", () => {
  assert.deepEqual(operatingPoint({ split: "stage1", codec: "float16", head: "int8", operating_point: "stage1/float16/int8", switches: 3 }),
    { split: "stage1", codec: "float16", head: "int8", key: "stage1/float16/int8", switches: 3 });
  // a fixed point of an older sender: no head, no operating_point, no switches
  const fixed = operatingPoint({ split: "stage1", codec: "float32", frames: 10 });
  assert.deepEqual(fixed, { split: "stage1", codec: "float32", head: null, key: "stage1/float32/?", switches: null });
  assert.equal(pointText(fixed), "stage1 / float32");
  assert.equal(pointText(operatingPoint({ split: "stage1", codec: "float16", head: "int8" })), "stage1 / float16 / int8");
  assert.equal(pointText(null), "–");
  // a receiver reports the split it last received, or nothing
  assert.equal(pointText(operatingPoint({ senders: 2, split: "stage2" })), "stage2");
  assert.equal(operatingPoint({ senders: 2, frames: 10 }), null);
  assert.equal(operatingPoint({ senders: 2, split: "" }), null);
  assert.equal(operatingPoint(null), null);
  // what another client sends is checked, not trusted
  const odd = operatingPoint({ split: "x".repeat(500), codec: 7, head: "int8", switches: -4, operating_point: ["a"] });
  assert.deepEqual(odd, { split: null, codec: null, head: "int8", key: "?/?/int8", switches: null });
  assert.equal(operatingPoint({ split: "stem", switches: Number.NaN }).switches, null);
});

test("leakageView: SSIM below 0.3 private, else recognisable; null or absent not measured", () => {
  const priv = leakageView({ ssim: 0.214, psnr_db: 12.345, recon_top1: 0.1234, attack: "inverse" });
  assert.equal(priv.kind, "private");
  assert.equal(priv.ssim, 0.214);
  assert.equal(priv.text, "private · SSIM 0.21");
  assert.equal(priv.detail, "12.3 dB · top-1 12%");
  assert.match(priv.title, /inverse/);
  assert.match(priv.title, /unrecognisable/);
  const rec = leakageView({ ssim: 0.3, psnr_db: 20, recon_top1: 0.8, attack: "whitebox-rml" });
  assert.equal(rec.kind, "recognisable", "0.3 itself is not below the threshold");
  assert.equal(rec.text, "recognisable · SSIM 0.30");
  assert.equal(rec.detail, "20.0 dB · top-1 80%");
  assert.match(rec.title, /whitebox-rml/);
  assert.equal(leakageView({ ssim: 0.29999 }).kind, "private");
  assert.equal(leakageView({ ssim: 0.95 }).detail, "", "missing figures are left out");
  for (const none of [null, undefined, {}, "0.1", { ssim: "0.1" }, { ssim: Number.NaN }, [0.1]]) {
    const v = leakageView(none);
    assert.equal(v.kind, "unmeasured", JSON.stringify(none));
    assert.equal(v.text, "not measured");
    assert.equal(v.detail, "");
    assert.equal(v.ssim, null);
  }
  assert.equal(PRIVATE_SSIM, 0.3);
});

test("SwitchMarks: a rising count or a new point between two events is a switch", () => {
  const s = new SwitchMarks();
  const app = (key, switches) => {
    const [split, codec, head] = key.split("/");
    return { split, codec, head, operating_point: key, switches };
  };
  assert.equal(s.observe("a", app("stage1/float32/float32", 2), 10), null, "first event: a baseline");
  assert.equal(s.observe("a", app("stage1/float32/float32", 2), 11), null, "nothing changed");
  const m = s.observe("a", app("stage2/int8-tensor/int8", 3), 12);
  assert.deepEqual(m, { id: "a", t: 12, point: "stage2/int8-tensor/int8", from: "stage1/float32/float32", count: 1 });
  // two switches between two events (there and back): the count says so, the point did not change
  assert.deepEqual(s.observe("a", app("stage2/int8-tensor/int8", 5), 13),
    { id: "a", t: 13, point: "stage2/int8-tensor/int8", from: "stage2/int8-tensor/int8", count: 2 });
  // a point change without a counter (a sender that publishes none)
  s.observe("b", { split: "stem", codec: "float32" }, 12);
  assert.equal(s.observe("b", { split: "stem", codec: "float16" }, 14).point, "stem/float16/?");
  // a count that goes down is a new baseline, not a switch
  assert.equal(s.observe("a", app("stage2/int8-tensor/int8", 0), 15), null);
  assert.equal(s.observe("a", app("stage2/int8-tensor/int8", 1), 16).count, 1);
  // a peer with no point at all (a receiver) never switches
  assert.equal(s.observe("r", { senders: 1 }, 10), null);
  assert.equal(s.observe("r", { senders: 2 }, 11), null);
  assert.deepEqual(s.marks.map((x) => [x.id, x.t]), [["a", 12], ["a", 13], ["b", 14], ["a", 16]]);
  s.prune(13.5); // the window now starts at 13.5
  assert.deepEqual(s.marks.map((x) => x.t), [14, 16]);
  s.forget("a");
  assert.equal(s.observe("a", app("stem/float32/float32", 9), 17), null, "forgotten: a new baseline");
});

test("SwitchMarks keeps at most `limit` marks, whatever a peer sends", () => {
  const s = new SwitchMarks(5);
  for (let i = 0; i < 50; i += 1) s.observe("a", { split: "stage1", codec: "float32", head: "float32", switches: i }, i);
  assert.equal(s.marks.length, 5);
  assert.deepEqual(s.marks.map((m) => m.t), [45, 46, 47, 48, 49]);
  assert.equal(MAX_MARKS > 0, true);
});

const poolStats = (from, name, load, senders, extra = {}) =>
  ({ from, role: "receiver", name, time: 1, report: [], app: {}, pool: { load, senders }, ...extra });

test("PoolModel: receivers with their load and senders; a receiver that leaves disappears", () => {
  const pool = new PoolModel();
  assert.equal(pool.update({ from: "s1", role: "sender", name: "s1", app: {} }), false, "not a pool receiver");
  assert.equal(pool.update({ from: "r9", role: "receiver", name: "plain", app: {} }), false, "a receiver outside a pool");
  assert.equal(pool.update(poolStats("r2", "r2", { streams: 1, cpu: 0.25, queue: 0 },
    [{ id: "s3", role: "sender", name: "cam-3" }])), true);
  assert.equal(pool.update(poolStats("r1", "r1", { streams: 2, cpu: 0.95, queue: 1 },
    [{ id: "s2", role: "sender", name: "cam-2" }, { id: "s1", role: "sender", name: "cam-1" }])), true);
  let rs = pool.receivers();
  assert.deepEqual(rs.map((r) => r.name), ["r1", "r2"], "by name");
  assert.deepEqual(rs[0].senders.map((s) => s.name), ["cam-1", "cam-2"]);
  assert.deepEqual(rs[0].load, { streams: 2, cpu: 0.95, queue: 1, workers: 1 }, "one worker when not said");
  assert.equal(rs[0].saturated, true, "cpu >= 0.9");
  assert.equal(rs[1].saturated, false);
  assert.equal(pool.update(poolStats("r2", "r2", { streams: 0, cpu: 0.1, queue: SATURATED_QUEUE }, [])), true);
  assert.equal(pool.receivers()[1].saturated, true, "a long tail queue");
  // four workers: saturated at four times one worker's limits, as signaling/pool.py judges
  pool.update(poolStats("r4", "r4", { streams: 9, cpu: 3.0, queue: SATURATED_QUEUE * 3, workers: 4 }, []));
  assert.equal(pool.byId.get("r4").saturated, false, "3 cores and 24 frames queued over 4 workers");
  pool.update(poolStats("r4", "r4", { streams: 9, cpu: SATURATED_CPU * 4, queue: 0, workers: 4 }, []));
  assert.equal(pool.byId.get("r4").saturated, true);
  pool.remove("r4");
  assert.equal(formatCpu(1.5, 2), "150% of 2 cores");
  // who waits: senders no receiver lists
  const senders = [{ id: "s1", name: "cam-1" }, { id: "s3", name: "cam-3" }, { id: "s2", name: "cam-2" }];
  assert.deepEqual(pool.waiting(senders).map((s) => s.id), ["s3"], "s3 lost r2 meanwhile");
  // r1 leaves: gone at once, its senders are waiting
  assert.equal(pool.remove("r1"), true);
  assert.equal(pool.remove("r1"), false);
  assert.deepEqual(pool.receivers().map((r) => r.id), ["r2"]);
  assert.deepEqual(pool.waiting(senders).map((s) => s.name), ["cam-1", "cam-2", "cam-3"]);
  // after a rejoin, only the receivers in the ack remain
  pool.update(poolStats("r3", "r3", { streams: 0, cpu: 0, queue: 0 }, []));
  pool.retain(new Set(["r3", "s1"]));
  assert.deepEqual(pool.receivers().map((r) => r.id), ["r3"]);
  assert.equal(formatCpu(0.456), "46% of a core");
  assert.equal(SATURATED_CPU, 0.9);
});

test("PoolModel checks what it is sent", () => {
  const pool = new PoolModel();
  const many = Array.from({ length: 10_000 }, (_, i) => ({ id: `s${i}`, role: "sender", name: `n${i}` }));
  pool.update(poolStats("r1", "x".repeat(500), { streams: -3, cpu: "high", queue: Number.POSITIVE_INFINITY },
    [...many, null, { id: 7 }, { id: "" }, { id: "ok", name: 5 }]));
  const [r] = pool.receivers();
  assert.equal(r.name.length, 64);
  assert.deepEqual(r.load, { streams: 0, cpu: 0, queue: 0, workers: 1 });
  assert.equal(r.senders.length, 4096, "bounded");
  assert.equal(pool.update({ ...poolStats("r2", "r2", null, "nope") }), true);
  assert.deepEqual(pool.receivers().find((x) => x.id === "r2").senders, []);
  assert.deepEqual(pool.receivers().find((x) => x.id === "r2").load, { streams: 0, cpu: 0, queue: 0, workers: 1 });
  pool.update(poolStats("r3", "r3", { workers: 1e9 }, []));
  assert.equal(pool.byId.get("r3").load.workers, 1024, "workers bounded");
  pool.update(poolStats("r3", "r3", { workers: -2 }, []));
  assert.equal(pool.byId.get("r3").load.workers, 1, "at least one worker");
});
