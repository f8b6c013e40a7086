/**
 * Device time per operating point, measured at start-up in this browser: the twin of
 * `sender/profile.py`.
 *
 * For `?split=adaptive` the controller needs what each candidate costs here before it has
 * run it: every head the candidates use (split x float32/INT8) is loaded once (the page
 * holds them all, so a switch never loads a model mid-stream) and run on a few frames, and
 * every codec is timed on that head's real latent. The running stream refreshes these
 * figures from the frames it sends (`sender/adaptive.js` Estimates).
 * @module profile
 */
import { encodeLatent, parseCodec } from '../wire/codecs.js';

export const WARMUP = 2;
export const FRAMES = 5;

/**
 * Held heads and measured costs: `deviceMs` per `split/head`, `encodeMs` per `split/codec`
 * (medians of `FRAMES` runs after `WARMUP`).
 */
export class Profile {
  constructor(heads, codecs, deviceMs, encodeMs) {
    this.heads = heads;       // "split/head" -> runner
    this.codecs = codecs;     // "split/codec" -> CodecSpec
    this.deviceMs = deviceMs; // "split/head" -> ms
    this.encodeMs = encodeMs; // "split/codec" -> ms
  }

  asDict() {
    const r4 = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 1e4) / 1e4]));
    return { device_ms: r4(this.deviceMs), encode_ms: r4(this.encodeMs) };
  }
}

function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

async function time(fn, frames, clock) {
  for (let i = 0; i < WARMUP; i += 1) await fn();
  const runs = [];
  for (let i = 0; i < frames; i += 1) {
    const t0 = clock();
    await fn();
    runs.push(clock() - t0);
  }
  return median(runs);
}

/** `n` floats in [0, 1) from a seeded generator (mulberry32): the same input on every load. */
export function seededInput(n, seed = 0) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i += 1) {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  return out;
}

/**
 * Load every head `points` use and time heads and codecs on `frames` inputs.
 * @param {{input: {shape: number[]}, splits: {id: string, calibration?: object}[]}} manifest
 * @param {Iterable<import('./adaptive.js').Point>} points
 * @param {{head: (split: string, head: string) => Promise<{run: (x: Float32Array) => Promise<{data: Float32Array, dims: number[]}>}>}} heads
 * @param {{frames?: number, seed?: number, clock?: () => number, onProgress?: ((text: string) => void)|null}} [opts]
 * @returns {Promise<Profile>}
 */
export async function profile(manifest, points, heads, { frames = FRAMES, seed = 0, clock = () => performance.now(),
  onProgress = null } = {}) {
  const x = seededInput(manifest.input.shape.reduce((a, b) => a * b, 1), seed);
  const runners = {};
  const specs = {};
  const device = {};
  const encode = {};
  for (const p of points) {
    const hk = `${p.split}/${p.head}`;
    const ck = `${p.split}/${p.codec}`;
    if (!(hk in runners)) {
      onProgress?.(`profiling the ${p.split} ${p.head} head…`);
      const runner = await heads.head(p.split, p.head);
      runners[hk] = runner;
      device[hk] = await time(() => runner.run(x), frames, clock);
    }
    if (!(ck in specs)) {
      const sp = manifest.splits.find((s) => s.id === p.split);
      const spec = parseCodec(p.codec, sp?.calibration ?? null);
      specs[ck] = spec;
      const { data, dims } = await runners[hk].run(x);
      const latent = Float32Array.from(data); // onnxruntime-web may reuse its output buffer
      encode[ck] = await time(() => encodeLatent(latent, dims, spec), frames, clock);
    }
  }
  return new Profile(runners, specs, device, encode);
}
