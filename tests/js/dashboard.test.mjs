// Unit tests of static/js/ui/ratechart.js: the rolling window and the live chart's rule
// "update in place, rebuild only when the series change" (with a stand-in for uPlot).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  LiveChart, RollingWindow, latest, niceTop, relativeLabel, relativeTicks, tickStep,
} from "../../static/js/ui/ratechart.js";

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
