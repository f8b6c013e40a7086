/**
 * The per-frame path of the sender page, top to bottom: capture -> preprocess -> head ->
 * encode -> send. The browser twin of `sender/pipeline.py`.
 *
 * Each step hands the next a typed value: a {@link HeadOutput} (the latent, its input and
 * when the head finished), an {@link Encoded} frame (the data-channel messages and what the
 * ledger needs to account for them). There is no frame queue anywhere: the loop captures a
 * frame only when it is ready for one; if compute falls behind, the pacer skips capture
 * deadlines (counted as `stale`), and a frame that cannot go out (no receiver, channel
 * backed up or closing) is dropped before the head runs and counted with that reason, so
 * latency cannot build up behind old frames. Where frames go is the {@link Outlet}'s
 * business (`sender/stream.js`: which receiver, whether it is alive); this module only asks.
 *
 * `?split=adaptive`: `sender/switching.js` replaces {@link Pipeline#choice} (split, codec,
 * head) in one assignment; each frame reads it once before its head runs, so every frame is
 * made and labelled by one point, and its head and encode times go back to the controller.
 * @module pipeline
 */
import { encodeLatent, parseCodec } from '../wire/codecs.js';
import { encodeFrame } from '../wire/frame.js';
import { Pacer } from './pacer.js';

/** Head times kept for the median the page shows. */
const KEEP_HEAD_MS = 600;

/**
 * What the head made of one frame. `latent` is onnxruntime-web's output buffer; `input` is
 * the preprocessor's reused tensor, valid until the next capture.
 * @typedef {object} HeadOutput
 * @property {string} split
 * @property {string} head            "float32" or "int8" ('' for a fixed split: its float32 head)
 * @property {number} headMs          the head alone, ms
 * @property {Float32Array} input     [1,3,32,32], CHW
 * @property {Float32Array} latent
 * @property {number[]} dims          the latent's shape
 * @property {number} captureMs       performance.now() when the frame was captured
 * @property {number} headDoneMs      performance.now() when the head finished
 */

/**
 * One frame ready for the channel: its messages (fragments, header on each) and its
 * identity for the ledger.
 * @typedef {object} Encoded
 * @property {number} seq             u32, as on the wire
 * @property {number} captureMs
 * @property {Uint8Array[]} messages
 * @property {string} split
 * @property {string} codec
 * @property {string} head            '' unless a {@link Choice} made it
 * @property {number} headMs
 * @property {number} encodeMs
 */

/**
 * The operating point the next frame uses (`?split=adaptive`), set by `sender/switching.js`.
 * @typedef {object} Choice
 * @property {string} split
 * @property {string} codec           a codec name (wire/codecs.js)
 * @property {string} head            "float32" or "int8"
 */

/**
 * Where frames go (`sender/stream.js`'s SenderStream): `channelForFrame()` gives the open
 * channel to send on now, or the reason this frame is dropped (`no_receiver`,
 * `channel_closed`, `backpressure`); `stopping` ends the loop.
 * @typedef {object} Outlet
 * @property {boolean} stopping
 * @property {() => (RTCDataChannel|string)} channelForFrame
 * @property {(ch: RTCDataChannel) => boolean} stillOpen  whether `ch` is still the channel
 *   to send on (the receiver may be lost while the head runs)
 * @property {(ch: RTCDataChannel, m: Uint8Array) => void} send  one message, counted
 */

/**
 * @typedef {object} PipelineOptions
 * @property {() => string} split     the split to use for the next frame (switchable live)
 * @property {string} [codec]         latent codec name (codecs.js), default float32
 * @property {number} [frames]        stop after this many sent; 0: until stopped
 * @property {number} [fps]           capture rate, at most 60
 * @property {((seq: number, input: Float32Array) => void)|null} [onInput]  each sent
 *   frame's input tensor (test hooks; copies are the caller's business)
 */

export class Pipeline {
  /**
   * @param {{capture: (source: any) => Float32Array}} pre   runtime/preprocess.js CanvasPreprocessor
   * @param {any} source               what `pre` captures from (the <video>)
   * @param {{manifest: object, head: (split: string, head?: string) => Promise<any>}} store  heads,
   *   loaded once each (runtime/models.js ModelStore; `head` "int8" for the quantized head)
   * @param {import('./ledger.js').Ledger} ledger
   * @param {PipelineOptions} opts
   */
  constructor(pre, source, store, ledger, opts) {
    this.pre = pre;
    this.source = source;
    this.store = store;
    this.ledger = ledger;
    this.opts = { codec: 'float32', frames: 0, fps: 30, onInput: null, ...opts };
    this.pacer = new Pacer(Math.min(this.opts.fps, 60));
    this.seq = 0;
    /** Data-channel messages and bytes that carried frames (the channel also carries ping/pong). */
    this.frameMessages = 0;
    this.frameBytes = 0;
    /** ms of the recent head runs. */
    this.headMs = [];
    this._specs = new Map(); // "split/codec" -> CodecSpec (its calibration is the split's)
    /** @type {Choice|null} set by the adaptive controller; null: opts.split() and opts.codec, float32 head */
    this.choice = null;
    /** @type {((frame: Encoded) => void)|null} cost samples for the controller (adaptive frames) */
    this.onEncoded = null;
  }

