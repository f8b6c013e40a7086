// Live uPlot charts of the dashboard: a rolling time window shared by every chart, and one
// chart (one series per peer) that updates its data in place once a second.
//
// Samples are taken by the dashboard on its own clock, not when stats arrive: peers report
// at different moments and uPlot needs one shared x axis. A peer without a fresh value gets
// a gap (null), so a stalled or departed peer is visible as such.
//
// Marks (a sender's operating-point switch, ui/switches.js) are vertical lines with a label,
// drawn over the plot at their time while that time is inside the window.
//
// No DOM or uPlot import here beyond what is handed in, so that node can test the window and
// the "rebuild only when the series change" rule with a stand-in for uPlot.

/**
 * Columns of samples over the last `windowS` seconds: `times` (seconds) and, per peer id,
 * one array per metric key, all of the same length as `times`.
 */
export class RollingWindow {
  /** @param {number} windowS  @param {string[]} keys  metric keys kept per peer */
  constructor(windowS, keys) {
    this.windowS = windowS;
    this.keys = keys;
    this.times = [];
    this.peers = new Map(); // id -> {key: values[]}
  }

  has(id) {
    return this.peers.has(id);
  }

  /** Start columns for a peer; its past is null. */
  addPeer(id) {
    if (this.peers.has(id)) return;
    const cols = {};
    for (const k of this.keys) cols[k] = this.times.map(() => null);
    this.peers.set(id, cols);
  }

  removePeer(id) {
    this.peers.delete(id);
  }

  /** Append one sample at `t`: `samples` maps peer id -> {key: number|null}; others get null. */
  push(t, samples) {
    this.times.push(t);
    for (const [id, cols] of this.peers) {
      const s = samples.get(id);
      for (const k of this.keys) {
        const v = s?.[k];
        cols[k].push(typeof v === "number" && Number.isFinite(v) ? v : null);
      }
    }
    let n = 0;
    const oldest = t - this.windowS;
    while (n < this.times.length && this.times[n] < oldest) n += 1;
    if (n > 0) {
      this.times.splice(0, n);
      for (const cols of this.peers.values()) for (const k of this.keys) cols[k].splice(0, n);
    }
  }

  column(id, key) {
    return this.peers.get(id)?.[key] ?? null;
  }

  /** True when the peer has at least one value (any metric) left in the window. */
  hasValues(id) {
    const cols = this.peers.get(id);
    return !!cols && this.keys.some((k) => cols[k].some((v) => v !== null));
  }
}

/** The last non-null value of `values` among its last `within` entries, else null. */
export function latest(values, within = 3) {
  for (let i = values.length - 1; i >= 0 && i >= values.length - within; i -= 1) {
    if (values[i] !== null && values[i] !== undefined) return values[i];
  }
  return null;
}

/** Tick spacing for an x axis of `windowS` seconds: about five ticks, at round seconds. */
export function tickStep(windowS) {
  return [5, 10, 15, 30, 60, 120, 300, 600].find((s) => s >= windowS / 5) ?? 600;
}

/** Ticks at whole steps back from `end`: [end - k*step, ..., end], oldest first. */
export function relativeTicks(start, end, step) {
  const out = [];
  for (let t = end; t >= start - 1e-9; t -= step) out.unshift(t);
  return out;
}

/** "now", "-15 s", "-2 min" */
export function relativeLabel(seconds) {
  const s = Math.round(seconds);
  if (s === 0) return "now";
  return Math.abs(s) >= 120 && s % 60 === 0 ? `${s / 60} min` : `${s} s`;
}

/** A round upper bound for a y axis that starts at 0: 1, 2 or 5 times a power of ten. */
export function niceTop(max, floor) {
  const top = Math.max(Number.isFinite(max) ? max : 0, floor) * 1.1;
  const p = 10 ** Math.floor(Math.log10(top));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= top) return m * p;
  return 10 * p;
}

/** The marks whose time `t` lies in [start, end], in the order given. */
export function marksInWindow(marks, start, end) {
  return marks.filter((m) => typeof m.t === "number" && m.t >= start && m.t <= end);
}

