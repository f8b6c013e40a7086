/**
 * Operating points: which split, codec and head to use for an accuracy budget. The browser
 * twin of `splitcore/runtime/operating.py`.
 *
 * `models/operating_points.json` is written from the split study (`bench/study.py`, then
 * `python -m splitcore.offline.operating`) and shipped with the models, so an accuracy
 * budget (`maxDrop`) chooses from measured figures, never from guesses: the fewest payload
 * bytes per frame whose top-1 accuracy on the CIFAR-10 test set is within `maxDrop` points
 * of the full float32 model.
 *
 * Where the privacy study (`python -m training.privacy`) attacked a point, it carries its
 * `leakage`: the worst case over the attacks (the highest SSIM of their reconstructions of
 * test images), so `maxSsim` limits what an attacker who holds the latents could see (He et
 * al. count SSIM below 0.3 as unrecognisable). A point never attacked has no figure and is
 * refused under a limit: unmeasured is not private.
 *
 * No onnxruntime here (unlike runtime/models.js), so node's tests load this module as is.
 * @module operating
 */

/** Compressions every receiver decodes (splitcore.wire.codecs.PORTABLE_COMPRESSORS: browsers have no zstd). */
export const PORTABLE_COMPRESSORS = Object.freeze(['zlib']);

/** A missing or malformed operating-points file, phrased for the person looking at the page. */
export class OperatingPointsError extends Error {
  constructor(message) { super(message); this.name = 'OperatingPointsError'; }
}

/** Python's float(x): a finite number, or a TypeError naming `what`. */
function num(x, what) {
  const v = typeof x === 'number' ? x : (typeof x === 'string' && x.trim() !== '' ? Number(x) : NaN);
  if (!Number.isFinite(v)) throw new TypeError(`${what} must be a number, got ${JSON.stringify(x)}`);
  return v;
}

function str(x, what) {
  if (typeof x !== 'string') throw new TypeError(`${what} must be a string, got ${JSON.stringify(x)}`);
  return x;
}

/** The best inversion attack on a point's latents (`results/privacy.json`). */
export class Leakage {
  /**
   * @param {number} ssim        structural similarity of its reconstructions (1: the frame itself)
   * @param {number} psnrDb
   * @param {number} reconTop1   the full model's top-1 on the reconstructions
   * @param {string} attack      which attack reached `ssim` ("inverse", "whitebox-rml")
   */
  constructor(ssim, psnrDb, reconTop1, attack) {
    this.ssim = ssim;
    this.psnrDb = psnrDb;
    this.reconTop1 = reconTop1;
    this.attack = attack;
    Object.freeze(this);
  }

  /** From the file's object; null when absent (never attacked). */
  static parse(raw) {
    if (raw === null || raw === undefined) return null;
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      throw new TypeError(`leakage must be an object, got ${Array.isArray(raw) ? 'array' : typeof raw}`);
    }
    return new Leakage(num(raw.ssim, 'leakage.ssim'), num(raw.psnr_db, 'leakage.psnr_db'),
      num(raw.recon_top1, 'leakage.recon_top1'), String(str(raw.attack, 'leakage.attack')));
  }

  /** The file's (and the app stats') names. */
  asDict() { return { ssim: this.ssim, psnr_db: this.psnrDb, recon_top1: this.reconTop1, attack: this.attack }; }
}

export class OperatingPoint {
  /**
   * @param {string} split
   * @param {string} codec
   * @param {string} head            "float32" or "int8"
   * @param {number} payloadBytes    mean bytes a frame on the data channel (headers included)
   * @param {number} top1            on the 10,000 test images
   * @param {Leakage|null} [leakage] null: never attacked
   */
  constructor(split, codec, head, payloadBytes, top1, leakage = null) {
    this.split = split;
    this.codec = codec;
    this.head = head;
    this.payloadBytes = payloadBytes;
    this.top1 = top1;
    this.leakage = leakage;
    Object.freeze(this);
  }

  get key() { return `${this.split}/${this.codec}/${this.head}`; }

  /** Within the leakage limit (no limit: always); an unmeasured point never is. */
  private(maxSsim) {
    return maxSsim === null || maxSsim === undefined || (this.leakage !== null && this.leakage.ssim <= maxSsim);
  }

