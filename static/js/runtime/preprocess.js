/**
 * Camera frame -> model input, the browser twin of `splitcore/runtime/preprocess.py`.
 *
 * The model takes [1, 3, 32, 32] float32 RGB in [0, 1] (normalisation is inside the graph).
 * Scaling matches Python exactly: a uint8 value v becomes the float32 nearest to v / 255
 * (numpy divides in float32, which is correctly rounded; so is storing the double v / 255
 * into a Float32Array), so equal pixels give bit-identical tensors on both sides.
 *
 * `rgbaToInput` is pure (node-tested); `CanvasPreprocessor` is the browser's per-frame path:
 * drawImage into a 32x32 canvas (the browser's resize, not OpenCV's INTER_AREA: see
 * bench/resize_study.py), getImageData, then `rgbaToInput` into one preallocated tensor.
 * @module preprocess
 */

export const INPUT_SIZE = 32;
export const INPUT_CHANNELS = 3;

/** SCALE[v] = float32(v / 255), the same 256 values as numpy's float32 division. */
export const SCALE = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = v / 255;
  return t;
})();

/**
 * RGBA pixels (ImageData layout, row-major, 4 bytes per pixel) -> planar RGB float32
 * (CHW) in [0, 1], written into `out` (allocated when not given or of the wrong length).
 * Alpha is ignored, as a camera frame is opaque.
 * @param {Uint8ClampedArray|Uint8Array} data RGBA bytes, length >= width * height * 4
 * @param {number} width
 * @param {number} height
 * @param {Float32Array} [out] length 3 * width * height
 * @returns {Float32Array}
 */
export function rgbaToInput(data, width, height, out) {
  const plane = width * height;
  if (!Number.isInteger(plane) || plane < 1) throw new RangeError(`bad size ${width}x${height}`);
  if (data.length < plane * 4) {
    throw new RangeError(`${data.length} bytes is less than ${width}x${height} RGBA (${plane * 4})`);
  }
  const dst = out instanceof Float32Array && out.length === plane * 3 ? out : new Float32Array(plane * 3);
  for (let i = 0, p = 0; i < plane; i++, p += 4) {
    dst[i] = SCALE[data[p]];
    dst[plane + i] = SCALE[data[p + 1]];
    dst[2 * plane + i] = SCALE[data[p + 2]];
  }
  return dst;
}

/**
 * Planar RGB float32 in [0, 1] -> RGBA bytes (for showing an input tensor, and for tests):
 * the inverse of rgbaToInput for values it produced.
 * @param {Float32Array|number[]} input length 3 * width * height
 * @param {number} width
 * @param {number} height
 * @returns {Uint8ClampedArray}
 */
export function inputToRgba(input, width, height) {
  const plane = width * height;
  const out = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) {
    out[4 * i] = Math.round(input[i] * 255);
    out[4 * i + 1] = Math.round(input[plane + i] * 255);
    out[4 * i + 2] = Math.round(input[2 * plane + i] * 255);
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Values accepted for CanvasRenderingContext2D.imageSmoothingQuality, plus "off". */
export const SMOOTHING = Object.freeze(['low', 'medium', 'high', 'off']);

/**
 * The browser's per-frame path: one canvas of size x size, one tensor, reused every frame.
 * The tensor returned by `capture` is overwritten by the next call: copy what you keep.
 */
export class CanvasPreprocessor {
  /**
   * @param {HTMLCanvasElement|OffscreenCanvas} canvas the size x size canvas to draw into
   * @param {{size?: number, smoothing?: string}} [opts] smoothing: low (the browser's
   *   default), medium, high, or off (nearest neighbour)
   */
  constructor(canvas, { size = INPUT_SIZE, smoothing = 'low' } = {}) {
    if (!SMOOTHING.includes(smoothing)) {
      throw new RangeError(`smoothing must be one of ${SMOOTHING.join(', ')}, not ${smoothing}`);
    }
    canvas.width = size;
    canvas.height = size;
    this.size = size;
    this.smoothing = smoothing;
    this.ctx = canvas.getContext('2d', { willReadFrequently: true, alpha: false });
    this.ctx.imageSmoothingEnabled = smoothing !== 'off';
    if (smoothing !== 'off') this.ctx.imageSmoothingQuality = smoothing;
    this.tensor = new Float32Array(INPUT_CHANNELS * size * size);
  }

  /**
   * Resize `source` (a playing <video>, an ImageBitmap, a canvas...) to size x size and
   * return the [1, 3, size, size] tensor (flat, CHW).
   */
  capture(source) {
    const s = this.size;
    this.ctx.drawImage(source, 0, 0, s, s);
    const { data } = this.ctx.getImageData(0, 0, s, s);
    return rgbaToInput(data, s, s, this.tensor);
  }
}
