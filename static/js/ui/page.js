/**
 * What sender.html and receiver.html share: settings from the URL (so a shared link opens a
 * ready session), the status line (failures and the signaling state included), a median for
 * the status figures, a bounded map for the test hooks.
 * @module page
 */

/**
 * Settings from a query string, typed after `defaults` (number, boolean "1"/"true", string).
 * @param {string} search e.g. location.search
 * @param {object} defaults
 */
export function readSettings(search, defaults) {
  const q = new URLSearchParams(search);
  const out = {};
  for (const [key, def] of Object.entries(defaults)) {
    const raw = q.get(key);
    if (raw === null) out[key] = def;
    else if (typeof def === 'number') out[key] = Number.isFinite(Number(raw)) && raw.trim() !== '' ? Number(raw) : def;
    else if (typeof def === 'boolean') out[key] = ['1', 'true', 'yes', 'on', ''].includes(raw.toLowerCase());
    else out[key] = raw;
  }
  return out;
}

/** A link to `path` that opens the page with these settings (defaults left out). */
export function settingsLink(origin, path, values, defaults) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === null || v === '' || v === defaults[k]) continue;
    q.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  const s = q.toString();
  return `${origin}${path}${s ? `?${s}` : ''}`;
}

/** A Map that forgets its oldest keys beyond `limit` entries. */
export class BoundedMap extends Map {
  constructor(limit) { super(); this.limit = limit; }
  set(key, value) {
    if (!this.has(key) && this.size >= this.limit) this.delete(this.keys().next().value);
    return super.set(key, value);
  }
}

/** Set the page's status line; kind: "info", "ok" or "error". */
export function setStatus(el, text, kind = 'info') {
  if (!el) return;
  el.textContent = text;
  el.dataset.kind = kind;
}

/** The page failed: log it, remember it in `state` (phase "error") and show it. */
export function fail(state, el, err) {
  console.error(err);
  state.phase = 'error';
  state.error = err?.message ?? String(err);
  setStatus(el, state.error, 'error');
}

/** Median of recent figures (upper median), 3 decimals; null for none. */
export function median(a) {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return Math.round(s[Math.floor(s.length / 2)] * 1000) / 1000;
}

/**
 * The status line for a signaling state change (rtc/signaling.js "state" event) while the
 * page is working: `okText` when joined, else what is going on.
 */
export function showSignaling(el, state, detail, okText) {
  if (state === 'joined') setStatus(el, okText, 'ok');
  else if (state === 'reconnecting') setStatus(el, `signaling server lost (${detail}); reconnecting… open connections continue`, 'error');
  else if (state === 'refused') setStatus(el, `the signaling server refused to join: ${detail}`, 'error');
}
