/**
 * Liveness on a data channel (docs/wire-format.md, `ping` / `pong`): each side pings every
 * 0.5 s and answers a ping at once with a pong carrying the same `t_ms`; a side that has
 * received nothing at all (frame, reply, ping or pong) for 2 s takes the peer for gone.
 *
 * Browsers notice a dead peer through ICE consent checks only after several seconds, and
 * aiortc not before SCTP gives up (30 s or more): this lets both pages find out in 2 s, the
 * same rule as the Python peers.
 * @module liveness
 */
import { dumps } from '../wire/messages.js';

export const PING_INTERVAL_MS = 500;
export const SILENCE_MS = 2000;

export class Liveness {
  /**
   * @param {{send: (text: string) => void, onLost: (silentMs: number) => void,
   *          intervalMs?: number, silenceMs?: number, clock?: () => number}} opts
   *   send: puts a text on the channel (a failure is ignored: the silence rule decides);
   *   onLost: called once, after `silenceMs` without a message
   */
  constructor({ send, onLost, intervalMs = PING_INTERVAL_MS, silenceMs = SILENCE_MS, clock = () => performance.now() }) {
    this.send = send;
    this.onLost = onLost;
    this.intervalMs = intervalMs;
    this.silenceMs = silenceMs;
    this.clock = clock;
    this.lastHeard = clock();
    /** Latest round trip from a pong, ms (null before the first). */
    this.rttMs = null;
    this.pingsSent = 0;
    this.lost = false;
    this._timer = null;
  }

  /** Start pinging; the silence clock starts now. */
  start() {
    if (this._timer !== null || this.lost) return;
    this.lastHeard = this.clock();
    this._timer = setInterval(() => this.tick(), this.intervalMs);
    this.tick();
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
  }

  /** One round: declare the peer lost after the silence, else ping it. */
  tick(now = this.clock()) {
    if (this.lost) return;
    const silent = now - this.lastHeard;
    if (silent > this.silenceMs) {
      this.lost = true;
      this.stop();
      this.onLost(silent);
      return;
    }
    this._send(dumps({ type: 'ping', t_ms: now }));
    this.pingsSent += 1;
  }

  /** Anything arrived from the peer. */
  heard(now = this.clock()) { this.lastHeard = now; }

  /**
   * A parsed ping or pong (call {@link heard} for every message first): a ping is answered
   * at once, a pong gives the round trip. Returns true when `msg` was one of these.
   */
  onMessage(msg, now = this.clock()) {
    if (msg.type === 'ping') {
      this._send(dumps({ type: 'pong', t_ms: msg.t_ms }));
      return true;
    }
    if (msg.type === 'pong') {
      if (msg.t_ms <= now) this.rttMs = now - msg.t_ms;
      return true;
    }
    return false;
  }

  _send(text) {
    try {
      this.send(text);
    } catch (e) {
      console.debug('liveness: send failed (the silence rule decides)', e);
    }
  }
}
