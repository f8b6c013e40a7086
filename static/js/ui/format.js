/**
 * How the pages show numbers: bytes, rates, milliseconds, counts (pure, node-tested).
 * Values may come from other clients: anything that is not a finite number shows as "–".
 * @module format
 */

/** 12345 -> "12.3 kB" (SI, like the Python status line). */
export function humanBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return i === 0 ? `${n.toFixed(0)} ${units[i]}` : `${n.toFixed(1)} ${units[i]}`;
}

/** Bytes per second in SI units, three significant digits from 1 kB/s: "1.05 MB/s", "995.3 kB/s". */
export function formatRate(bps) {
  if (typeof bps !== "number" || !Number.isFinite(bps)) return "–";
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let v = bps;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return i === 0 ? `${v.toFixed(0)} ${units[0]}` : `${v.toFixed(Math.abs(v) < 10 ? 2 : 1)} ${units[i]}`;
}

/** A number with fixed decimals, or "–" when the peer did not report it. */
export function formatNumber(value, digits = 0) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** A share in [0, 1] as a percentage, e.g. fidelity 1 -> "100%", 0.98765 -> "98.77%". */
export function formatPercent(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value === 1 ? "100%" : `${(value * 100).toFixed(2)}%`;
}

/** A short message rate / frame rate for axes: "30", "1.5k". */
export function formatCount(value, digits = 1) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** Milliseconds with a precision that suits the size: "0.85 ms", "12.3 ms", "140 ms". */
export function formatMs(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const digits = Math.abs(value) < 1 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return `${value.toFixed(digits)} ms`;
}
