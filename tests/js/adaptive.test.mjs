// static/js/sender/adaptive.js, the browser twin of sender/adaptive.py: every case of
// tests/vectors/adaptive.json (written by `python -m tests.unit.test_adaptive`) replayed
// through it must give the same decisions (tick, why, to) as the Python controller; and the
// synthetic links of tests/unit/test_adaptive.py behave the same here.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  Controller, Estimates, Observation, PROBE_EXCESS_MS, PROBE_FRAMES, PROBE_JUDGE_S, PROBE_WAIT_S, Point, TICK_S,
  TRAIN_GUARD_MS, WARMUP_S, pareto,
} from '../../static/js/sender/adaptive.js';

const VECTORS = JSON.parse(readFileSync(new URL('../vectors/adaptive.json', import.meta.url), 'utf8'));

/**
 * One case through a fresh controller: the decisions as the Python test records them, and
 * the train frames judged between ticks (`trainCheck` after observation `tick`).
 */
export function replay(c) {
  const pts = c.points.map(Point.fromDict);
  const start = pts.find((p) => p.key === c.start) ?? null; // default: the controller's best
  const ctl = new Controller(pts, c.fps, new Estimates(c.device_ms, c.encode_ms, c.server_ms), start);
  const got = [];
  const stops = [];
  c.observations.forEach((o, i) => {
    for (const x of c.train_checks.filter((y) => y.tick === i - 1)) stops.push({ ...x, stop: ctl.trainCheck(x.net_ms) });
    const sw = ctl.observe(Observation.fromDict(o));
    if (sw !== null) got.push({ tick: i, why: sw.why, to: sw.new.key, frames: sw.frames });
  });
  return { got, stops, ctl };
}

test('the adaptive vectors hold decisions of every kind', () => {
  const whys = new Set(VECTORS.cases.flatMap((c) => c.decisions.map((d) => d.why)));
  for (const why of ['congested', 'probe', 'probe_ok', 'probe_failed']) assert.ok(whys.has(why), `no ${why} decision in the vectors`);
  assert.ok(VECTORS.cases.some((c) => !c.decisions.length), 'no case without a switch (steady)');
});

for (const c of VECTORS.cases) {
  test(`adaptive vector ${c.name}: same decisions as sender/adaptive.py`, () => {
    const { got, stops } = replay(c);
    assert.deepEqual(got, c.decisions);
    assert.deepEqual(stops, c.train_checks);
  });
}

test('a twin that diverges fails the replay (a changed boundary changes the decisions)', () => {
  // the vectors pin the exact ticks: a link a third slower, replies without network times,
  // and (at the edge of PROBE_EXCESS_MS) network times 1 ms shorter all decide otherwise
  const c = VECTORS.cases.find((x) => x.name === 'step_down_up');
  const slower = { ...c, observations: c.observations.map((o) => ({ ...o, t: o.t * 1.5 })) };
  assert.notDeepEqual(replay(slower).got, c.decisions);
  const blind = { ...c, observations: c.observations.map(({ net_ms, net_min_ms, ...o }) => o) };
  assert.notDeepEqual(replay(blind).got, c.decisions);
  const e = VECTORS.cases.find((x) => x.name === 'edge');
  const shorter = { ...e, observations: e.observations.map((o) => (o.net_ms === undefined ? o
    : { ...o, net_ms: o.net_ms - 1 })), train_checks: e.train_checks.map((x) => ({ ...x, net_ms: x.net_ms - 1 })) };
  assert.notDeepEqual(replay(shorter).got, e.decisions);
  // a train frame judged between ticks: one just within PROBE_EXCESS_MS of the floor goes on
  const low = VECTORS.cases.find((x) => x.name === 'low_steady');
  const first = low.train_checks[0];
  const within = { ...low, train_checks: low.train_checks.map((x) => (x === first ? { ...x, net_ms: -1e9 } : x)) };
  assert.notDeepEqual(replay(within).stops, low.train_checks);
});

// --- the synthetic links of tests/unit/test_adaptive.py ----------------------------------

const POINTS = [new Point('stage1', 'clip4+zlib', 'float32', 2916.4), new Point('stage2', 'clip4+zlib', 'int8', 1609.7),
  new Point('features', 'clip4+zlib', 'int8', 500.9)];
const DEVICE = { 'stage1/float32': 3.0, 'stage2/int8': 10.0, 'features/int8': 18.0 };
const ENCODE = { 'stage1/clip4+zlib': 0.5, 'stage2/clip4+zlib': 0.3, 'features/clip4+zlib': 0.2 };
const SERVER = { stage1: 2.5, stage2: 0.6, features: 0.05 };

const BASE_MS = 2.0; // the path's network time with nothing queued

/**
 * tests/unit/test_adaptive.py's Link: a FIFO link fed by `ctl`'s frames at its fps, one
 * Observation per tick; a frame's network time is its wait plus its own time on the link;
 * a probe's train is applied as switching.js does (the rung for `frames` frames, then back).
 */
