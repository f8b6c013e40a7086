/**
 * Small numeric helpers shared by the pages (pure, node-tested).
 * @module numeric
 */

/** Softmax in float64 of float32 logits, rounded to 6 decimals like receiver/engine.py. */
export function softmax6(logits) {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => Math.round((v / sum) * 1e6) / 1e6);
}

/** Index of the largest value (first one on ties, like numpy.argmax). */
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