  describe(fullTop1) {
    const leak = this.leakage !== null ? `, attack SSIM ${this.leakage.ssim.toFixed(2)}` : ', leakage not measured';
    const drop = (this.top1 - fullTop1) * 100;
    return `split ${this.split}, codec ${this.codec}, ${this.head} head: ` +
      `${Math.round(this.payloadBytes).toLocaleString('en-US')} B/frame, top-1 ${(this.top1 * 100).toFixed(2)}% ` +
      `(${drop >= 0 ? '+' : ''}${drop.toFixed(2)} points vs the full model)${leak}`;
  }
}

export class OperatingPoints {
  /**
   * @param {number} fullTop1
   * @param {OperatingPoint[]} points
   * @param {string} [source]
   */
  constructor(fullTop1, points, source = '') {
    this.fullTop1 = fullTop1;
    this.points = Object.freeze([...points]);
    this.source = source;
    Object.freeze(this);
  }

  /**
   * The parsed file (`raw`: its JSON value); `where` names it in the error.
   * @throws {OperatingPointsError}
   */
  static fromJSON(raw, where = 'operating_points.json') {
    try {
      if (!raw || typeof raw !== 'object' || !Array.isArray(raw.points)) throw new TypeError('no "points" list');
      const pts = raw.points.map((p, i) => {
        if (!p || typeof p !== 'object') throw new TypeError(`point ${i} is not an object`);
        return new OperatingPoint(str(p.split, `points[${i}].split`), str(p.codec, `points[${i}].codec`),
          str(p.head, `points[${i}].head`), num(p.payload_bytes, `points[${i}].payload_bytes`),
          num(p.top1, `points[${i}].top1`), Leakage.parse(p.leakage));
      });
      return new OperatingPoints(num(raw.full_top1, 'full_top1'), pts, typeof raw.source === 'string' ? raw.source : '');
    } catch (e) {
      throw new OperatingPointsError(`${where} is not a valid operating-points file: ${e.message}`);
    }
  }

  /**
   * Fetch and parse `models/operating_points.json` (served next to the manifest).
   * @throws {OperatingPointsError}
   */
  static async load(url = '/models/operating_points.json') {
    let res;
    try {
      res = await fetch(url, { cache: 'no-cache' });
    } catch (e) {
      throw new OperatingPointsError(`cannot fetch the operating points ${url}: ${e.message}`);
    }
    if (!res.ok) {
      throw new OperatingPointsError(`no operating points at ${url} (HTTP ${res.status}): run the study ` +
        '(python -m bench.study) and python -m splitcore.offline.operating on the server, or choose a split');
    }
    let raw;
    try {
      raw = await res.json();
    } catch (e) {
      throw new OperatingPointsError(`${url} is not a valid operating-points file: ${e.message}`);
    }
    return OperatingPoints.fromJSON(raw, url);
  }

  /** The point of that split, codec and head, if the study measured it (else null). */
  find(split, codec, head) {
    return this.points.find((p) => p.split === split && p.codec === codec && p.head === head) ?? null;
  }

  /**
   * Fewest bytes with top-1 >= full - maxDrop points; ties go to the higher accuracy.
   * `portable` keeps to codecs every receiver decodes (browsers have no zstd).
   * @param {number} maxDrop
   * @param {{splits?: Set<string>|string[]|null, int8Head?: boolean|null, portable?: boolean,
   *          maxSsim?: number|null}} [opts]
   * @returns {OperatingPoint}
   */
  choose(maxDrop, { splits = null, int8Head = null, portable = true, maxSsim = null } = {}) {
    const floor = this.fullTop1 - maxDrop / 100.0;
    const within = splits === null ? null : new Set(splits);
    const ok = this.points.filter((p) => p.top1 >= floor - 1e-12
      && (within === null || within.has(p.split))
      && (int8Head === null || (p.head === 'int8') === int8Head)
      && (!portable || isPortable(p.codec)) && p.private(maxSsim));
    if (!ok.length) {
      const leak = maxSsim !== null ? ` with attack SSIM <= ${maxSsim}` : '';
      throw new OperatingPointsError(`no operating point within ${maxDrop} points of the full model's ` +
        `${(this.fullTop1 * 100).toFixed(2)}%${leak}`);
    }
    let best = ok[0];
    for (const p of ok) {
      if (p.payloadBytes < best.payloadBytes || (p.payloadBytes === best.payloadBytes && p.top1 > best.top1)) best = p;
    }
    return best;
  }
}

/** A codec every receiver decodes: no compression, or a portable one (Python's `_portable`). */
export function isPortable(codec) {
  const i = codec.indexOf('+');
  return i < 0 || PORTABLE_COMPRESSORS.includes(codec.slice(i + 1));
}
