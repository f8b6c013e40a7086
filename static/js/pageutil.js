/**
 * Small helpers shared by sender.html and receiver.html: settings from the URL (so a shared
 * link opens a ready session), the status line, a bounded map for the test hooks.
 * @module pageutil
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

/** Room ids the server accepts (docs/signaling.md). */
export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

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

/** Number with fixed decimals, or an en dash for null/NaN. */
export function fmt(v, digits = 1) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}