class Link {
  constructor(ctl) {
    this.ctl = ctl;
    this.t = 0.0;
    this.free = 0.0;      // when the link has sent all it was given
    this.train = null;    // [point, frames left]
    this.flight = [];     // [reply due, network ms, bytes]
    this.frames = [];     // [sent, point key, network ms]: every frame
    this.decisions = [];  // [t, why, to, frames]
    this.ticks = 0;       // observations so far
    this.checks = [];     // the train frames judged between ticks: {tick, net_ms, stop}
  }

  run(cap, seconds) {
    const seen = [];
    const perTick = Math.round(this.ctl.fps * TICK_S);
    for (let i = 0; i < Math.round(seconds / TICK_S); i += 1) {
      const start = this.t;
      this.t = Math.round((this.t + TICK_S) * 1e6) / 1e6;
      let sent = 0;
      for (let k = 0; k < perTick; k += 1) {
        const s = start + k / this.ctl.fps;
        const p = this.train !== null ? this.train[0] : this.ctl.current;
        if (this.train !== null) this.train = this.train[1] > 1 ? [this.train[0], this.train[1] - 1] : null;
        const n = Math.trunc(p.payloadBytes);
        this.free = Math.max(this.free, s) + (n * 8) / cap;
        const net = Math.round(((this.free - s) * 1000 + BASE_MS) * 1000) / 1000;
        this.flight.push([s + net / 1000, net, n]);
        this.frames.push([s, p.key, net]);
        sent += n;
        // a train frame with more to come: judged before the next
        if (this.train !== null) this._judge(start, s, s + 1 / this.ctl.fps - TRAIN_GUARD_MS / 1000, net);
      }
      const back = this.flight.filter((f) => f[0] <= this.t);
      this.flight = this.flight.filter((f) => f[0] > this.t);
      const o = { t: this.t, sentBytes: sent, deliveredBytes: back.reduce((a, f) => a + f[2], 0),
        queuedBytes: this.flight.reduce((a, f) => a + f[2], 0), serverMs: SERVER,
        bufferedBytes: Math.trunc((Math.max(0, this.free - this.t) * cap) / 8) };
      if (back.length) {
        o.netMs = Math.max(...back.map((f) => f[1]));
        o.netMinMs = Math.min(...back.map((f) => f[1]));
      }
      const sw = this.ctl.observe(new Observation(o));
      this.ticks += 1;
      if (sw !== null) {
        this.train = sw.frames ? [sw.new, sw.frames] : null;
        this.decisions.push([this.t, sw.why, sw.new.key, sw.frames]);
        seen.push(`${sw.why}:${sw.new.key}`);
      }
    }
    return seen;
  }

  _judge(tick, sent, now, net) {
    const judged = sent + net / 1000 > now ? Math.round((now - sent) * 1e6) / 1000 // unanswered: out this long at least
      : Math.max(...this.flight.filter((f) => tick < f[0] && f[0] <= now).map((f) => f[1]));
    const stop = this.ctl.trainCheck(judged);
    this.checks.push({ tick: this.ticks - 1, net_ms: judged, stop });
    if (stop) this.train = null;
  }
}

const controller = (start = null) => new Controller(POINTS, 30.0, new Estimates(DEVICE, ENCODE, SERVER), start);

test('moves down under a low cap and back up under a high one', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(20e6, 5);
  assert.equal(ctl.current.split, 'stage1'); // fastest on a fast link with this device
  let seen = net.run(0.5e6, 5);
  assert.ok(['stage2', 'features'].includes(ctl.current.split) && seen.some((s) => s.startsWith('congested')), seen);
  const low = ctl.current;
  seen = net.run(20e6, 20);
  assert.ok(ctl.current.split === 'stage1' && ctl.current.payloadBytes > low.payloadBytes);
  assert.ok(seen.some((s) => s.startsWith('probe_ok')), seen);
});

test('a rise is taken within a second', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(0.5e6, 10);
  const low = ctl.current;
  assert.equal(low.split, 'features');
  const step = net.t;
  net.run(5e6, 3);
  const kept = net.decisions.filter(([t, why]) => why === 'probe_ok' && t > step).map(([t]) => t);
  assert.ok(kept.length && ctl.current.payloadBytes > low.payloadBytes);
  const bound = 2 * (PROBE_WAIT_S + PROBE_FRAMES / 30.0 + PROBE_JUDGE_S + 2 * TICK_S);
  assert.ok(kept[0] - step <= bound, String(kept[0] - step));
});

test('a start below the link is left before the warmup', () => {
  const ctl = controller(POINTS.at(-1));
  const net = new Link(ctl);
  net.run(20e6, 2);
  const kept = net.decisions.filter(([, why]) => why === 'probe_ok').map(([t]) => t);
  assert.ok(kept.length && kept[0] < WARMUP_S && ctl.current.payloadBytes > POINTS.at(-1).payloadBytes,
    JSON.stringify(net.decisions));
});

