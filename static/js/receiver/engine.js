/**
 * The tails of a receiver page: one onnxruntime-web session per split, created once at
 * start-up, all runs one after another. The browser twin of `receiver/engine.py` (whose
 * single worker thread serialises inference; onnxruntime-web runs one inference at a time
 * per page anyway, and chaining keeps the reported tail times honest).
 * @module engine
 */
import { argmax, softmax6 } from '../runtime/numeric.js';

/**
 * @typedef {object} TailResult
 * @property {number} label     argmax of the logits
 * @property {number[]} logits  the tail's float32 outputs
 * @property {number[]} probs   their softmax, 6 decimals
 * @property {number} tailMs    time in the tail
 * @property {number} started   performance.now() when the tail started
 */

export class TailEngine {
  /**
   * @param {object} manifest  from runtime/models.js loadManifest
   * @param {import('../runtime/models.js').ModelStore} store
   */
  constructor(manifest, store) {
    this.manifest = manifest;
    this.store = store;
    this.tails = new Map();
    this._chain = Promise.resolve();
  }

  /** Every tail once, before serving: a wrong file stops here, before any sender connects. */
  async load() {
    for (const s of this.manifest.splits) this.tails.set(s.id, await this.store.tail(s.id));
  }

  /** The latent shape the split's tail takes, or null for a split this manifest lacks. */
  expectedShape(split) {
    return this.manifest.splits.find((s) => s.id === split)?.shape ?? null;
  }

  /** The split's per-channel int8 calibration from the manifest (int8-channel frames), or null. */
  channels(split) {
    return this.manifest.splits.find((s) => s.id === split)?.calibration?.int8_channel ?? null;
  }

  /** @returns {Promise<TailResult>} */
  infer(split, tensor) {
    const run = async () => {
      const started = performance.now();
      const { data } = await this.tails.get(split).run(tensor);
      const tailMs = performance.now() - started;
      const logits = Array.from(data);
      return { label: argmax(logits), logits, probs: softmax6(logits), tailMs, started };
    };
    const p = this._chain.then(run);
    this._chain = p.catch(() => {});
    return p;
  }

  /** Recent tail run times (ms) of every split. */
  tailTimes() {
    return [...this.tails.values()].flatMap((r) => r.times);
  }
}
