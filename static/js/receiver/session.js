/**
 * One sender's session on a receiver page: its data channel, reassembly, decoding, and its
 * latest frame. The browser twin of `receiver/session.py`.
 *
 * Real time means the newest frame wins: a session holds at most one frame waiting for the
 * tail. A frame still waiting when a newer one completes is answered with a `drop` (reason
 * `stale`) instead of being queued, so latency never builds up and the sender can still
 * account for it. Every frame gets exactly one reply, drop or error; a malformed message
 * gets an error with the decoder's code and is counted, and the session carries on.
 *
 * Liveness (docs/wire-format.md): the session pings its sender every 0.5 s, answers its
 * pings, and reports the sender lost (`onClose`) after 2 s without any message from it.
 *
 * Bounds (receiver/limits.js, as receiver/session.py): a sender whose malformed messages
 * outrun its {@link MalformedBudget} (20/s after a burst of 200), or that leaves 1 MiB of our
 * replies unread, is ended once (`onClose(why, {abuse: true})`; the page closes and bans
 * it); malformed messages reach the console through a {@link RateLimitedLog}, one line per
 * kind and interval plus a summary, never one line per message. {@link SenderSession#tick}
 * says when an offer has not become an open channel within `offerTimeoutMs`.
 * @module session
 */
import { Liveness } from '../rtc/liveness.js';
import { LIMITS, MalformedBudget, offerVerdict } from './limits.js';
import { RateLimitedLog } from './lograte.js';
import { ChannelCounter } from '../rtc/stats.js';
import { decodeLatent, maxPayloadLen } from '../wire/codecs.js';
import { FrameError, Reassembler, decodeFrame } from '../wire/frame.js';
import { MessageError, dumps, errorFor, parse } from '../wire/messages.js';

const round3 = (v) => Math.round(v * 1000) / 1000;

/** Every message and frame of a session ends up in exactly one of these outcomes. */
export function newCounters() {
  return { messages: 0, frames: 0, inferred: 0, replied: 0, dropped_stale: 0, dropped_incomplete: 0, malformed: 0,
    pings: 0 };
}

export class SenderSession {
  /**
   * @param {string} peerId the sender's Socket.IO id
   * @param {string} name   its name in the room
   * @param {import('./engine.js').TailEngine} engine
   * @param {{onReply?: (session: SenderSession, reply: object) => void,
   *          onClose?: (why: string, info: {abuse: boolean}) => void,
   *          limits?: Readonly<import('./limits.js').Limits>, key?: string,
   *          log?: {warn: Function, info: Function}}} [hooks]
   *   onReply: after each reply is sent; onClose: the channel closed, the sender went silent,
   *   or (abuse: true) it spent its malformed budget or left replies unread: the page closes
   *   the session, called once; limits: receiver/limits.js (defaults: python -m receiver's);
   *   key: the session's name at the page (the sender id unless it holds several)
   */
  constructor(peerId, name, engine, { onReply = null, onClose = null, limits = LIMITS, key = peerId, log = console } = {}) {
    this.peerId = peerId;
    this.key = key;
    this.name = name;
    this.limits = limits;
    this.created = performance.now();
    /** Whether the data channel has opened (an offer that never gets there is torn down). */
    this.opened = false;
    /** Why the session asked to be closed, once it has (null while it serves). */
    this.ended = null;
    this.engine = engine;
    this.onReply = onReply;
    this.onClose = onClose;
    this.channel = null;
    this.counters = newCounters();
    this.lastLabel = '';
    this.lastSplit = '';
    this.lastReply = null;
    this.io = new ChannelCounter(`${peerId}:DC`); // survives the channel's getStats entry
    this.closed = false;
    // the limit runs before a frame's buffer is allocated: the split and shape must be ones
    // this receiver serves, and nothing a sender declares makes us allocate more than that
    // shape, its dtype and codec need (as receiver/session.py does)
    this._reasm = new Reassembler((h) => this._limit(h));
    this._pending = null;
    this._busy = false;
    this._decoding = Promise.resolve(); // frames decode one after another: order is kept
    this._budget = new MalformedBudget(limits.malformedRate, limits.malformedBurst);
    this._bad = new RateLimitedLog(log, `peer ${peerId}: malformed message`, limits.logIntervalMs);
    this.liveness = new Liveness({
      send: (text) => this._sendText(text),
      onLost: (ms) => this.end(`no message from the sender for ${Math.round(ms)} ms`),
      intervalMs: limits.pingIntervalMs,
      silenceMs: limits.peerTimeoutMs,
    });
  }

  /**
   * Take `channel` as the session's latent channel; false (and the channel closed) when it
   * already has one: a sender gets one channel per connection, as in Python.
   */
  attach(channel) {
    if (this.channel !== null) {
      channel.close();
      return false;
    }
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.onmessage = (e) => { this.io.received(e.data); this.onMessage(e.data); };
    channel.onclose = () => this.end('data channel closed');
    const opened = () => { this.opened = true; this.liveness.start(); };
    if (channel.readyState === 'open') opened();
    else channel.addEventListener('open', opened, { once: true });
    return true;
  }

  /**
   * Once in a while (the page's ticker): closes the malformed log's interval, and says why
   * the session must end now (its offer never became an open channel), or null.
   */
  tick(now = performance.now()) {
    this._bad.tick();
    if (this.ended !== null) return this.ended;
    return offerVerdict(this.created, this.opened, now, this.limits);
  }

  /** Stop answering and ask the page to close the session; only the first reason counts. */
  end(why, { abuse = false } = {}) {
    if (this.ended !== null) return;
    this.ended = why;
    this.onClose?.(why, { abuse });
  }

