/**
 * Frames released on a fixed grid of deadlines, late ones dropped and counted, never queued:
 * the browser twin of `sender.capture.Pacer` (same arithmetic, so both senders drop alike).
 * @module pacer
 */

export class Pacer {
  /**
   * @param {number} fps target frame rate
   * @param {() => number} [clock] ms, monotonic (performance.now in the browser)
   */
  constructor(fps = 30, clock = () => performance.now()) {
    if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`fps must be a positive finite number, not ${fps}`);
    this.fps = fps;
    this.periodMs = 1000 / fps;
    this.clock = clock;
    this.dropped = 0;
    this.released = 0;
    this._start = null;
    this._k = 0;
  }

  /**
   * Plan the next release at time `now` (ms): {index, delayMs, skipped}. When more than one
   * period late, jumps to the newest deadline already passed; the ones in between are
   * counted in `dropped` (those frames are gone; the stream stays current).
   */
  schedule(now) {
    let skipped = 0;
    if (this._start === null) {
      this._start = now;
    } else {
      this._k += 1;
      const late = now - this._deadline();
      if (late > this.periodMs) {
        skipped = Math.floor(late / this.periodMs);
        this._k += skipped;
        this.dropped += skipped;
      }
    }
    this.released += 1;
    return { index: this._k, delayMs: Math.max(0, this._deadline() - now), skipped };
  }

  _deadline() {
    return this._start + this._k * this.periodMs; // multiplied out: no accumulated rounding
  }

  /** Sleep until the next deadline; resolves with the slot. */
  async wait() {
    const slot = this.schedule(this.clock());
    if (slot.delayMs > 0) await new Promise((r) => setTimeout(r, slot.delayMs));
    return slot;
  }
}