/**
 * Draw `marks` ({t, label, color}) on a 2D canvas context: a dashed vertical line across the
 * plot box at each mark's time and its label at the top, labels of neighbouring marks on
 * staggered rows so that they overlap less. `toX` maps a time to a canvas x; `box` is the
 * plot area in canvas pixels ({left, top, width, height}); `px` the device pixel ratio.
 * Marks outside the box are skipped. Returns how many were drawn.
 */
export function drawMarks(ctx, marks, toX, box, px = 1) {
  let drawn = 0;
  ctx.save();
  ctx.font = `${Math.round(10 * px)}px system-ui, sans-serif`;
  ctx.textAlign = "left"; // uPlot leaves its axes' alignment on the context
  ctx.textBaseline = "top";
  for (const m of marks) {
    const x = Math.round(toX(m.t));
    if (!Number.isFinite(x) || x < box.left || x > box.left + box.width) continue;
    ctx.strokeStyle = m.color;
    ctx.lineWidth = Math.max(1, Math.round(px));
    ctx.setLineDash([4 * px, 3 * px]);
    ctx.beginPath();
    ctx.moveTo(x + 0.5, box.top);
    ctx.lineTo(x + 0.5, box.top + box.height);
    ctx.stroke();
    const y = box.top + (2 + 12 * (drawn % 3)) * px;
    const w = ctx.measureText(m.label).width;
    // right of the line, or left of it near the right edge
    const tx = x + 3 * px + w <= box.left + box.width ? x + 3 * px : x - 3 * px - w;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(tx - px, y - px, w + 2 * px, 12 * px);
    ctx.fillStyle = m.color;
    ctx.fillText(m.label, tx, y);
    drawn += 1;
  }
  ctx.restore();
  return drawn;
}

/**
 * One live chart: a uPlot with one series per peer and a readout line (coloured peer
 * names with their latest value, or the value under the cursor).
 *
 * `update()` calls `setData` on the existing plot; the plot is only destroyed and built
 * again when the list of series (peer ids, labels, colours) changes. `builds` counts those
 * constructions so tests can hold the chart to that.
 */
export class LiveChart {
  /**
   * @param {HTMLElement} container  where the plot goes
   * @param {object} o
   * @param {Function} o.uPlot  the uPlot constructor
   * @param {(v: number) => string} o.format  value formatter for the axis and the readout
   * @param {(v: number) => string} [o.axisFormat]  shorter formatter for the y axis
   * @param {number} o.windowS  seconds shown on the x axis
   * @param {number} [o.floor]  smallest top of the y axis
   * @param {HTMLElement|null} [o.readout]  element for the readout line
   * @param {HTMLElement|null} [o.timeLabel]  element for the readout's time ("now", "-12 s")
   * @param {string} [o.syncKey]  cursor sync group
   * @param {number} [o.height]
   *
   * The container's `data-builds` counts plot constructions, `data-marks` the marks inside
   * the window and `data-drawn-marks` those the last redraw drew (for tests: the canvas
   * itself cannot be read back).
   */
  constructor(container, { uPlot, format, axisFormat = format, windowS, floor = 1, readout = null,
    timeLabel = null, syncKey = "splitrtc", height = 190 }) {
    this.container = container;
    this.uPlot = uPlot;
    this.format = format;
    this.axisFormat = axisFormat;
    this.windowS = windowS;
    this.floor = floor;
    this.readout = readout;
    this.timeLabel = timeLabel;
    this.building = false;
    this.syncKey = syncKey;
    this.height = height;
    this.plot = null;
    this.signature = null;
    this.series = [];
    this.readoutCells = [];
    this.builds = 0;
    this.lastT = null;
    this.marks = [];
  }

  /**
   * New data. `series`: [{id, label, color, values}], each `values` as long as `times`.
   * The arrays may be the very ones the window mutates: uPlot only reads them. `marks`:
   * [{t, label, color}] drawn over the plot (those outside the window are left out); they
   * never cause a rebuild.
   */
  update(times, series, marks = []) {
    this.lastT = times.length ? times[times.length - 1] : null;
    this.marks = this.lastT === null ? [] : marksInWindow(marks, this.lastT - this.windowS, this.lastT);
    if (this.container.dataset) this.container.dataset.marks = String(this.marks.length);
    const signature = JSON.stringify(series.map((s) => [s.id, s.label, s.color]));
    const data = [times, ...series.map((s) => s.values)];
    this.series = series;
    if (this.plot === null || signature !== this.signature) {
      this.plot?.destroy();
      this.building = true;
      try {
        this.plot = new this.uPlot(this.options(series), data, this.container);
      } finally {
        this.building = false;
      }
      this.signature = signature;
      this.builds += 1;
      if (this.container.dataset) this.container.dataset.builds = String(this.builds);
      this.buildReadout();
    } else {
      this.plot.setData(data);
    }
    const cursor = this.plot.cursor;
    this.showReadout(cursor && cursor.left >= 0 ? cursor.idx : null); // keep a hover reading
  }

