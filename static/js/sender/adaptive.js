/**
 * The adaptive operating point (`?split=adaptive`): estimator and controller, pure logic.
 * The browser twin of `sender/adaptive.py`, line by line: same constants, same boundaries,
 * same order of operations, so both decide alike on `tests/vectors/adaptive.json`
 * (`tests/js/adaptive.test.mjs` replays it). `docs/adaptive.md` is the specification.
 *
 * No I/O and no clock of its own: `sender/switching.js` feeds it one {@link Observation}
 * per tick (`TICK_S`) and asks for a {@link Switch}.
 *
 * Why this model: capture-to-reply latency of operating point p (split x codec x head) is
 *
 *     device_ms(split, head) + encode_ms(split, codec)       the device (profiled, refreshed)
 *   + payload_bytes(p) * 8 / capacity_bps                   putting the frame on the link
 *   + server_ms(split)                                      the receiver (reply `timing`)
 *
 * (plus the one-way delay and queueing, common to every point). A point is feasible when the
 * link carries its stream with headroom (`payload * 8 * fps * HEADROOM <= capacity`) and the
 * device keeps up with the frame rate. The controller picks the feasible point with the least
 * predicted latency, leaves a point at once when the link is congested (the queue says so),
 * switches to a better one only after `DWELL_S` and for a clear gain (hysteresis), and probes
 * a rung up when the capacity it knows is only a lower bound (nothing queued: the link carried
 * all we sent, and perhaps more): a train of a few frames of the rung, kept only when their
 * replies show no queueing on the path, so a probe that fails costs those few frames.
 * @module adaptive
 */

export const TICK_S = 0.1;             // one observation and one decision every tick
export const RATE_TAU_S = 0.5;         // delivery/send rate EWMA time constant
export const RTT_TAU_S = 2.0;          // round-trip EWMA time constant
export const COST_TAU_FRAMES = 30.0;   // device/server time EWMA, in samples (about 1 s at 30 fps)
export const HEADROOM = 1.3;           // a point's stream must fit capacity / HEADROOM
export const DEVICE_SHARE = 0.8;       // head + encode must fit this share of the frame period
export const CONGESTED_MS = 120.0;     // send-queue delay (bufferedAmount / link rate) that means congestion ...
export const CONGESTED_TICKS = 3;      // ... held this many ticks in a row (a receiver's stall of a tick or two is not the link)
export const PATH_TICKS = 2;           // every reply over its network floor by CONGESTED_MS / 2 this many ticks: the path queues
export const DWELL_S = 2.0;            // least time on a point before an improvement switch
export const GAIN = 0.15;              // an improvement must predict this much less latency ...
export const GAIN_MS = 0.5;            // ... and at least this many ms
export const PROBE_WAIT_S = 0.2;       // under-used time before a probe train (a rise is taken within about 1 s)
export const PROBE_FRAMES = 6;         // a probe is a train of this many frames of the rung, then back
export const PROBE_JUDGE_S = 0.05;     // after the train's frames went out, their replies must be in by then (the next tick)
export const PROBE_EXCESS_MS = 5.0;    // a train fails if a reply's network time exceeds its floor by more
export const PROBE_FACTOR = 2.0;       // a rung is chosen if faster at 2, 4, 8 or 16 times the capacity known
export const PROBE_QUEUE_FRAMES = 2.0; // a train fails if the send queue grows by more than this many rung frames
export const PROBE_BAN_S = 1.0;        // a rung that congested the link is not probed for this long ...
export const PROBE_BAN_RECENT_S = 5.0; // ... doubled when it congested within this of being kept by a probe ...
export const PROBE_BAN_MAX_S = 4.0;    // ... up to this
export const PROBE_JUDGE_MAX_S = 0.3;  // a train frame still unanswered this long after the train's judging: failed
export const TRAIN_GUARD_MS = 4.0;     // a train frame is judged this long before the next frame is due (its head reads the choice)
export const NET_FLOOR_TAU_S = 5.0;    // the network-time floor rises this slowly (falls at once)
export const RTT_NEAR = 2.0;           // under-used: the newest RTT at most this times its floor ...
export const RTT_SLACK_MS = 25.0;      // ... plus this (a shared CPU jitters by that much)
export const WARMUP_S = 1.0;           // no congestion verdict before the rates have this much history
export const PRIOR_BPS = 10e6;         // capacity assumed before anything is measured
export const SERVER_PRIOR_MS = 1.0;    // a split's server time before its first reply, when no MACs are known