  /** The codec `codec` of `split`, parsed once with the split's calibration from the manifest. */
  codecFor(split, codec = this.opts.codec) {
    const key = `${split}/${codec}`;
    let spec = this._specs.get(key);
    if (spec === undefined) {
      const sp = this.store.manifest.splits.find((x) => x.id === split);
      spec = parseCodec(codec, sp?.calibration ?? null);
      this._specs.set(key, spec);
    }
    return spec;
  }

  /**
   * 1-3. Capture, preprocess and run the head (`head` "int8": the quantized one).
   * @returns {Promise<HeadOutput>}
   */
  async infer(split, head = '') {
    const captureMs = performance.now();
    const input = this.pre.capture(this.source);
    const runner = await (head ? this.store.head(split, head) : this.store.head(split));
    const { data: latent, dims } = await runner.run(input);
    this.headMs.push(runner.lastMs);
    if (this.headMs.length > KEEP_HEAD_MS) this.headMs.shift();
    return { split, head, headMs: runner.lastMs, input, latent, dims, captureMs, headDoneMs: performance.now() };
  }

  /**
   * 4. Quantize/compress the latent and split it into data-channel messages.
   * @param {HeadOutput} out
   * @param {string} [codec] the codec's name (default: the page's)
   * @returns {Promise<Encoded>}
   */
  async encode(out, codec = this.opts.codec) {
    const seq = this.seq >>> 0; // u32 on the wire, wrapping like Python's seq & 0xFFFFFFFF
    const t0 = performance.now();
    const enc = await encodeLatent(out.latent, out.dims, this.codecFor(out.split, codec));
    const messages = encodeFrame({ seq, captureMs: out.captureMs, split: out.split, shape: out.dims, ...enc }, enc.payload);
    return { seq, captureMs: out.captureMs, messages, split: out.split, codec, head: out.head, headMs: out.headMs,
      encodeMs: performance.now() - t0 };
  }

  /** 5. Hand every fragment to the channel, then open the frame's account. */
  send(outlet, channel, frame, slotIndex) {
    let nbytes = 0;
    for (const m of frame.messages) nbytes += m.byteLength;
    if (frame.head) { // adaptive: each record names the frame's point; the ledger counts its bytes
      this.ledger.onSent(frame.seq, frame.captureMs, performance.now(), slotIndex,
        { point: [frame.split, frame.codec, frame.head], nbytes });
    } else {
      this.ledger.onSent(frame.seq, frame.captureMs, performance.now(), slotIndex);
    }
    for (const m of frame.messages) outlet.send(channel, m);
    this.frameBytes += nbytes;
    this.frameMessages += frame.messages.length;
    this.seq += 1;
    if (frame.head) this.onEncoded?.(frame);
  }

  /**
   * Stream into `outlet` until `opts.frames` are sent or `outlet.stopping`.
   * @param {Outlet} outlet
   */
  async run(outlet) {
    const led = this.ledger;
    while (!outlet.stopping) {
      const slot = await this.pacer.wait();
      if (slot.skipped) led.onSkipped(slot.skipped);
      led.onCaptured();
      const target = outlet.channelForFrame();
      if (typeof target === 'string') { // dropped before the head: nothing is spent on it
        led.dropBeforeSend(target);
        continue;
      }
      const choice = this.choice; // one read: the point this frame uses
      const out = choice === null ? await this.infer(this.opts.split()) : await this.infer(choice.split, choice.head);
      if (!outlet.stillOpen(target)) { // the receiver was lost while the head ran
        led.dropBeforeSend(outlet.channelForFrame() === 'no_receiver' ? 'no_receiver' : 'channel_closed');
        continue;
      }
      const frame = await this.encode(out, choice === null ? this.opts.codec : choice.codec);
      if (!outlet.stillOpen(target)) { // ... or while a compressor ran
        led.dropBeforeSend('channel_closed');
        continue;
      }
      this.opts.onInput?.(frame.seq, out.input);
      this.send(outlet, target, frame, slot.index);
      if (this.opts.frames && led.sent >= this.opts.frames) break;
    }
  }
}
