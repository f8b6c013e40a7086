// static/js/wire/messages.js against tests/vectors/messages.json (which the Python suite
// replays through splitcore/wire/messages.py): every valid text parses to exactly the
// expected value, every invalid one is refused with the expected code and seq.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { FrameError } from '../../static/js/wire/frame.js';
import { MAX_DEPTH, MessageError, dumps, errorFor, parse } from '../../static/js/wire/messages.js';

const VECTORS = JSON.parse(readFileSync(new URL('../vectors/messages.json', import.meta.url), 'utf8'));

test('the vectors are there, valid and invalid', () => {
  assert.ok(VECTORS.valid.length >= 10 && VECTORS.invalid.length >= 30);
});

for (const v of VECTORS.valid) {
  test(`valid: ${v.name}`, () => {
    assert.deepStrictEqual(parse(v.text), v.expected);
  });
}

for (const v of VECTORS.invalid) {
  test(`invalid: ${v.name} -> ${v.code} (seq ${v.seq})`, () => {
    assert.throws(() => parse(v.text), (err) => {
      assert.ok(err instanceof MessageError, `not a MessageError: ${err}`);
      assert.equal(err.code, v.code, err.message);
      assert.equal(err.seq, v.seq, err.message);
      return true;
    });
  });
}

test('dumps writes what parse reads back, for every valid vector', () => {
  for (const v of VECTORS.valid) assert.deepStrictEqual(parse(dumps(v.expected)), v.expected, v.name);
});

test('dumps refuses values JSON cannot carry instead of writing null', () => {
  const reply = VECTORS.valid.find((v) => v.name === 'reply').expected;
  assert.throws(() => dumps({ ...reply, probs: [0.5, Number.NaN] }), RangeError);
  assert.throws(() => dumps({ ...reply, logits: [Infinity] }), RangeError);
  assert.throws(() => dumps({ type: 'ping', t_ms: -Infinity }), RangeError);
  assert.throws(() => dumps({ type: 'hello' }), RangeError);
});

test('nesting: the deepest a message may be is accepted, one more is refused', () => {
  const nest = (d) => `${'['.repeat(d)}${']'.repeat(d)}`;
  assert.equal(parse(`{"type":"ping","t_ms":1,"x":${nest(MAX_DEPTH - 1)}}`).type, 'ping');
  assert.throws(() => parse(`{"type":"ping","t_ms":1,"x":${nest(MAX_DEPTH)}}`), { code: 'bad_message' });
  // brackets inside strings (escaped quotes included) are not nesting
  assert.equal(parse(`{"type":"error","reason":"x","detail":"\\"${'['.repeat(500)}"}`).type, 'error');
});

test('texts are bounded in bytes: 16 KiB of multi-byte characters is refused', () => {
  const detail = 'é'.repeat(900); // 1,800 bytes: under the detail limit of 1,024 characters
  assert.equal(parse(JSON.stringify({ type: 'error', reason: 'x', detail })).detail, detail);
  const long = JSON.stringify({ type: 'error', reason: 'x', detail: 'é'.repeat(8200) });
  assert.ok(long.length < 16384);
  assert.throws(() => parse(long), { code: 'bad_message' });
});

test('errorFor carries a refusal code and seq into an error message', () => {
  const text = dumps(errorFor({ code: 'too_large', detail: 'x'.repeat(2000), seq: 7 }));
  assert.deepStrictEqual(parse(text), { type: 'error', seq: 7, reason: 'too_large', detail: 'x'.repeat(1024) });
});

// ---------------------------------------------------------------------------------------
// JSON text messages

const TIMING = { decode_ms: 0.02, queue_ms: 0.1, tail_ms: 0.4, total_ms: 0.6 };
const REPLY = { seq: 12, capture_ms: 1234.5, split: 'stage1', label: 3, name: 'cat',
  probs: [0.01, 0.9, 0.09], timing: TIMING };

test('reply, drop and error round trip through makeX / parse', () => {
  assert.deepEqual(parse(dumps({ type: 'reply', ...REPLY })), { type: 'reply', ...REPLY });
  assert.deepEqual(parse(dumps({ type: 'drop', seq: 13, capture_ms: 1267.8, reason: 'stale' })),
    { type: 'drop', seq: 13, capture_ms: 1267.8, reason: 'stale' });
  const err = new FrameError('truncated', 'payload shorter than payload_len', 14);
  assert.deepEqual(parse(dumps(errorFor(err))),
    { type: 'error', seq: 14, reason: 'truncated', detail: 'payload shorter than payload_len' });
  assert.deepEqual(parse('{"type": "error", "reason": "bad_magic"}'),
    { type: 'error', seq: null, reason: 'bad_magic', detail: '' });
  // the spec's own examples parse (probs shortened)
  parse('{"type": "reply", "seq": 12, "capture_ms": 1234.5, "split": "stage1", "label": 3, ' +
    '"name": "cat", "probs": [0.01], "timing": {"decode_ms": 0.02, "queue_ms": 0.1, ' +
    '"tail_ms": 0.4, "total_ms": 0.6}}');
});

test('malformed JSON and missing or mistyped fields give clear errors', () => {
  const bad = (text, code, re) => assert.throws(() => parse(text),
    (e) => e instanceof MessageError && e.code === code && (!re || re.test(e.message)), text);
  bad('{"type": "reply", ', 'bad_json');
  bad('{"type": "reply", "probs": [NaN]}', 'bad_json'); // Python's json.dumps default allows NaN
  bad('[1, 2]', 'bad_message');
  bad('null', 'bad_message');
  bad('{"type": "ack"}', 'bad_message', /unknown message type/);
  for (const key of Object.keys(REPLY)) {
    const partial = { type: 'reply', ...REPLY };
    delete partial[key];
    bad(JSON.stringify(partial), 'bad_message', new RegExp(`"${key}"`));
  }
  bad(JSON.stringify({ type: 'reply', ...REPLY, seq: -1 }), 'bad_message', /"seq"/);
  bad(JSON.stringify({ type: 'reply', ...REPLY, timing: { ...TIMING, tail_ms: '0.4' } }), 'bad_message', /timing\.tail_ms/);
  bad(JSON.stringify({ type: 'reply', ...REPLY, probs: [0.5, 'x'] }), 'bad_message', /"probs"/);
  bad('{"type": "drop", "seq": 1, "reason": "stale"}', 'bad_message', /"capture_ms"/);
  bad('{"type": "error", "seq": 1}', 'bad_message', /"reason"/);
  assert.throws(() => dumps({ type: 'reply', ...REPLY, probs: undefined }), TypeError);
  assert.throws(() => dumps({ type: 'drop', seq: 1, capture_ms: NaN, reason: 'stale' }), RangeError);
});
