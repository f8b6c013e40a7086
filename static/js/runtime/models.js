/**
 * The model manifest and the onnxruntime-web sessions of a page: the browser twin of
 * `splitcore/runtime/models.py`.
 *
 * Every model file is fetched once, its sha256 checked against models/manifest.json (a
 * mismatch is refused with a message that names the file and what to do, never discovered
 * later as a wrong label), and turned into ONE InferenceSession for the life of the page.
 * Sessions are created lazily per file (a sender only needs the heads it uses) and cached,
 * so switching splits back and forth never creates a session twice.
 *
 * onnxruntime-web comes from our own server (/vendor/onnxruntime-web/, npm package): no CDN.
 * It runs on WASM; it uses threads only when the page is cross-origin isolated (our server
 * sends COOP/COEP), otherwise one thread.
 * @module models
 */
import * as ort from '/vendor/onnxruntime-web/ort.wasm.min.mjs';
import { sha256Hex } from '../wire/sha256.js';

export { ort };

const WASM_BASE = '/vendor/onnxruntime-web/';

/** A model file or manifest problem, phrased for the person looking at the page. */
export class ModelError extends Error {
  constructor(message) { super(message); this.name = 'ModelError'; }
}

/**
 * Configure onnxruntime-web once, before the first session.
 * @param {{threads?: number}} [opts] threads: 0 = onnxruntime-web's default
 * @returns {ReturnType<typeof ortInfo>}
 */
export function configureOrt({ threads = 0 } = {}) {
  ort.env.wasm.wasmPaths = WASM_BASE;
  if (threads > 0) ort.env.wasm.numThreads = threads;
  if (!globalThis.crossOriginIsolated) ort.env.wasm.numThreads = 1; // threads need isolation
  ort.env.logLevel = 'warning';
  return ortInfo();
}

/**
 * What onnxruntime-web runs on, for the page (numThreads is settled once the first session
 * exists: onnxruntime-web's default is min(4, cores / 2) when isolated, else 1).
 */
export function ortInfo() {
  return { backend: 'wasm', crossOriginIsolated: !!globalThis.crossOriginIsolated,
    threads: ort.env.wasm.numThreads ?? 0, hardwareConcurrency: globalThis.navigator?.hardwareConcurrency ?? 0,
    version: ort.env.versions?.web ?? '' };
}

/** ortInfo() as one line. */
export function describeOrt(info = ortInfo()) {
  return `${info.version ? `${info.version} ` : ''}wasm, ${info.threads || 'default'} thread(s), ` +
    (info.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated (1 thread)');
}

/** Fetch and check models/manifest.json; returns the parsed object. */
export async function loadManifest(url = '/models/manifest.json') {
  let res;
  try {
    res = await fetch(url, { cache: 'no-cache' });
  } catch (e) {
    throw new ModelError(`cannot fetch the model manifest ${url}: ${e.message}`);
  }
  if (!res.ok) {
    throw new ModelError(`no model manifest at ${url} (HTTP ${res.status}): the server has no ` +
      'models/ yet; run `make train` (or `python -m training.export`) on the server');
  }
  let m;
  try {
    m = await res.json();
  } catch (e) {
    throw new ModelError(`${url} is not JSON: ${e.message}`);
  }
  const ok = m && Array.isArray(m.classes) && m.input?.name && Array.isArray(m.input?.shape)
    && m.full?.file && Array.isArray(m.splits) && m.splits.every((s) => s.id && Array.isArray(s.shape)
      && s.head?.file && s.head?.sha256 && s.tail?.file && s.tail?.sha256);
  if (!ok) throw new ModelError(`${url} is not a valid SplitRTC manifest`);
  return m;
}

/** The manifest's split entry, or a ModelError listing the ones it has. */
export function splitOf(manifest, id) {
  const s = manifest.splits.find((x) => x.id === id);
  if (!s) {
    throw new ModelError(`unknown split "${id}"; this manifest has: ${manifest.splits.map((x) => x.id).join(', ')}`);
  }
  return s;
}

/** One session with a single input and output; `run` takes and returns flat Float32Arrays. */
export class Runner {
  constructor(session, file, inShape) {
    this.session = session;
    this.file = file;
    this.inShape = inShape;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
    /** ms of the last run, and all runs (for p50) */
    this.lastMs = 0;
    this.times = [];
  }

  /**
   * @param {Float32Array} x flat input of shape inShape
   * @returns {Promise<{data: Float32Array, dims: number[]}>}
   */
  async run(x) {
    const t0 = performance.now();
    const out = await this.session.run({ [this.inputName]: new ort.Tensor('float32', x, this.inShape) });
    this.lastMs = performance.now() - t0;
    if (this.times.length >= 600) this.times.shift();
    this.times.push(this.lastMs);
    const t = out[this.outputName];
    return { data: t.data, dims: Array.from(t.dims) };
  }
}

/** Fetches, checks and creates sessions; each model file at most once per page. */
export class ModelStore {
  constructor(manifest, { base = '/models/', onProgress = null } = {}) {
    this.manifest = manifest;
    this.base = base;
    this.onProgress = onProgress;
    /** @type {Map<string, Promise<Runner>>} */
    this._runners = new Map();
  }

  /** The head of a split (input: the manifest's input shape). */
  head(splitId) {
    const s = splitOf(this.manifest, splitId);
    return this._runner(s.head, this.manifest.input.shape, s.shape);
  }

  /** The tail of a split (input: the split's latent shape). */
  tail(splitId) {
    const s = splitOf(this.manifest, splitId);
    return this._runner(s.tail, s.shape, this.manifest.output?.shape ?? null);
  }

  _runner(entry, inShape, outShape) {
    let p = this._runners.get(entry.file);
    if (!p) {
      p = this._create(entry, inShape, outShape);
      p.catch(() => this._runners.delete(entry.file)); // a failed load may be retried
      this._runners.set(entry.file, p);
    }
    return p;
  }

  async _create(entry, inShape, outShape) {
    const url = this.base + entry.file;
    this.onProgress?.(`fetching ${entry.file}…`);
    let res;
    try {
      res = await fetch(url, { cache: 'no-cache' });
    } catch (e) {
      throw new ModelError(`cannot fetch ${url}: ${e.message}`);
    }
    if (!res.ok) throw new ModelError(`model file ${url} is missing (HTTP ${res.status}), though the manifest lists it`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const digest = await sha256Hex(bytes);
    if (digest !== entry.sha256) {
      throw new ModelError(`${entry.file} does not match the manifest: sha256 ${digest.slice(0, 12)}…, ` +
        `expected ${entry.sha256.slice(0, 12)}…; the server's models/ is stale or damaged: ` +
        're-export the models (python -m training.export) and reload');
    }
    this.onProgress?.(`creating session for ${entry.file}…`);
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'],
        graphOptimizationLevel: 'all' });
    } catch (e) {
      throw new ModelError(`onnxruntime-web cannot load ${entry.file}: ${e.message ?? e}`);
    }
    const runner = new Runner(session, entry.file, inShape);
    if (outShape) { // one run on zeros: a wrong file fails here, not on the first frame
      const { dims } = await runner.run(new Float32Array(inShape.reduce((a, b) => a * b, 1)));
      runner.times.length = 0;
      if (dims.join(',') !== outShape.join(',')) {
        throw new ModelError(`${entry.file} outputs [${dims}], the manifest says [${outShape}]`);
      }
    }
    return runner;
  }
}

export { softmax6, argmax } from './numeric.js';
