// static/js/sender/adaptive.js, the browser twin of sender/adaptive.py: every case of
// tests/vectors/adaptive.json (written by `python -m tests.unit.test_adaptive`) replayed
// through it must give the same decisions (tick, why, to) as the Python controller; and the
// synthetic links of tests/unit/test_adaptive.py behave the same here.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  Controller, Estimates, Observation, PROBE_TRIAL_S, PROBE_WAIT_MAX_S, Point, TICK_S, pareto,
} from '../../static/js/sender/adaptive.js';

const VECTORS = JSON.parse(readFileSync(new URL('../vectors/adaptive.json', import.meta.url), 'utf8'));

/** One case through a fresh controller: the decisions as the Python test records them. */
export function replay(c) {
  const pts = c.points.map(Point.fromDict);
  const ctl = new Controller(pts, c.fps, new Estimates(c.device_ms, c.encode_ms, c.server_ms));
  const got = [];
  c.observations.forEach((o, i) => {
    const sw = ctl.observe(Observation.fromDict(o));
    if (sw !== null) got.push({ tick: i, why: sw.why, to: sw.new.key });
  });
  return { got, ctl };
}

test('the adaptive vectors hold decisions of every kind', () => {
  const whys = new Set(VECTORS.cases.flatMap((c) => c.decisions.map((d) => d.why)));
  for (const why of ['congested', 'probe', 'probe_failed']) assert.ok(whys.has(why), `no ${why} decision in the vectors`);
  assert.ok(VECTORS.cases.some((c) => !c.decisions.length), 'no case without a switch (steady)');
});

for (const c of VECTORS.cases) {
  test(`adaptive vector ${c.name}: same decisions as sender/adaptive.py`, () => {
    const { got } = replay(c);
    assert.deepEqual(got, c.decisions);
  });
}

test('a twin that diverges fails the replay (a changed boundary changes the decisions)', () => {
  // the same case with the link 10 % slower on every tick: the vectors pin the exact ticks
  const c = VECTORS.cases.find((x) => x.name === 'step_down_up');
  const slower = { ...c, observations: c.observations.map((o) => ({ ...o, t: o.t * 1.1 })) };
  assert.notDeepEqual(replay(slower).got, c.decisions);
});

// --- the synthetic links of tests/unit/test_adaptive.py ----------------------------------

const POINTS = [new Point('stage1', 'clip4+zlib', 'float32', 2916.4), new Point('stage2', 'clip4+zlib', 'int8', 1609.7),
  new Point('features', 'clip4+zlib', 'int8', 500.9)];
const DEVICE = { 'stage1/float32': 3.0, 'stage2/int8': 10.0, 'features/int8': 18.0 };
const ENCODE = { 'stage1/clip4+zlib': 0.5, 'stage2/clip4+zlib': 0.3, 'features/clip4+zlib': 0.2 };
const SERVER = { stage1: 2.5, stage2: 0.6, features: 0.05 };

/** Feed `seconds` of a link of `capBps`: what we send beyond it queues. */
function link(ctl, capBps, t, seconds, queue) {
  const seen = [];
  for (let i = 0; i < Math.trunc(seconds / TICK_S); i += 1) {
    t += TICK_S;
    const sent = (ctl.current.bps(ctl.fps) * TICK_S) / 8;
    queue[0] += sent;
    const out = Math.min(queue[0], (capBps * TICK_S) / 8);
    queue[0] -= out;
    const sw = ctl.observe(new Observation({ t, sentBytes: Math.trunc(sent), deliveredBytes: Math.trunc(out),
      queuedBytes: Math.trunc(queue[0] + sent / 3), serverMs: SERVER, bufferedBytes: Math.trunc(queue[0]) }));
    if (sw !== null) seen.push(`${sw.why}:${sw.new.key}`);
  }
  return [t, seen];
}

const controller = () => new Controller(POINTS, 30.0, new Estimates(DEVICE, ENCODE, SERVER));

test('moves down under a low cap and back up under a high one', () => {
  const ctl = controller();
  const q = [0.0];
  let [t] = link(ctl, 20e6, 0.0, 5, q);
  assert.equal(ctl.current.split, 'stage1'); // fastest on a fast link with this device
  let seen;
  [t, seen] = link(ctl, 0.5e6, t, 5, q);
  assert.ok(['stage2', 'features'].includes(ctl.current.split) && seen.some((s) => s.startsWith('congested')), seen);
  const low = ctl.current;
  [t, seen] = link(ctl, 20e6, t, 20, q);
  assert.ok(ctl.current.split === 'stage1' && ctl.current.payloadBytes > low.payloadBytes);
  assert.ok(seen.some((s) => s.startsWith('probe')), seen);
});

test('no flapping on a steady link', () => {
  const ctl = controller();
  const q = [0.0];
  const [t] = link(ctl, 20e6, 0.0, 3, q);
  const n = ctl.switches;
  link(ctl, 20e6, t, 30, q);
  assert.equal(ctl.switches, n);
});

test('a slow receiver is not a congested link', () => {
  const ctl = controller();
  let [t] = link(ctl, 20e6, 0.0, 3, [0.0]);
  const start = ctl.current;
  const n = ctl.switches;
  assert.equal(start.split, 'stage1');
  for (let i = 0; i < 100; i += 1) { // 10 s: replies in bursts at a quarter of the send rate, 5 frames outstanding
    t += TICK_S;
    const sent = Math.trunc((start.bps(30.0) * TICK_S) / 8);
    ctl.observe(new Observation({ t, sentBytes: sent,
      deliveredBytes: i % 4 ? Math.floor(sent / 4) : Math.floor((sent * 7) / 4),
      queuedBytes: Math.trunc(5 * start.payloadBytes), rttMs: 3.0, serverMs: SERVER,
      bufferedBytes: i % 3 ? 0 : Math.floor(sent / 3) }));
    assert.equal(ctl.est.congested, false);
  }
  assert.ok(ctl.current.equals(start) && ctl.switches === n);
});

test('a failed probe is short and backs off', () => {
  const ctl = controller();
  const q = [0.0];
  let [t] = link(ctl, 0.5e6, 0.0, 5, q);
  const t0 = t;
  const trials = [];
  for (let i = 0; i < Math.trunc(30 / TICK_S); i += 1) {
    let seen;
    [t, seen] = link(ctl, 0.5e6, t, TICK_S, q);
    for (const s of seen) trials.push([t, s]);
  }
  const probes = trials.filter(([, s]) => s.startsWith('probe:')).map(([tt]) => tt);
  const fails = trials.filter(([, s]) => s.startsWith('probe_failed')).map(([tt]) => tt);
  assert.ok(fails.length, 'a probe beyond a 0.5 Mbit/s link must fail');
  for (const f of fails) { // each failure ends the trial that started before it, within the trial
    const start = Math.max(...probes.filter((p) => p <= f));
    assert.ok(f - start <= PROBE_TRIAL_S + TICK_S + 1e-9);
  }
  assert.ok(probes.length <= (30 / PROBE_WAIT_MAX_S) * 2 + 2);
  assert.ok(ctl.current.bps(30.0) <= 0.5e6 && t - t0 >= 30 - 1e-6);
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