test('no flapping on a steady link', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(20e6, 3);
  const n = ctl.switches;
  net.run(20e6, 30);
  assert.equal(ctl.switches, n);
});

test('a slow receiver is not a congested link', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(20e6, 3);
  let { t } = net;
  const start = ctl.current;
  const n = ctl.switches;
  assert.equal(start.split, 'stage1');
  for (let i = 0; i < 100; i += 1) { // 10 s: replies in bursts at a quarter of the send rate, 5 frames outstanding
    t += TICK_S;
    const sent = Math.trunc((start.bps(30.0) * TICK_S) / 8);
    ctl.observe(new Observation({ t, sentBytes: sent,
      deliveredBytes: i % 4 ? Math.floor(sent / 4) : Math.floor((sent * 7) / 4),
      queuedBytes: Math.trunc(5 * start.payloadBytes), rttMs: 3.0, serverMs: SERVER,
      bufferedBytes: i % 3 ? 0 : Math.floor(sent / 3), netMs: 2.0 + 40.0 * (i % 4 === 0), netMinMs: 2.0 }));
    assert.equal(ctl.est.congested, false);
  }
  assert.ok(ctl.current.equals(start) && ctl.switches === n);
});

test('a failed probe costs its train only', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(0.5e6, 5);
  const low = ctl.current;
  const t0 = net.t;
  const n0 = net.frames.length;
  net.run(0.5e6, 30);
  const probes = net.decisions.filter(([t, why]) => why === 'probe' && t > t0).map(([t]) => t);
  const fails = net.decisions.filter(([t, why]) => why === 'probe_failed' && t > t0).map(([t]) => t);
  // every train fails (the last one may still be out when the run ends)
  assert.ok(probes.length && fails.length >= probes.length - 1);
  assert.ok(!net.decisions.some(([t, why]) => t > t0 && why !== 'probe' && why !== 'probe_failed'));
  const every = net.decisions.filter(([, why]) => why === 'probe').map(([t]) => t);
  for (const f of fails) { // each failure ends the train that started before it, once its replies were due
    const start = Math.max(...every.filter((p) => p <= f));
    assert.ok(f - start <= PROBE_FRAMES / 30.0 + PROBE_JUDGE_S + TICK_S + 1e-9);
  }
  const rung = net.frames.slice(n0).filter((f) => f[1] !== low.key);
  assert.ok(rung.length <= PROBE_FRAMES * probes.length);
  assert.ok(ctl.current.equals(low));
  const calm = net.frames.slice(n0).filter((f) => f[1] === low.key).map((f) => f[2]).sort((x, y) => x - y);
  assert.ok(calm[Math.floor(calm.length / 2)] <= BASE_MS + ((low.payloadBytes * 8) / 0.5e6) * 1000 + PROBE_EXCESS_MS);
});

test('a late train frame ends its train', () => {
  const ctl = controller();
  const net = new Link(ctl);
  net.run(0.5e6, 5);
  const low = ctl.current;
  const n0 = net.frames.length;
  const c0 = net.checks.length;
  net.run(0.5e6, 10);
  const probes = net.decisions.filter(([t, why]) => why === 'probe' && t > 5.0);
  const rung = net.frames.slice(n0).filter((f) => f[1] !== low.key);
  const stops = net.checks.slice(c0).filter((c) => c.stop);
  assert.ok(probes.length && stops.length === probes.length && rung.length < PROBE_FRAMES * probes.length);
  assert.ok(stops.every((c) => c.net_ms > PROBE_EXCESS_MS));
  const n1 = net.frames.length;
  net.run(5e6, 3);
  assert.ok(!ctl.current.equals(low) && !net.checks.some((c) => c.stop && c.tick >= 150));
  assert.ok(net.frames.slice(n1).filter((f) => f[1] === ctl.current.key).length >= PROBE_FRAMES);
});

test('pareto drops the points beaten on bytes, device time and accuracy for the same split', () => {
  const a = new Point('s', 'c1', 'float32', 100, 0.9);
  const b = new Point('s', 'c2', 'float32', 200, 0.9);  // more bytes, same time and accuracy: beaten by a
  const c = new Point('s', 'c3', 'int8', 50, 0.8);       // fewer bytes, less accurate: kept
  const d = new Point('t', 'c2', 'float32', 200, 0.9);   // another split: never compared with a
  const e = new Point('s', 'c1', 'float32', 100, 0.9);   // a's twin: equal on every count, both kept
  const kept = pareto([a, b, c, d, e], { 's/float32': 1, 's/int8': 1, 't/float32': 1 }, {});
  assert.deepEqual(kept, [a, c, d, e]);
  // a slower head makes a point beatable only by one at least as fast
  assert.deepEqual(pareto([a, b], { 's/float32': 1 }, { 's/c1': 5 }), [a, b]);
});

test('an empty candidate list is refused', () => {
  assert.throws(() => new Controller([], 30, new Estimates({}, {})), /no operating points/);
});