/** Python's round(x, n) closely enough for reports (not for decisions). */
const round = (x, n) => { const f = 10 ** n; return Math.round(x * f) / f; };

/** A dict-like (plain object or Map) as [key, value] pairs. */
const items = (m) => (m instanceof Map ? [...m.entries()] : Object.entries(m ?? {}));

/** Lexicographic comparison of two tuples of numbers/strings (Python's tuple order). */
function cmpTuple(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

/** Python's min(xs, key=...): the first element with the least key tuple. */
function minBy(xs, key) {
  let best = null;
  let bestKey = null;
  for (const x of xs) {
    const k = key(x);
    if (best === null || cmpTuple(k, bestKey) < 0) { best = x; bestKey = k; }
  }
  return best;
}

/** One operating point (from `models/operating_points.json`). */
export class Point {
  /**
   * @param {string} split
   * @param {string} codec
   * @param {string} head            "float32" or "int8"
   * @param {number} payloadBytes    mean bytes a frame on the channel
   * @param {number} [top1]
   */
  constructor(split, codec, head, payloadBytes, top1 = 0.0) {
    this.split = split;
    this.codec = codec;
    this.head = head;
    this.payloadBytes = payloadBytes;
    this.top1 = top1;
    Object.freeze(this);
  }

  get key() { return `${this.split}/${this.codec}/${this.head}`; }

  bps(fps) { return this.payloadBytes * 8.0 * fps; }

  /** Python's dataclass ==: every field equal. */
  equals(other) {
    return other !== null && other !== undefined && this.split === other.split && this.codec === other.codec
      && this.head === other.head && this.payloadBytes === other.payloadBytes && this.top1 === other.top1;
  }

  /** From the snake_case fields of the vectors and operating_points.json. */
  static fromDict(d) { return new Point(d.split, d.codec, d.head, Number(d.payload_bytes), Number(d.top1 ?? 0)); }
}

/**
 * What the stream saw during one tick ending at `t` (seconds, monotonic).
 *
 * `sentBytes`/`deliveredBytes`: frame bytes handed to the channel / settled by the receiver
 * (reply, drop or error) in the tick; `queuedBytes`: frame bytes sent and not yet settled at
 * `t` (the channel's bufferedAmount is part of them); `rttMs`: the newest ping round trip, if
 * one came; `netMs`/`netMinMs`: the greatest / least network time of the frames answered in
 * the tick (capture-to-reply latency less the sender's own time to the channel and the
 * receiver's `total_ms`: queueing anywhere on the path, the tbf's included, shows there even
 * while our send queue is empty; null: no reply); `deviceMs`: head+encode samples per `split/head` and `encodeMs` per
 * `split/codec`; `serverMs`: receiver `total_ms` per split; `backpressure`: frames dropped
 * because the channel was full; `bufferedBytes`: the data channel's `bufferedAmount` at `t`,
 * the bytes still waiting for the link in the sender's own SCTP queue (null: not measured,
 * `queuedBytes` stands in). Bytes leaving that queue per second are what the link carries;
 * bytes waiting for a reply beyond it are the receiver's time, which `serverMs` measures,
 * not the link's.
 */
export class Observation {
  constructor({ t, sentBytes = 0, deliveredBytes = 0, queuedBytes = 0, rttMs = null, deviceMs = {}, encodeMs = {},
    serverMs = {}, backpressure = 0, bufferedBytes = null, netMs = null, netMinMs = null }) {
    this.t = t;
    this.sentBytes = sentBytes;
    this.deliveredBytes = deliveredBytes;
    this.queuedBytes = queuedBytes;
    this.rttMs = rttMs;
    this.deviceMs = deviceMs;
    this.encodeMs = encodeMs;
    this.serverMs = serverMs;
    this.backpressure = backpressure;
    this.bufferedBytes = bufferedBytes;
    this.netMs = netMs;
    this.netMinMs = netMinMs;
  }

  /** From the snake_case fields of `tests/vectors/adaptive.json` (Python's Observation(**o)). */
  static fromDict(o) {
    return new Observation({ t: o.t, sentBytes: o.sent_bytes ?? 0, deliveredBytes: o.delivered_bytes ?? 0,
      queuedBytes: o.queued_bytes ?? 0, rttMs: o.rtt_ms ?? null, deviceMs: o.device_ms ?? {},
      encodeMs: o.encode_ms ?? {}, serverMs: o.server_ms ?? {}, backpressure: o.backpressure ?? 0,
      bufferedBytes: o.buffered_bytes ?? null, netMs: o.net_ms ?? null, netMinMs: o.net_min_ms ?? null });
  }
}

function ewma(old, x, alpha) {
  return old === null || old === undefined ? x : old + alpha * (x - old);
}

/** The live estimates: link (delivery rate, capacity, RTT, queue) and costs per point. */
export class Estimates {
  /**
   * @param {object|Map} deviceMs   "split/head" -> ms
   * @param {object|Map} encodeMs   "split/codec" -> ms
   * @param {object|Map|null} [serverMs]  split -> ms
   * @param {{refreshDevice?: boolean, tailMacs?: object|Map|null, headMacs?: object|Map|null}} [opts]
   */
  constructor(deviceMs, encodeMs, serverMs = null, { refreshDevice = true, tailMacs = null, headMacs = null } = {}) {
    this.deviceMs = new Map(items(deviceMs));   // "split/head" -> ms
    this.encodeMs = new Map(items(encodeMs));   // "split/codec" -> ms
    this.serverMs = new Map(items(serverMs));
    this.refreshDevice = refreshDevice;
    this.tailMacs = new Map(items(tailMacs));  // split -> MACs of its tail (the manifest)
    this.headMacs = new Map(items(headMacs));  // split -> MACs of its head
    this.deliveredBps = 0.0;      // frame bytes settled by replies: a figure, not used to decide
    this.sentBps = 0.0;
    this.drainBps = 0.0;          // bytes leaving the send queue (bufferedAmount drain), every tick
    this.linkBps = null;          // the same over backlogged ticks only: what the link carries
    this.bufferedBytes = 0;
    this.overTicks = 0;           // consecutive ticks with the send queue beyond CONGESTED_MS
    this.growTicks = 0;           // consecutive ticks the send queue grew beyond CONGESTED_MS / 2
    this.pathTicks = 0;           // consecutive reply ticks whose every reply queued CONGESTED_MS / 2 on the path
    this.capacityBps = PRIOR_BPS;
    this.capacityKnown = false;   // measured under congestion (a ceiling), not a prior or floor
    this.rttMs = null;
    this.queuedBytes = 0;
    this.queueMs = 0.0;
    this.congested = false;
    this.underused = false;       // no send queue, RTT near its floor: capacity is only a floor
    this.rttFloorMs = null;
    this.rttLastMs = null;        // the newest sample: queue drained or not, it says so now
    this.netFloorMs = null;       // least network time of a reply (rises slowly)
    this.netExcessMs = null;      // this tick's greatest network time over that floor
    this.netQueueMs = null;       // this tick's least over it: the path holds a queue
    this._rttT = null;
    this.t = null;
    this.t0 = null;
  }

  /** @param {Observation} o */
  update(o) {
    const dt = this.t === null ? TICK_S : Math.max(1e-3, o.t - this.t);
    this.t = o.t;
    this.t0 = this.t0 === null ? o.t : this.t0;
    const a = 1.0 - Math.exp(-dt / RATE_TAU_S);
    this.deliveredBps = ewma(this.deliveredBps, (o.deliveredBytes * 8.0) / dt, a);
    this.sentBps = ewma(this.sentBps, (o.sentBytes * 8.0) / dt, a);
    if (o.rttMs !== null && o.rttMs !== undefined && o.rttMs >= 0) {
      // pings come every 0.5 s, not every tick: the weight is the time since the last one
      const since = this._rttT === null ? dt : Math.max(dt, o.t - this._rttT);
      this.rttMs = ewma(this.rttMs, o.rttMs, 1.0 - Math.exp(-since / RTT_TAU_S));
      this.rttLastMs = o.rttMs;
      this._rttT = o.t;
      this.rttFloorMs = this.rttFloorMs === null ? o.rttMs : Math.min(this.rttFloorMs, o.rttMs);
    }
    const b = 1.0 / COST_TAU_FRAMES;
    if (this.refreshDevice) {
      for (const [k, v] of items(o.deviceMs)) this.deviceMs.set(k, ewma(this.deviceMs.get(k), v, b));
      for (const [k, v] of items(o.encodeMs)) this.encodeMs.set(k, ewma(this.encodeMs.get(k), v, b));
    }
    for (const [k, v] of items(o.serverMs)) this.serverMs.set(k, ewma(this.serverMs.get(k), v, b));
    this.queuedBytes = o.queuedBytes;
    // The path: a reply's network time over its floor is queueing somewhere between us
    // and the receiver (our send queue or the link's), seen even when ours is empty.
    if (o.netMinMs !== null && o.netMinMs !== undefined) {
      const lo = o.netMinMs;
      const f = this.netFloorMs;
      this.netFloorMs = f === null || lo < f ? lo : f + (lo - f) * (1.0 - Math.exp(-dt / NET_FLOOR_TAU_S));
    }
    this.netExcessMs = o.netMs !== null && o.netMs !== undefined && this.netFloorMs !== null
      ? o.netMs - this.netFloorMs : null;
    this.netQueueMs = o.netMinMs !== null && o.netMinMs !== undefined && this.netFloorMs !== null
      ? o.netMinMs - this.netFloorMs : null;
    // The link: bytes that left our send queue this tick. Over a tick that began with a
    // backlog the link (or SCTP's window over it) was the limit, so that rate is what it
    // carries; otherwise it is only what we offered. Frames past the send queue wait for
    // the receiver, whose time the replies measure (`serverMs`): not the link's.
    const buffered = o.bufferedBytes === null || o.bufferedBytes === undefined ? o.queuedBytes : o.bufferedBytes;
    const drained = (Math.max(0, o.sentBytes + this.bufferedBytes - buffered) * 8.0) / dt;
    const grew = buffered > this.bufferedBytes;
    this.drainBps = ewma(this.drainBps, drained, a);
    if (this.bufferedBytes > 0 && buffered > 0) {
      this.linkBps = ewma(this.linkBps, drained, a);
    }
    this.bufferedBytes = buffered;
    const rate = buffered ? Math.max(this.linkBps || 0.0, this.drainBps, 1e3) : Math.max(this.drainBps, 1e3);
    this.queueMs = ((buffered * 8.0) / rate) * 1000.0;
    const warm = o.t - this.t0 >= WARMUP_S;
    this.overTicks = warm && this.queueMs > CONGESTED_MS ? this.overTicks + 1 : 0;
    // a queue that grows tick after tick is congestion before it is long (a step down)
    this.growTicks = warm && grew && this.queueMs > CONGESTED_MS / 2 ? this.growTicks + 1 : 0;
    // the path's own queue (a link buffer SCTP fills before ours): every reply of the tick late
    if (this.netQueueMs !== null) {
      this.pathTicks = warm && this.netQueueMs > CONGESTED_MS / 2 ? this.pathTicks + 1 : 0;
    }
    const queue = this.overTicks >= CONGESTED_TICKS || this.growTicks >= CONGESTED_TICKS || o.backpressure > 0;
    this.congested = warm && (queue || this.pathTicks >= PATH_TICKS);
    if (this.congested) {
      // The link is the bottleneck: what leaves the queue is what it carries; when only
      // the path queues, our queue drains at what we offer, and the replies come back at
      // what the link carries.
      const carried = this.linkBps !== null ? this.linkBps : this.drainBps;
      this.capacityBps = Math.max(queue ? carried : Math.min(carried, this.deliveredBps), 1e3);
      this.capacityKnown = true;
    } else if (this.drainBps > this.capacityBps) {
      this.capacityBps = this.drainBps; // it carried more than we thought: a floor
    }
    // under-use needs no rate history: the replies' network times say it from the first one on
    // (a probe's train is judged by them), so a start on a point below the link's (the device's
    // speed said the late split) is left within a fraction of a second
    this.underused = ((warm || this.netFloorMs !== null) && !this.congested && this.overTicks === 0
      && this.queueMs <= CONGESTED_MS / 2 && !this.rttRaised()
      && (this.netQueueMs === null || this.netQueueMs <= PROBE_EXCESS_MS));
  }

  /**
   * The newest ping RTT is well above its floor (a queue somewhere on the path). The newest
   * sample, not the EWMA: after a congested phase the average would hold the old queue for
   * seconds after the queue itself has gone.
   */
  rttRaised() {
    return (this.rttLastMs !== null && this.rttFloorMs !== null
      && this.rttLastMs > this.rttFloorMs * RTT_NEAR + RTT_SLACK_MS);
  }

  /** Predicted capture-to-reply latency of `p` (without the one-way delay). */
  predictMs(p) {
    return (this.deviceMs.get(`${p.split}/${p.head}`) ?? 0.0) + (this.encodeMs.get(`${p.split}/${p.codec}`) ?? 0.0)
      + ((p.payloadBytes * 8.0) / this.capacityBps) * 1000.0
      + this.serverTime(p.split);
  }

  /**
   * Measured, or until a split has replies: its tail's MACs at the speed the receiver
   * showed on other splits (at the device's float32 speed before any reply).
   */
  serverTime(split) {
    if (this.serverMs.has(split)) return this.serverMs.get(split);
    const macs = this.tailMacs.get(split);
    if (macs === null || macs === undefined) return SERVER_PRIOR_MS;
    const seen = [...this.serverMs].filter(([k]) => this.tailMacs.get(k)).map(([k, ms]) => [ms, this.tailMacs.get(k)]);
    if (seen.length) {
      return (macs * seen.reduce((s, [ms]) => s + ms, 0)) / seen.reduce((s, [, m]) => s + m, 0);
    }
    const dev = [...this.headMacs].filter(([k, m]) => m && this.deviceMs.has(`${k}/float32`))
      .map(([k, m]) => [this.deviceMs.get(`${k}/float32`), m]);
    return dev.length ? (macs * dev.reduce((s, [ms]) => s + ms, 0)) / dev.reduce((s, [, m]) => s + m, 0) : SERVER_PRIOR_MS;
  }

  deviceFits(p, fps) {
    return ((this.deviceMs.get(`${p.split}/${p.head}`) ?? 0.0)
      + (this.encodeMs.get(`${p.split}/${p.codec}`) ?? 0.0)) <= (DEVICE_SHARE * 1000.0) / fps;
  }

  linkFits(p, fps, capacityBps = null) {
    return p.bps(fps) * HEADROOM <= (capacityBps !== null ? capacityBps : this.capacityBps);
  }

  /** The estimates, with the names of Python's `Estimates.as_dict()`. */
  asDict() {
    return { delivered_kbps: round(this.deliveredBps / 1e3, 1), drain_kbps: round(this.drainBps / 1e3, 1),
      link_kbps: this.linkBps !== null ? round(this.linkBps / 1e3, 1) : null,
      capacity_kbps: round(this.capacityBps / 1e3, 1), buffered_bytes: this.bufferedBytes,
      capacity_known: this.capacityKnown, queue_ms: round(this.queueMs, 1),
      queued_bytes: this.queuedBytes, congested: this.congested, underused: this.underused,
      rtt_ms: this.rttMs !== null ? round(this.rttMs, 2) : null,
      net_floor_ms: this.netFloorMs !== null ? round(this.netFloorMs, 2) : null,
      net_excess_ms: this.netExcessMs !== null ? round(this.netExcessMs, 2) : null,
      net_queue_ms: this.netQueueMs !== null ? round(this.netQueueMs, 2) : null };
  }
}

/**
 * A decision: from `old` to `new` at `t`, `why` (`congested`, `better`, `probe`, `probe_ok`,
 * `probe_failed`), with the estimates and predictions that caused it.
 *
 * `frames` 0: `new` from now on. Otherwise a probe train: the next `frames` frames use `new`,
 * then the point in use again (`Controller.current`, which a train leaves as it is);
 * `probe_failed` is then a record (`new` is that point already), `probe_ok` the switch to
 * the rung.
 */
export class Switch {
  constructor(t, old, new_, why, estimates, predictedMs, frames = 0) {
    this.t = t;
    this.old = old;
    this.new = new_;
    this.why = why;
    this.estimates = estimates;
    this.predictedMs = predictedMs;
    this.frames = frames;
    Object.freeze(this);
  }

  asDict() {
    return { t: round(this.t, 3), from: this.old.key, to: this.new.key, why: this.why,
      frames: this.frames, estimates: this.estimates, predicted_ms: this.predictedMs };
  }
}

/**
 * A probe train: `rung` tried from `back` at `t`, with the queue and capacity before it;
 * `worstMs`: the greatest network time over its floor since; `answered`: a reply came.
 */
export class Probe {
  constructor(t, back, rung, bufferedBytes, capacityBps, hypothesisBps) {
    this.t = t;
    this.back = back;
    this.rung = rung;
    this.bufferedBytes = bufferedBytes;
    this.capacityBps = capacityBps;
    this.hypothesisBps = hypothesisBps; // the capacity at which the rung was predicted faster
    this.worstMs = 0.0;
    this.answered = false;
    this.cut = false;   // a train frame came back late (`trainCheck`): its other frames were not sent
  }
}

/**
 * Chooses among `points` at `fps`; `observe(o)` returns a {@link Switch} or null.
 *
 * `current` is the point the frames use. Down-switches (congestion) are immediate; `better`
 * switches wait `DWELL_S` and need a clear gain. While the link is under-used the capacity
 * known is only a lower bound, so after `PROBE_WAIT_S` of it the controller sends a train of
 * `PROBE_FRAMES` frames of the next larger stream predicted faster at 2..16 times that
 * capacity, then the current point again, and judges the train by its replies: kept
 * (`probe_ok`, the capacity it supposed taken as the floor until congestion measures a
 * ceiling) when their network time stayed within `PROBE_EXCESS_MS` of its floor, our send
 * queue did not grow and all of them were answered within `PROBE_JUDGE_S`; else nothing
 * changes (`probe_failed`). A failed train costs its few frames' queueing, so probes need no
 * backoff; a rung kept that congests the link soon after is not probed again for `banS`
 * (doubled each time, up to `PROBE_BAN_MAX_S`).
 */
export class Controller {
  /**
   * @param {Iterable<Point>} points
   * @param {number} fps
   * @param {Estimates} estimates
   * @param {Point|null} [start]
   */
  constructor(points, fps, estimates, start = null) {
    this.points = Object.freeze([...points].sort((p, q) => cmpTuple([p.payloadBytes, p.key], [q.payloadBytes, q.key])));
    if (!this.points.length) throw new Error('no operating points to adapt between');
    this.fps = fps;
    this.est = estimates;
    this.current = start ?? this._best(this.points);
    this.since = -Infinity;       // when the current point was chosen
    this.calmSince = null;        // under-used since
    /** @type {Probe|null} */
    this.probing = null;
    this.keptAt = -Infinity;      // when a probe's rung was last kept
    this.banBps = Infinity;       // rungs of this stream rate and more are not probed ...
    this.banUntil = -Infinity;    // ... until then (a rung kept congested the link)
    this.banS = PROBE_BAN_S;
    this.congestedBps = 0.0;      // the stream congestion moved us off: rungs below it cannot show a rise
    this.switches = 0;
  }

  _best(pts) {
    pts = [...pts];
    const ok0 = pts.filter((p) => this.est.deviceFits(p, this.fps));
    const ok = ok0.length ? ok0 : pts;
    const fits = ok.filter((p) => this.est.linkFits(p, this.fps));
    if (!fits.length) { // nothing fits the link: the lightest stream
      return minBy(ok, (p) => [p.bps(this.fps), this.est.predictMs(p)]);
    }
    return minBy(fits, (p) => [this.est.predictMs(p), p.payloadBytes]);
  }

  /**
   * @param {Observation} o
   * @returns {Switch|null}
   */
  observe(o) {
    this.est.update(o);
    const now = o.t;
    const est = this.est;
    const cur = this.current;
    if (this.probing !== null) return this._trial(now, o);
    if (est.congested) {
      this.calmSince = null;
      if (!est.linkFits(cur, this.fps)) {
        // congestion soon after a kept probe: that rung was wrong, and is banned longer each time
        this.banS = now - this.keptAt < PROBE_BAN_RECENT_S ? Math.min(PROBE_BAN_MAX_S, this.banS * 2) : PROBE_BAN_S;
        this.banBps = cur.bps(this.fps);
        this.banUntil = now + this.banS;
        this.congestedBps = cur.bps(this.fps);
        return this._switch(now, this._best(this.points), 'congested');
      }
      return null;
    }
    if (!est.underused) {
      this.calmSince = null;
    } else {
      this.calmSince = this.calmSince === null ? now : this.calmSince;
    }
    if (now - this.since >= DWELL_S) {
      // a larger stream than the one in use is taken on a measured ceiling, or by a train:
      // a capacity that is only a floor (a prior, a probe's supposition) is not a licence
      const pool = est.capacityKnown ? this.points : this.points.filter((p) => p.bps(this.fps) <= cur.bps(this.fps));
      const best = this._best(pool);
      if (!best.equals(cur) && est.predictMs(best) < est.predictMs(cur) * (1 - GAIN) - GAIN_MS) {
        return this._switch(now, best, 'better');
      }
    }
    if (this.calmSince !== null && now - Math.max(this.calmSince, this.since) >= PROBE_WAIT_S - 1e-9) {
      const found = this._rung(cur, now);
      if (found !== null) {
        const [rung, hypothesis] = found;
        this.probing = new Probe(now, cur, rung, est.bufferedBytes, est.capacityBps, hypothesis);
        return this._record(now, cur, rung, 'probe', PROBE_FRAMES);
      }
    }
    return null;
  }

  /**
   * A train frame judged before the next frame is made (`switching.js` asks once per train
   * frame, `TRAIN_GUARD_MS` before the next is due): `netMs` is the greatest network time of
   * the replies since the last tick, or, while the frame is unanswered, the least it can be
   * (the time it has been out less the receiver's). Over its floor by `PROBE_EXCESS_MS`: the
   * path queues, the train has failed, and true says to send no more of its frames (the
   * queue they would join is the latency the point in use pays next); the `probe_failed`
   * record comes with the next tick. A tick judges a train only after its reply is in, up to
   * a tick late: by then a train on a link below the rung has sent one or two more frames
   * into the queue.
   * @param {number} netMs
   * @returns {boolean}
   */
  trainCheck(netMs) {
    const pr = this.probing;
    const floor = this.est.netFloorMs;
    if (pr === null || floor === null || pr.cut) return false;
    const excess = netMs - floor;
    if (excess <= PROBE_EXCESS_MS) return false;
    pr.worstMs = Math.max(pr.worstMs, excess);
    pr.cut = true;
    return true;
  }

  /**
   * One tick of a probe train: fail at once on congestion, queueing on the path (a reply's
   * network time over its floor), send-queue growth or RTT rise; once the train's frames were
   * due back (`PROBE_JUDGE_S` after the last one left), keep the rung if none of that
   * happened and none of them is still unanswered.
   */
  _trial(now, o) {
    const pr = this.probing;
    const est = this.est;
    if (est.netExcessMs !== null) {
      pr.worstMs = Math.max(pr.worstMs, est.netExcessMs);
      pr.answered = true;
    }
    const grew = est.bufferedBytes - pr.bufferedBytes > PROBE_QUEUE_FRAMES * pr.rung.payloadBytes;
    let failed = est.congested || grew || est.rttRaised() || o.backpressure > 0 || pr.worstMs > PROBE_EXCESS_MS;
    if (!failed) {
      const due = pr.t + PROBE_FRAMES / this.fps + PROBE_JUDGE_S;
      if (now < due - 1e-9) return null;
      // due back: more in flight than a frame of the point in use is a train frame the
      // path still holds; its reply will tell (or its absence, by PROBE_JUDGE_MAX_S)
      const held = !pr.answered || est.queuedBytes > 1.5 * pr.back.payloadBytes;
      if (held && now < due + PROBE_JUDGE_MAX_S - 1e-9) return null;
      failed = held;
    }
    this.probing = null;
    if (failed) {
      this.calmSince = null;
      return this._record(now, pr.rung, pr.back, 'probe_failed');
    }
    this.keptAt = now;
    this.congestedBps = 0.0;
    // accepted until congestion says otherwise (which sets the ceiling again)
    est.capacityBps = Math.max(pr.capacityBps, pr.hypothesisBps, pr.rung.bps(this.fps) * HEADROOM);
    est.capacityKnown = false; // carried without a queue: a floor, not the ceiling
    return this._switch(now, pr.rung, 'probe_ok');
  }

  /**
   * The next rung up and the capacity it supposes: the least of 2, 4, 8 or 16 times the
   * capacity known at which a larger, device-feasible stream (not banned; at least the one
   * congestion last moved us off, if there is one) is predicted faster than `cur`, and the fastest such point at
   * that capacity.
   * @returns {[Point, number]|null}
   */
  _rung(cur, now) {
    const limit = cur.bps(this.fps);
    const banned = now < this.banUntil ? this.banBps : Infinity;
    let up = this.points.filter((p) => limit < p.bps(this.fps) && p.bps(this.fps) < banned
      && this.est.deviceFits(p, this.fps));
    // after congestion moved us off a stream, only a rung at least that large shows that
    // the link rose: a train of a smaller one passes a link's bucket whether it rose or not
    // (the ceiling congestion measured is too rough to tell: SCTP's losses make it read low)
    if (this.points.some((p) => p.bps(this.fps) >= this.congestedBps && this.est.deviceFits(p, this.fps))) {
      up = up.filter((p) => p.bps(this.fps) >= this.congestedBps); // none while those are banned
    }
    const cap = this.est.capacityBps;
    try {
      for (let k = 1; k < 5; k += 1) {
        // faster than `cur` at the same supposed capacity (`cur` gains from it too):
        // a rung that only differs by a few bytes is never worth a probe
        this.est.capacityBps = cap * PROBE_FACTOR ** k;
        const gain = this.est.predictMs(cur) * (1 - GAIN) - GAIN_MS;
        const faster = up.filter((p) => this.est.linkFits(p, this.fps) && this.est.predictMs(p) < gain);
        if (faster.length) {
          return [minBy(faster, (p) => [this.est.predictMs(p), p.bps(this.fps)]), this.est.capacityBps];
        }
      }
      return null;
    } finally {
      this.est.capacityBps = cap;
    }
  }

  /** A probe's decision: `current` stays as it is. */
  _record(now, old, new_, why, frames = 0) {
    const pred = {};
    for (const p of [old, new_]) pred[p.key] = round(this.est.predictMs(p), 3);
    this.switches += 1;
    return new Switch(now, old, new_, why, this.est.asDict(), pred, frames);
  }

  _switch(now, new_, why) {
    if (new_.equals(this.current)) return null;
    const sw = this._record(now, this.current, new_, why);
    this.current = new_;
    this.since = now;
    return sw;
  }
}

/**
 * Drop points another beats on every count (payload, device time, accuracy) for the same
 * split: they can never be the controller's best, and each held point costs a head.
 * @param {Iterable<Point>} points
 * @param {object|Map} deviceMs  "split/head" -> ms
 * @param {object|Map} encodeMs  "split/codec" -> ms
 * @returns {Point[]}
 */
export function pareto(points, deviceMs, encodeMs) {
  const pts = [...points];
  const device = new Map(items(deviceMs));
  const encode = new Map(items(encodeMs));
  const dev = (p) => (device.get(`${p.split}/${p.head}`) ?? 0.0) + (encode.get(`${p.split}/${p.codec}`) ?? 0.0);
  const out = [];
  for (const p of pts) {
    const beaten = pts.some((q) => q !== p && q.split === p.split && q.payloadBytes <= p.payloadBytes
      && dev(q) <= dev(p) && q.top1 >= p.top1
      && cmpTuple([q.payloadBytes, dev(q), -q.top1], [p.payloadBytes, dev(p), -p.top1]) !== 0);
    if (!beaten) out.push(p);
  }
  return out;
}