  options(series) {
    const axis = { stroke: "#5b6472", grid: { stroke: "#eef0f4", width: 1 },
      ticks: { stroke: "#d8dce3", width: 1, size: 4 }, font: "11px system-ui, sans-serif" };
    return {
      ...this.size(),
      legend: { show: false },
      // synced charts share the time, not the y position: no horizontal crosshair
      cursor: { sync: { key: this.syncKey }, y: false, drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: { time: false, range: (u, min, max) => this.xRange(min, max) },
        y: { range: (u, min, max) => [0, niceTop(max, this.floor)] },
      },
      series: [{}, ...series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, spanGaps: false, points: { show: false },
      }))],
      axes: [
        { ...axis, size: 28,
          splits: (u, i, min, max) => relativeTicks(min, max, tickStep(this.windowS)),
          values: (u, splits) => splits.map((t) => relativeLabel(t - this.end())) },
        { ...axis, size: 64, values: (u, splits) => splits.map((v) => this.axisFormat(v)) },
      ],
      hooks: {
        setCursor: [(u) => this.showReadout(u.cursor.idx)],
        draw: [(u) => this.drawMarks(u)],
      },
    };
  }

  /** uPlot's draw hook: the marks over the plot box (canvas pixels); `data-drawn-marks` says how many. */
  drawMarks(u) {
    const drawn = this.marks.length && u.ctx
      ? drawMarks(u.ctx, this.marks, (t) => u.valToPos(t, "x", true), u.bbox, this.uPlot.pxRatio ?? 1) : 0;
    if (this.container.dataset) this.container.dataset.drawnMarks = String(drawn);
  }

  /** The x axis always spans the full window, ending at the newest sample. */
  xRange(min, max) {
    const end = this.end(max);
    return [end - this.windowS, end];
  }

  end(fallback) {
    return this.lastT ?? fallback ?? Date.now() / 1000;
  }

  size() {
    return { width: Math.max(this.container.clientWidth || 0, 240), height: this.height };
  }

  resize() {
    this.plot?.setSize(this.size());
  }

  buildReadout() {
    if (!this.readout) return;
    const doc = this.readout.ownerDocument;
    this.readoutCells = this.series.map((s) => {
      const item = doc.createElement("span");
      item.className = "ro-item";
      const swatch = doc.createElement("i");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      const name = doc.createElement("span");
      name.className = "ro-name";
      name.textContent = s.label;
      const value = doc.createElement("b");
      value.className = "ro-value";
      item.append(swatch, name, value);
      return { item, value };
    });
    this.readout.replaceChildren(...this.readoutCells.map((c) => c.item));
  }

  /** Values at cursor index `idx`, or the latest ones when the cursor is off the chart. */
  showReadout(idx) {
    if (!this.readout || this.building) return; // uPlot calls this while it is being built
    const times = this.plot?.data?.[0] ?? [];
    const hovering = idx !== null && idx !== undefined && idx >= 0 && idx < times.length;
    if (this.timeLabel) {
      this.timeLabel.textContent = hovering && this.lastT !== null ? relativeLabel(times[idx] - this.lastT) : "now";
    }
    this.series.forEach((s, i) => {
      const v = hovering ? s.values[idx] : latest(s.values);
      const text = v === null || v === undefined ? "–" : this.format(v);
      const cell = this.readoutCells[i];
      if (!cell) return;
      if (cell.value.textContent !== text) cell.value.textContent = text;
      cell.item.hidden = !s.values.some((x) => x !== null); // e.g. latency of a receiver
    });
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
    this.signature = null;
  }
}
