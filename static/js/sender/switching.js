/**
 * `?split=adaptive` at run time: the held heads, the tick that feeds the controller,
 * switches. The browser twin of `sender/switching.py`.
 *
 * `sender/adaptive.js` decides (pure logic); this module gives it what the stream measured
 * each `TICK_S` (bytes sent and settled from the ledger, the data channel's
 * `bufferedAmount`: the send queue whose drain is the link's rate, the newest ping RTT,
 * head, encode and receiver times, and the network time of the frames answered: their
 * latency less our time to the channel and the receiver's, read from the ledger's records)
 * and applies what it decides: the pipeline's `choice` is replaced in one assignment, read
 * once per frame before its head runs, so every frame is made and labelled by one point and
 * a switch loses nothing (the receiver holds every tail). A probe train is the rung for its
 * frames (counted here as they go out), then the controller's point again; each of its frames
 * is judged just before the next one is made (`Controller.trainCheck`): on a link below the
 * rung the first late reply ends the train there, a tick before the controller's verdict.
 * Every switch is logged with its estimates, counted, and kept (the last `KEEP_SWITCHES`)
 * for the summary; the page's app stats carry the point in use.
 * @module switching
 */
import { isPortable } from '../runtime/operating.js';
import { Controller, Estimates, Observation, Point, TICK_S, TRAIN_GUARD_MS, pareto } from './adaptive.js';
import { profile } from './profile.js';

export const KEEP_SWITCHES = 1000;
export const QUEUE_TARGET_S = 0.15;   // backpressure limit: this much of the estimated capacity ...
export const MIN_FRAMES_BUFFERED = 2; // ... but never under two frames of the point in use
const SENT_SLOTS = 256;               // frames in flight whose time to the channel is kept (8 s at 30 fps)

/** One cost sample into `acc` (key -> [sum, n]), emptied at each tick. */
function addSample(acc, key, ms) {
  const a = acc.get(key);
  if (a === undefined) acc.set(key, [ms, 1]);
  else { a[0] += ms; a[1] += 1; }
}

/** Runs `controller` on one stream; `choice` is the point the next frame uses. */
export class Adaptive {
  /**
   * @param {Point[]} points
   * @param {import('./profile.js').Profile} prof
   * @param {number} fps
   * @param {{refreshDevice?: boolean, manifest?: object|null}} [opts]
   */
  constructor(points, prof, fps, { refreshDevice = true, manifest = null } = {}) {
    this.profile = prof;
    const splits = manifest?.splits ?? [];
    const est = new Estimates(prof.deviceMs, prof.encodeMs, null, { refreshDevice,
      tailMacs: Object.fromEntries(splits.map((s) => [s.id, s.tail?.macs])),
      headMacs: Object.fromEntries(splits.map((s) => [s.id, s.head?.macs])) });
    this.controller = new Controller(points, fps, est);
    /** point key -> the pipeline's Choice (one object per point, made once) */
    this.choices = new Map(this.controller.points.map((p) => [p.key,
      Object.freeze({ split: p.split, codec: p.codec, head: p.head })]));
    this.history = [];
    this.started = Date.now() / 1000;
    this._dev = new Map();
    this._enc = new Map();
    this._sent = 0;
    this._marks = [0, 0]; // settled bytes, backpressure drops at the last tick
    this._rttSeen = 0;
    this._timer = null;
    this._pipeline = null;
    this._train = null;   // a probe train: {point, left} frames of it still to go
    this._hooked = null;  // the ledger whose records feed the network times
    this._slotSeq = new Float64Array(SENT_SLOTS).fill(-1);
    this._toChannelMs = new Float64Array(SENT_SLOTS); // capture to the channel, per seq slot
    this._netLo = Infinity; // least / greatest network time of the replies since the last tick
    this._netHi = -Infinity;
  }

  /** @returns {Point} */
  get point() { return this.controller.current; }

  get choice() { return this.choices.get(this.controller.current.key); }

