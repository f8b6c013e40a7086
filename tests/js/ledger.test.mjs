// static/js/sender/ledger.js replays tests/vectors/ledger.json (the Python suite replays the
// same file through sender/ledger.py): the books after each case are exactly the expected.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Ledger } from '../../static/js/sender/ledger.js';

const CASES = JSON.parse(readFileSync(new URL('../vectors/ledger.json', import.meta.url), 'utf8')).cases;

/** One case's events through a fresh ledger; returns its counts(). */
export function replay(c) {
  const led = new Ledger(c.classes, { clock: () => 0 });
  for (const [kind, ...args] of c.events) {
    switch (kind) {
      case 'captured': led.onCaptured(); break;
      case 'skipped': led.onSkipped(args[0]); break;
      case 'drop_before_send': led.dropBeforeSend(args[0]); break;
      case 'sent': led.onSent(args[0], args[1], args[2]); break;
      case 'message': led.onText(args[0], args[1]); break;
      case 'connection_lost': led.onConnectionLost(); break;
      default: throw new Error(`unknown event ${kind}`);
    }
  }
  return led.counts();
}

test('the ledger vectors cover every event and outcome', () => {
  const kinds = new Set(CASES.flatMap((c) => c.events.map((e) => e[0])));
  assert.deepEqual([...kinds].sort(),
    ['captured', 'connection_lost', 'drop_before_send', 'message', 'sent', 'skipped']);
  for (const key of ['lost', 'unmatched']) assert.ok(CASES.some((c) => c.expected[key] > 0), key);
  assert.ok(CASES.some((c) => c.expected.errors.bad_reply > 0));
  assert.ok(CASES.some((c) => !c.expected.accounted));
});

for (const c of CASES) {
  test(`ledger: ${c.name}`, () => {
    assert.deepStrictEqual(replay(c), c.expected);
  });
}

test('records: one per settled frame, lost ones included', () => {
  const records = [];
  const led = new Ledger(['a', 'b'], { clock: () => 0, onRecord: (r) => records.push(r) });
  for (const seq of [0, 1]) { led.onCaptured(); led.onSent(seq, 100, 100, seq); }
  led.onText('{"type":"drop","seq":0,"capture_ms":100,"reason":"stale"}', 150);
  led.onConnectionLost();
  assert.deepEqual(records, [{ seq: 0, frame: 0, status: 'dropped', reason: 'stale' },
    { seq: 1, frame: 1, status: 'lost' }]);
  assert.equal(led.summary().lost, 1);
  assert.ok(led.summary().accounted);
});
