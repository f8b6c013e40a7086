/**
 * The browser side of signaling (docs/signaling.md): the twin of `splitcore/rtc/signaling.py`'s
 * SignalingClient. One Socket.IO connection, one room, one role.
 *
 * socket.io-client comes from our server (/vendor/socket.io/, npm package), never a CDN.
 * @module signaling
 */
import { io } from '/vendor/socket.io/socket.io.esm.min.js';

export class SignalingError extends Error {
  constructor(message) { super(message); this.name = 'SignalingError'; }
}

export class Signaling {
  /**
   * @param {{room: string, role: string, name?: string, url?: string}} opts
   */
  constructor({ room, role, name = '', url = location.origin }) {
    this.room = room;
    this.role = role;
    this.name = name;
    this.url = url;
    this.id = '';
    /** @type {Map<string, {id: string, role: string, name: string}>} */
    this.peers = new Map();
    this.socket = null;
    this._handlers = { signal: [], 'peer-joined': [], 'peer-left': [], error: [], disconnect: [] };
  }

  /** Register a handler: "signal", "peer-joined", "peer-left", "error" or "disconnect". */
  on(event, fn) {
    this._handlers[event].push(fn);
    return this;
  }

  _fire(event, arg) {
    for (const fn of this._handlers[event]) {
      try {
        const r = fn(arg);
        if (r && typeof r.catch === 'function') r.catch((e) => console.error(`${event} handler failed`, e));
      } catch (e) {
        console.error(`${event} handler failed`, e); // one bad message must not end the others
      }
    }
  }

  /** Connect and join; resolves with the join ack. */
  async connect(timeoutMs = 10000) {
    const socket = io(this.url, { transports: ['websocket'], reconnection: false, timeout: timeoutMs });
    this.socket = socket;
    socket.on('signal', (m) => this._fire('signal', m));
    socket.on('peer-joined', (p) => { this.peers.set(p.id, p); this._fire('peer-joined', p); });
    socket.on('peer-left', (p) => { this.peers.delete(p?.id); this._fire('peer-left', p); });
    socket.on('error', (m) => { console.warn('signaling server refused', m); this._fire('error', m); });
    socket.on('disconnect', (reason) => this._fire('disconnect', reason));
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', (e) => reject(new SignalingError(
        `cannot reach the signaling server at ${this.url}: ${e.message}`)));
    });
    let ack;
    try {
      ack = await socket.timeout(timeoutMs).emitWithAck('join', { room: this.room, role: this.role, name: this.name });
    } catch (e) {
      throw new SignalingError(`join got no answer from ${this.url}: ${e.message}`);
    }
    if (!ack?.ok) throw new SignalingError(`join refused: ${ack?.error ?? JSON.stringify(ack)}`);
    this.id = ack.id;
    this.peers = new Map((ack.peers ?? []).map((p) => [p.id, p]));
    return ack;
  }

  /** Send an offer/answer/candidate to one peer; throws when the server refuses it. */
  async signal(to, type, fields = {}) {
    const ack = await this.socket.timeout(10000).emitWithAck('signal', { to, type, ...fields });
    if (!ack?.ok) throw new SignalingError(`${type} to ${to} refused: ${ack?.error ?? JSON.stringify(ack)}`);
  }

  /** Publish a `stats` {report, app} event (no ack). */
  stats(payload) {
    if (this.socket?.connected) this.socket.emit('stats', payload);
  }

  /** The first peer of `role` (named `name` when given), now or when it joins. */
  waitForPeer(role, name = '', timeoutMs = 30000) {
    const match = (p) => p.role === role && (!name || p.name === name);
    const found = [...this.peers.values()].find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onJoin = (p) => {
        if (!match(p)) return;
        clearTimeout(timer);
        this._handlers['peer-joined'] = this._handlers['peer-joined'].filter((f) => f !== onJoin);
        resolve(p);
      };
      const timer = setTimeout(() => {
        this._handlers['peer-joined'] = this._handlers['peer-joined'].filter((f) => f !== onJoin);
        reject(new SignalingError(`no ${role}${name ? ` named ${name}` : ''} joined room ${this.room} ` +
          `within ${Math.round(timeoutMs / 1000)}s`));
      }, timeoutMs);
      this.on('peer-joined', onJoin);
    });
  }

  get connected() { return !!this.socket?.connected; }

  close() {
    this.socket?.disconnect();
  }
}