  onMessage(data) {
    const received = performance.now();
    this.liveness.heard(received);
    if (this.ended !== null) return; // being closed: nothing more is answered
    if (typeof data === 'string') {
      this._onText(data, received);
      return;
    }
    this.counters.messages += 1;
    let res;
    try {
      const { header, payload } = decodeFrame(data);
      res = this._reasm.push(header, payload);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this._abandon(err.abandoned);
      this._refuse(err);
      return;
    }
    this._abandon(res.abandoned);
    if (res.frame) {
      const { header, payload } = res.frame;
      this._decoding = this._decoding.then(() => this._accept(header, payload, received))
        .catch((e) => console.error(`peer ${this.peerId}: frame ${header.seq} failed`, e));
    }
  }

  /** ping/pong are liveness; any other text is refused as `bad_type` (as in Python). */
  _onText(text, now) {
    let msg = null;
    try {
      msg = parse(text);
    } catch (err) {
      if (!(err instanceof MessageError)) throw err;
    }
    if (msg !== null && this.liveness.onMessage(msg, now)) {
      this.counters.pings += 1;
      return;
    }
    this.counters.messages += 1;
    this._refuse(new FrameError('bad_type', 'text message where a binary latent frame was expected'));
  }

  _abandon(h) {
    if (!h) return;
    this.counters.dropped_incomplete += 1;
    this._send({ type: 'drop', seq: h.seq, capture_ms: h.captureMs, reason: 'incomplete' });
  }

  /** The largest payload a frame may declare, or FrameError for a split or shape we do not serve. */
  _limit(h) {
    const expected = this.engine.expectedShape(h.split);
    if (expected === null) {
      throw new FrameError('unknown_split', `split "${h.split}" is not in this receiver's manifest ` +
        `(${this.engine.manifest.splits.map((s) => s.id).join(', ')})`, h.seq);
    }
    if (h.shape.join(',') !== expected.join(',')) {
      throw new FrameError('shape_mismatch', `split ${h.split} takes [${expected}], frame has [${h.shape}]`, h.seq);
    }
    return maxPayloadLen(h);
  }

  async _accept(h, payload, received) {
    if (this.closed) return;
    let tensor;
    try {
      tensor = await decodeLatent(h, payload, { channels: this.engine.channels(h.split) });
    } catch (err) {
      // a calibration the codec refuses (TypeError/RangeError) is a parameter problem too
      this._refuse(err instanceof FrameError ? err : new FrameError('bad_params', err.message, h.seq));
      return;
    }
    this.counters.frames += 1;
    if (this._pending !== null) { // newest wins: the waiting frame is answered, not queued
      const old = this._pending.header;
      this.counters.dropped_stale += 1;
      this._send({ type: 'drop', seq: old.seq, capture_ms: old.captureMs, reason: 'stale' });
    }
    this._pending = { header: h, tensor, received, decodeMs: performance.now() - received };
    if (!this._busy) this._run();
  }

  async _run() {
    this._busy = true;
    try {
      while (this._pending !== null && !this.closed) {
        const job = this._pending;
        this._pending = null;
        let r;
        try {
          r = await this.engine.infer(job.header.split, job.tensor);
        } catch (e) {
          console.error(`peer ${this.peerId}: tail failed on seq ${job.header.seq}`, e);
          this._send({ type: 'error', seq: job.header.seq, reason: 'tail_failed', detail: String(e?.message ?? e) });
          continue;
        }
        this.counters.inferred += 1;
        this._reply(job, r);
      }
    } finally {
      this._busy = false;
    }
  }

  _reply(job, r) {
    const h = job.header;
    const name = this.engine.manifest.classes[r.label];
    this.lastLabel = name;
    this.lastSplit = h.split;
    const now = performance.now();
    const msg = { type: 'reply', seq: h.seq, capture_ms: h.captureMs, split: h.split, label: r.label, name,
      logits: r.logits, probs: r.probs,
      timing: { decode_ms: round3(job.decodeMs), queue_ms: round3(r.started - job.received),
        tail_ms: round3(r.tailMs), total_ms: round3(now - job.received) } };
    this.lastReply = msg;
    if (this._send(msg)) {
      this.counters.replied += 1;
      this.onReply?.(this, msg);
    }
  }

  _refuse(err) {
    this.counters.malformed += 1;
    this._bad.event(err.code, `seq ${err.seq}: ${err.message}`);
    this._send(errorFor(err));
    if (!this._budget.spend()) {
      const secs = ((performance.now() - this.created) / 1000).toFixed(1);
      this.end(`malformed messages faster than ${this.limits.malformedRate}/s after a burst of ` +
        `${this.limits.malformedBurst} (${this.counters.malformed} in ${secs} s)`, { abuse: true });
    }
  }

  /** Send one message; a reply JSON cannot carry (non-finite logits: a model bug) becomes an error. */
  _send(msg) {
    let text;
    try {
      text = dumps(msg);
    } catch (e) {
      console.error(`peer ${this.peerId}: cannot send ${msg.type} for seq ${msg.seq}: ${e.message}`);
      text = dumps({ type: 'error', seq: msg.seq ?? null, reason: 'tail_failed', detail: 'non-finite output' });
      this._sendText(text);
      return false;
    }
    return this._sendText(text);
  }

  _sendText(text) {
    const ch = this.channel;
    if (!ch || ch.readyState !== 'open') return false;
    if (ch.bufferedAmount > this.limits.maxBuffered) {
      this.end(`${ch.bufferedAmount} bytes of replies left unread (limit ${this.limits.maxBuffered})`, { abuse: true });
      return false;
    }
    ch.send(text);
    this.io.sent(text);
    return true;
  }

  summary() { return { ...this.counters }; }

  close() {
    this.closed = true;
    this._pending = null;
    this.liveness.stop();
    this._bad.flush();
  }
}
