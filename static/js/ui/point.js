/**
 * How the dashboard shows a sender's operating point (split / codec / head) and the measured
 * privacy leakage of that point, from the sender's `app` stats (sender/stream.py and
 * sender/switching.py `app_stats`, and the sender page's twin): pure, node-tested.
 *
 * `leakage` is `{ssim, psnr_db, recon_top1, attack}` or null: the best inversion attack on the
 * point's latents in the privacy study (splitcore/runtime/operating.py `Leakage`). SSIM below
 * 0.3 counts as unrecognisable (He et al.); a point never attacked is "not measured", which
 * is not the same as private.
 *
 * Every field comes from another client: strings are length-checked, numbers must be finite,
 * and nothing here becomes HTML.
 * @module point
 */

/** SSIM of the reconstructions below which a frame counts as unrecognisable. */
export const PRIVATE_SSIM = 0.3;
/** Longest split / codec / head / attack name shown; longer ones are not ours. */
const MAX_PART = 40;

const str = (v, max = MAX_PART) => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/**
 * The point a sender runs at: `{split, codec, head, key, switches}` (a missing part is null;
 * `key` is the sender's `operating_point` or "split/codec/head" from the parts it has;
 * `switches` a count or null), or null for a peer that reports none of them (a receiver).
 * @param {object} app
 */
export function operatingPoint(app) {
  if (!app || typeof app !== 'object') return null;
  const split = str(app.split);
  const codec = str(app.codec);
  const head = str(app.head);
  if (split === null && codec === null && head === null) return null;
  const given = str(app.operating_point, 3 * MAX_PART + 2);
  const key = given ?? [split, codec, head].map((p) => p ?? '?').join('/');
  const switches = num(app.switches);
  return { split, codec, head, key, switches: switches !== null && switches >= 0 ? Math.floor(switches) : null };
}

/** "stage1 / float16 / int8": the parts the peer reported (a receiver: the split it last received). */
export function pointText(point) {
  const parts = point ? [point.split, point.codec, point.head].filter((p) => p !== null) : [];
  return parts.length ? parts.join(' / ') : '–';
}

/**
 * The leakage cell: `{kind, text, detail, ssim, title}`, kind "private" (SSIM < 0.3),
 * "recognisable" or "unmeasured" (null, absent, or not a leakage object); `text` the badge
 * ("private · SSIM 0.21"), `detail` the other figures ("12.3 dB · top-1 12%").
 * @param {unknown} leakage  app.leakage
 */
export function leakageView(leakage) {
  const ssim = leakage && typeof leakage === 'object' ? num(leakage.ssim) : null;
  if (ssim === null) {
    return { kind: 'unmeasured', text: 'not measured', detail: '', ssim: null,
      title: 'No inversion attack was run on this operating point: its leakage is unknown (not the same as private).' };
  }
  const psnr = num(leakage.psnr_db);
  const top1 = num(leakage.recon_top1);
  const attack = str(leakage.attack) ?? 'unknown attack';
  const kind = ssim < PRIVATE_SSIM ? 'private' : 'recognisable';
  const details = [];
  if (psnr !== null) details.push(`${psnr.toFixed(1)} dB`);
  if (top1 !== null) details.push(`top-1 ${(top1 * 100).toFixed(0)}%`);
  const verdict = kind === 'private'
    ? `below ${PRIVATE_SSIM}: reconstructions are unrecognisable`
    : `at or above ${PRIVATE_SSIM}: reconstructions are recognisable`;
  return {
    kind, ssim, text: `${kind} · SSIM ${ssim.toFixed(2)}`, detail: details.join(' · '),
    title: `Best inversion attack (${attack}) on this point's latents: SSIM ${ssim.toFixed(3)} (${verdict})` +
      `${psnr !== null ? `, PSNR ${psnr.toFixed(2)} dB` : ''}` +
      `${top1 !== null ? `, the full model's top-1 on its reconstructions ${(top1 * 100).toFixed(1)}%` : ''}.`,
  };
}