  /**
   * A frame went out: its head and encode times refresh the profile; the last frame of a
   * probe train hands the pipeline back to the point in use, the others are judged just
   * before the next frame is made (`_judgeTrain`).
   */
  onEncoded(frame, nowMs = performance.now()) {
    for (const m of frame.messages) this._sent += m.byteLength;
    addSample(this._dev, `${frame.split}/${frame.head}`, frame.headMs);
    addSample(this._enc, `${frame.split}/${frame.codec}`, frame.encodeMs);
    const slot = frame.seq % SENT_SLOTS;
    this._slotSeq[slot] = frame.seq;
    this._toChannelMs[slot] = nowMs - frame.captureMs;
    const train = this._train;
    if (train !== null && train.point.split === frame.split && train.point.codec === frame.codec
      && train.point.head === frame.head) {
      train.left -= 1;
      if (train.left <= 0) {
        this._train = null;
        if (this._pipeline !== null) this._pipeline.choice = this.choice;
      } else if (this._hooked !== null) {
        const due = frame.captureMs + 1000 / this.controller.fps - TRAIN_GUARD_MS;
        const { seq, split } = frame;
        setTimeout(() => this._judgeTrain(seq, split, nowMs), Math.max(0, due - performance.now()));
      }
    }
  }

  /**
   * A train frame, just before the next frame reads the choice: its reply (the greatest
   * network time since the last tick), or while it is unanswered the least its network time
   * can be, to the controller; a late one ends the train here, a tick earlier than the
   * controller's verdict (`Controller.trainCheck`).
   */
  _judgeTrain(seq, split, sentMs, nowMs = performance.now()) {
    const led = this._hooked;
    if (this._train === null || led === null) return; // the train ended since (a tick's verdict)
    let net;
    if (led.inFlight.has(seq)) net = nowMs - sentMs - this.controller.est.serverTime(split);
    else if (this._netHi >= this._netLo) net = this._netHi;
    else return; // answered and already read by a tick: the controller has judged it
    if (this.controller.trainCheck(net)) {
      this._train = null;
      if (this._pipeline !== null) this._pipeline.choice = this.choice;
    }
  }

  /** A settled frame's record (the ledger's): a reply's network time, for the next tick. */
  onRecord(r) {
    if (r.latency_ms === undefined || !r.receiver) return;
    const slot = r.seq % SENT_SLOTS;
    if (this._slotSeq[slot] !== r.seq) return; // not one of ours, or too long ago
    const net = r.latency_ms - r.receiver.total_ms - this._toChannelMs[slot];
    if (net < this._netLo) this._netLo = net;
    if (net > this._netHi) this._netHi = net;
  }

  /** Read the ledger's records (and pass them on to whoever read them before). */
  _hook(led) {
    if (this._hooked === led) return;
    const before = led.onRecord;
    led.onRecord = (r) => { this.onRecord(r); if (before) before(r); };
    this._hooked = led;
  }

  /**
   * One tick: what the stream measured since the last one, to the controller.
   * @param {import('./stream.js').SenderStream} stream
   * @param {import('./pipeline.js').Pipeline} pipeline
   * @param {number} now seconds, monotonic
   */
  observe(stream, pipeline, now) {
    const led = stream.ledger;
    this._hook(led);
    this._pipeline = pipeline;
    const settled = led.settledBytes;
    const bp = led.droppedSender.get('backpressure');
    let rtt = null;
    if (stream.rtt.seen > this._rttSeen) {
      rtt = stream.rtt.last;
      this._rttSeen = stream.rtt.seen;
    }
    const mean = (m) => Object.fromEntries([...m].filter(([, v]) => v[1]).map(([k, v]) => [k, v[0] / v[1]]));
    const server = mean(led.serverMs);
    led.serverMs.clear();
    const dc = stream.channel;
    const answered = this._netHi >= this._netLo;
    const netMs = answered ? this._netHi : null;
    const netMinMs = answered ? this._netLo : null;
    this._netLo = Infinity;
    this._netHi = -Infinity;
    const o = new Observation({ t: now, sentBytes: this._sent, deliveredBytes: settled - this._marks[0],
      queuedBytes: led.inFlightBytes, rttMs: rtt, deviceMs: mean(this._dev), encodeMs: mean(this._enc),
      serverMs: server, backpressure: bp - this._marks[1], bufferedBytes: dc !== null ? dc.bufferedAmount : 0,
      netMs, netMinMs });
    this._sent = 0;
    this._marks = [settled, bp];
    this._dev.clear();
    this._enc.clear();
    const sw = this.controller.observe(o);
    const cur = this.controller.current;
    const est = this.controller.est;
    stream.opts.maxBuffered = Math.trunc(Math.max(MIN_FRAMES_BUFFERED * cur.payloadBytes,
      (est.capacityBps / 8) * QUEUE_TARGET_S));
    if (sw !== null) {
      // a train: the rung for its frames (`onEncoded` counts them), then `current` again
      pipeline.choice = this.choices.get(sw.new.key);
      this._train = sw.frames ? { point: sw.new, left: sw.frames } : null;
      const record = { ...sw.asDict(), wall: Math.round(Date.now()) / 1000, after_frame: led.sent };
      this.history.push(record);
      if (this.history.length > KEEP_SWITCHES) this.history.shift();
      // trains come every fraction of a second while a link stays below the next rung: not warnings
      const say = sw.why === 'probe' || sw.why === 'probe_failed' ? console.info : console.warn;
      say(`switch ${sw.old.key} -> ${sw.new.key} (${sw.why}${sw.frames ? `, ${sw.frames} frames` : ''}): ` +
        `capacity ${(est.capacityBps / 1e3).toFixed(0)} ` +
        `kbit/s${est.capacityKnown ? '' : ' (not yet a ceiling)'}, delivered ${(est.deliveredBps / 1e3).toFixed(0)} ` +
        `kbit/s, queue ${est.queueMs.toFixed(0)} ms, path queueing ` +
        `${est.netExcessMs === null ? '-' : est.netExcessMs.toFixed(1)} ms, predicted ${JSON.stringify(sw.predictedMs)}, ` +
        `receiver ${stream.receiver?.name || stream.receiver?.id || '-'}`);
    }
    return sw;
  }

