// static/js/runtime/operating.js, the browser twin of splitcore/runtime/operating.py: the
// same choices as tests/unit/test_operating.py on the same points, and the shipped
// models/operating_points.json parsed and checked against what the page can encode.
//   node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';

import { COMPRESSORS, SUPPORTED_COMPRESSIONS, parseCodec } from '../../static/js/wire/codecs.js';
import {
  OperatingPoints, OperatingPointsError, PORTABLE_COMPRESSORS, isPortable,
} from '../../static/js/runtime/operating.js';

const P = [{ split: 'stage1', codec: 'float32', head: 'float32', payload_bytes: 32832, top1: 0.9 },
  { split: 'stage2', codec: 'clip4', head: 'float32', payload_bytes: 2120, top1: 0.895 },
  { split: 'stage2', codec: 'clip4+zlib', head: 'int8', payload_bytes: 1500, top1: 0.889 },
  { split: 'features', codec: 'clip4+zlib', head: 'float32', payload_bytes: 700, top1: 0.85 }];

const points = (pts) => OperatingPoints.fromJSON({ full_top1: 0.9, points: pts });
const leak = (ssim) => ({ ssim, psnr_db: 10.0 + 20 * ssim, recon_top1: ssim, attack: 'inverse' });

test('fewest bytes within the drop', () => {
  const op = points(P);
  assert.ok(op.choose(1.0).codec === 'clip4' && op.choose(1.0).split === 'stage2');
  assert.equal(op.choose(1.2).head, 'int8');
  assert.equal(op.choose(6.0).split, 'features');
  assert.equal(op.choose(0.0).split, 'stage1');
  assert.equal(op.choose(1.2, { int8Head: false }).codec, 'clip4');
  assert.equal(op.choose(6.0, { splits: new Set(['stage1', 'stage2']) }).payloadBytes, 1500);
});

test('ties go to the higher accuracy', () => {
  const op = points([{ ...P[1], top1: 0.893 }, P[1], { ...P[1], top1: 0.891 }]);
  assert.equal(op.choose(1.0).top1, 0.895);
});

test('zstd only when asked (browsers cannot decode it)', () => {
  const zstd = { split: 'features', codec: 'clip4+zstd', head: 'float32', payload_bytes: 600, top1: 0.899 };
  const op = points([...P, zstd]);
  assert.ok(op.choose(1.0).codec === 'clip4' && op.choose(1.0).split === 'stage2');
  assert.equal(op.choose(1.0, { portable: false }).codec, 'clip4+zstd');
  assert.ok(isPortable('float32') && isPortable('int8-channel+zlib') && !isPortable('clip4+zstd'));
});

test('nothing within the drop is an error', () => {
  assert.throws(() => points(P.slice(1)).choose(0.1), (e) => e instanceof OperatingPointsError
    && /no operating point within 0.1 points of the full model's 90.00%/.test(e.message));
});

test('a bad file is refused with a clear error', () => {
  assert.throws(() => OperatingPoints.fromJSON({}), /not a valid operating-points file: no "points" list/);
  assert.throws(() => points([{ ...P[0], payload_bytes: 'many' }]), /points\[0\]\.payload_bytes must be a number/);
  assert.throws(() => points([{ ...P[0], leakage: 0.3 }]), /leakage must be an object/);
  assert.throws(() => points([{ ...P[0], leakage: { ssim: 0.3 } }]), /leakage\.psnr_db must be a number/);
  assert.throws(() => OperatingPoints.fromJSON({ points: [] }), /full_top1 must be a number/);
});

test('max_ssim keeps measured private points; unmeasured is not private', () => {
  const op = points([{ ...P[0], leakage: leak(0.95) }, { ...P[1], leakage: leak(0.5) }, { ...P[2] },
    { ...P[3], leakage: leak(0.2) }]);
  assert.equal(op.choose(1.2).payloadBytes, 1500);                   // no limit: leakage plays no part
  assert.equal(op.choose(1.2, { maxSsim: 0.6 }).codec, 'clip4');     // 1500 B was never attacked
  assert.equal(op.choose(6.0, { maxSsim: 0.3 }).split, 'features');
  assert.throws(() => op.choose(1.0, { maxSsim: 0.3 }), /attack SSIM <= 0.3/);
  const found = op.find('features', 'clip4+zlib', 'float32');
  assert.ok(found !== null && found.leakage !== null && found.leakage.ssim === 0.2);
  assert.deepEqual(found.leakage.asDict(), leak(0.2));
  assert.ok(found.describe(0.9).includes('attack SSIM 0.20') && op.points[2].describe(0.9).includes('not measured'));
  assert.equal(op.points[2].leakage, null);
  assert.equal(op.find('stem', 'float32', 'float32'), null);
});

test('describe reads like the Python one', () => {
  const op = points(P);
  assert.equal(op.points[0].describe(0.9),
    'split stage1, codec float32, float32 head: 32,832 B/frame, top-1 90.00% (+0.00 points vs the full model), ' +
    'leakage not measured');
  assert.ok(op.points[3].describe(0.9).includes('(-5.00 points vs the full model)'));
});

test('the portable compressors are the ones this page encodes', () => {
  for (const c of PORTABLE_COMPRESSORS) assert.ok(SUPPORTED_COMPRESSIONS.includes(COMPRESSORS[c]), c);
  for (const [name, value] of Object.entries(COMPRESSORS)) {
    assert.equal(PORTABLE_COMPRESSORS.includes(name), SUPPORTED_COMPRESSIONS.includes(value), name);
  }
});

const SHIPPED = new URL('../../models/operating_points.json', import.meta.url);

test('the shipped operating points parse, and their portable codecs are codecs the page knows', { skip:
  existsSync(SHIPPED) ? false : 'no models/operating_points.json (make train)' }, () => {
  const raw = JSON.parse(readFileSync(SHIPPED, 'utf8'));
  const op = OperatingPoints.fromJSON(raw, 'models/operating_points.json');
  assert.equal(op.points.length, raw.points.length);
  assert.ok(op.points.length > 0 && op.fullTop1 > 0);
  const manifest = JSON.parse(readFileSync(new URL('../../models/manifest.json', import.meta.url), 'utf8'));
  const cal = Object.fromEntries(manifest.splits.map((s) => [s.id, s.calibration ?? null]));
  for (const p of op.points.filter((x) => isPortable(x.codec) && x.split in cal)) {
    assert.equal(parseCodec(p.codec, cal[p.split]).name, p.codec);
  }
  for (const p of raw.points.filter((x) => x.leakage)) {
    assert.deepEqual(op.find(p.split, p.codec, p.head).leakage.asDict(), p.leakage);
  }
});