  /**
   * Tick every `TICK_S` until {@link stop} (the run ends); the pipeline's choice and cost
   * samples come from here from now on.
   */
  start(stream, pipeline, clock = () => performance.now() / 1000) {
    this.stop();
    pipeline.choice = this.choice;
    pipeline.onEncoded = (frame) => this.onEncoded(frame);
    this._pipeline = pipeline;
    if (stream.ledger) this._hook(stream.ledger);
    this._timer = setInterval(() => {
      if (stream.ledger) this.observe(stream, pipeline, clock());
    }, TICK_S * 1000);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
  }

  /** The page's app stats for the point in use (Python's `Adaptive.app_stats`). */
  appStats() {
    const p = this.controller.current;
    return { split: p.split, codec: p.codec, head: p.head, operating_point: p.key,
      switches: this.controller.switches, adaptive: this.controller.est.asDict() };
  }

  summary() {
    return { switches: this.controller.switches, switch_log: [...this.history],
      final_point: this.controller.current.key, candidates: this.controller.points.map((p) => p.key),
      profile: this.profile.asDict(), estimates: this.controller.est.asDict() };
  }
}

/**
 * The candidates `maxDrop` allows (`models/operating_points.json`), every head they use
 * loaded and profiled here, the points no candidate can beat dropped (`pareto`).
 * @param {object} manifest  models/manifest.json
 * @param {import('../runtime/operating.js').OperatingPoints} ops
 * @param {number} maxDrop   accuracy points the page accepts to lose
 * @param {number} fps
 * @param {{heads: {head: (split: string, head: string) => Promise<any>}, int8Head?: boolean|null,
 *          portable?: boolean, maxSsim?: number|null, onProgress?: ((text: string) => void)|null}} opts
 * @returns {Promise<Adaptive>}
 */
export async function build(manifest, ops, maxDrop, fps, { heads, int8Head = null, portable = true, maxSsim = null,
  onProgress = null }) {
  const floor = ops.fullTop1 - maxDrop / 100.0;
  const splits = new Set(manifest.splits.map((s) => s.id));
  const pts = ops.points.filter((o) => splits.has(o.split) && o.top1 >= floor - 1e-12
    && (int8Head === null || (o.head === 'int8') === int8Head)
    && (!portable || isPortable(o.codec)) && o.private(maxSsim))
    .map((o) => new Point(o.split, o.codec, o.head, o.payloadBytes, o.top1));
  if (!pts.length) {
    const leak = maxSsim !== null ? ` with attack SSIM <= ${maxSsim}` : '';
    throw new Error(`no operating point within ${maxDrop} points of the full model's ` +
      `${(ops.fullTop1 * 100).toFixed(2)}%${leak}`);
  }
  const prof = await profile(manifest, pts, heads, { onProgress });
  const kept = pareto(pts, prof.deviceMs, prof.encodeMs);
  console.info(`adaptive: ${kept.length} of ${pts.length} operating points kept ` +
    '(the rest are beaten on bytes, device time and accuracy)');
  return new Adaptive(kept, prof, fps, { manifest });
}
