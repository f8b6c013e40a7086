/**
 * The browser side of signaling (docs/signaling.md): the twin of `splitcore/rtc/signaling.py`'s
 * SignalingClient, and the one Socket.IO client of every page (sender, receiver, dashboard).
 * One connection, one room, one role.
 *
 * It reconnects by itself: when the server restarts or the network blips, socket.io-client
 * reconnects and this client joins the same room again under the same name (a new Socket.IO
 * id: peers find each other again by role and name). Open data channels do not depend on
 * signaling and keep running meanwhile. `state` says where it stands ("connecting",
 * "joined", "reconnecting", "refused", "closed"), and the "state" event reports each change
 * so a page can show it.
 *
 * Access and ICE (docs/signaling.md): a server started with --secret needs a room token in the
 * join, taken from the page's `?token=`; the join ack may carry the ICE servers to use
 * (`iceServers`, with TURN credentials minted for this peer) and `iceTransportPolicy`, which
 * `?relay=1` forces to "relay". PeerLink (peer.js) reads both from here, so no page
 * hard-codes a STUN or TURN host.
 *
 * Pools (docs/signaling.md, "Pools"): with `pool: true` the join names receiver pool `room`
 * rather than the room of that name (the dashboard watches a pool this way); the ack says
 * `pool: true`.
 *
 * socket.io-client comes from our server (/vendor/socket.io/, npm package), never a CDN.
 * @module signaling
 */
import { io } from '/vendor/socket.io/socket.io.esm.min.js';

/** Room ids the server accepts (docs/signaling.md; Python's home is signaling/validate.py). */
export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export class SignalingError extends Error {
  constructor(message) { super(message); this.name = 'SignalingError'; }
}

/** The page's query parameters (none outside a browser page, e.g. under node --test). */
function pageParams() {
  return new URLSearchParams(globalThis.location?.search ?? '');
}

/** Server events a page can listen to, besides this client's own "joined", "state", "disconnect". */
const SERVER_EVENTS = ['signal', 'peer-joined', 'peer-left', 'stats', 'error'];

export class Signaling {
  /**
   * @param {{room: string, role: string, name?: string, url?: string, token?: string, relay?: boolean,
   *   pool?: boolean}} opts
   *   token: room token for the join (default: the page's `?token=`); relay: relayed (TURN)
   *   candidates only (default: the page's `?relay=1`, or the server's --relay-only); pool:
   *   `room` names a receiver pool
   */
  constructor({ room, role, name = '', url = globalThis.location?.origin, token = pageParams().get('token') ?? '',
    relay = pageParams().get('relay') === '1', pool = false }) {
    if (!ROOM_RE.test(room)) throw new SignalingError(`room "${room}" must match [A-Za-z0-9_.-]{1,64}`);
    this.room = room;
    this.role = role;
    this.name = name;
    this.url = url;
    this.token = token;
    this.relay = relay;
    this.pool = pool;
    /** @type {RTCIceServer[]} ICE servers from the last join ack (empty: none handed out) */
    this.iceServers = [];
    /** "relay" or "all": what the last join ack asked for, "relay" whenever `relay` is set */
    this.iceTransportPolicy = relay ? 'relay' : 'all';
    this.id = '';
    /** @type {Map<string, {id: string, role: string, name: string}>} */
    this.peers = new Map();
    this.socket = null;
    this.state = 'closed';
    /** How many times this client joined (1 after the first join; more after reconnects). */
    this.joins = 0;
    this._handlers = new Map();
    this._closed = false;
  }

  /**
   * Register a handler: "signal", "peer-joined", "peer-left", "stats", "error" (server
   * events), "joined" (the join ack, after every (re)join), "state" (the new state) or
   * "disconnect" (the reason).
   */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    this._handlers.get(event).push(fn);
    return this;
  }

  off(event, fn) {
    const list = this._handlers.get(event);
    if (list) this._handlers.set(event, list.filter((f) => f !== fn));
  }

  _fire(event, arg) {
    for (const fn of this._handlers.get(event) ?? []) {
      try {
        const r = fn(arg);
        if (r && typeof r.catch === 'function') r.catch((e) => console.error(`${event} handler failed`, e));
      } catch (e) {
        console.error(`${event} handler failed`, e); // one bad message must not end the others
      }
    }
  }

  _setState(state, detail = '') {
    this.state = state;
    this._fire('state', { state, detail });
  }

  /**
   * Connect and join; resolves with the first join ack. Rejects when the server cannot be
   * reached or refuses the join (a wrong room): the page says why. After that first join,
   * reconnecting and rejoining are automatic.
   */
  async connect(timeoutMs = 10000) {
    this._closed = false;
    const socket = io(this.url, {
      transports: ['websocket'], timeout: timeoutMs,
      reconnection: true, reconnectionDelay: 250, reconnectionDelayMax: 2000, randomizationFactor: 0.2,
    });
    this.socket = socket;
    for (const ev of SERVER_EVENTS) socket.on(ev, (m) => this._onServer(ev, m));
    socket.on('disconnect', (reason) => {
      if (this._closed) return;
      this._setState('reconnecting', reason);
      this._fire('disconnect', reason);
      if (reason === 'io server disconnect') socket.connect(); // the one case socket.io does not retry
    });
    socket.io.on('reconnect_attempt', (n) => this._setState('reconnecting', `attempt ${n}`));
    this._setState('connecting');
    await new Promise((resolve, reject) => {
      const onError = (e) => {
        socket.off('connect', onConnect);
        socket.disconnect();
        this._setState('closed', e.message);
        reject(new SignalingError(`cannot reach the signaling server at ${this.url}: ${e.message}`));
      };
      const onConnect = () => { socket.off('connect_error', onError); resolve(); };
      socket.once('connect', onConnect);
      socket.once('connect_error', onError);
    });
    let ack;
    try {
      ack = await this._join(timeoutMs);
    } catch (e) {
      socket.disconnect(); // no half-joined client left retrying behind the page's back
      throw e;
    }
    socket.on('connect', () => { this._rejoin(timeoutMs); }); // every reconnect after the first
    return ack;
  }

  async _join(timeoutMs) {
    let ack;
    try {
      const join = { room: this.room, role: this.role, name: this.name };
      if (this.token) join.token = this.token;
      if (this.pool) join.pool = true;
      ack = await this.socket.timeout(timeoutMs).emitWithAck('join', join);
    } catch (e) {
      throw new SignalingError(`join got no answer from ${this.url}: ${e.message}`);
    }
    if (!ack?.ok) {
      this._setState('refused', ack?.error ?? '');
      throw new SignalingError(`join refused: ${ack?.error ?? JSON.stringify(ack)}`);
    }
    const before = this.peers;
    this.id = ack.id;
    if (Array.isArray(ack.iceServers)) this.iceServers = ack.iceServers;
    this.iceTransportPolicy = this.relay || ack.iceTransportPolicy === 'relay' ? 'relay' : 'all';
    this.peers = new Map((ack.peers ?? []).map((p) => [p.id, p]));
    this.joins += 1;
    this._setState('joined');
    this._fire('joined', ack);
    // after a rejoin the ack's list is the truth: tell the page who is new and who is gone
    for (const [id, p] of before) if (!this.peers.has(id)) this._fire('peer-left', p);
    for (const [id, p] of this.peers) if (!before.has(id)) this._fire('peer-joined', p);
    return ack;
  }

  async _rejoin(timeoutMs) {
    if (this._closed) return;
    try {
      await this._join(timeoutMs);
      console.info(`signaling: rejoined room ${this.room} as ${this.name || this.role} (${this.id})`);
    } catch (e) {
      console.warn('signaling: rejoin failed; retrying', e);
      if (this.socket?.connected && !this._closed) setTimeout(() => this._rejoin(timeoutMs), 1000);
    }
  }

  _onServer(event, m) {
    if (event === 'peer-joined' && m?.id) this.peers.set(m.id, m);
    else if (event === 'peer-left') this.peers.delete(m?.id);
    else if (event === 'error') console.warn('signaling server refused', m);
    this._fire(event, m);
  }

  /** Send an offer/answer/candidate to one peer; throws when the server refuses it. */
  async signal(to, type, fields = {}) {
    const ack = await this.socket.timeout(10000).emitWithAck('signal', { to, type, ...fields });
    if (!ack?.ok) throw new SignalingError(`${type} to ${to} refused: ${ack?.error ?? JSON.stringify(ack)}`);
  }

  /** The RTCPeerConnection configuration this room's peers use (see PeerLink). */
  rtcConfig(iceServers = []) {
    return { iceServers: iceServers.length ? iceServers : this.iceServers, iceTransportPolicy: this.iceTransportPolicy };
  }

  /** Publish a `stats` {report, app} event (no ack); dropped while disconnected. */
  stats(payload) {
    if (this.socket?.connected && this.state === 'joined') this.socket.emit('stats', payload);
  }

  /** The first peer of `role` in the room (named `name` when given), or null. */
  findPeer(role, name = '') {
    return [...this.peers.values()].find((p) => p.role === role && (!name || p.name === name)) ?? null;
  }

  /**
   * The first peer of `role` (named `name` when given), now or when it joins; rejects after
   * `timeoutMs` (0: wait for ever) or when `signal.aborted`.
   */
  waitForPeer(role, name = '', timeoutMs = 30000, { signal = null } = {}) {
    const found = this.findPeer(role, name);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      let timer = null;
      const done = () => { clearTimeout(timer); this.off('peer-joined', onJoin); signal?.removeEventListener('abort', onAbort); };
      const onJoin = (p) => {
        if (p.role !== role || (name && p.name !== name)) return;
        done();
        resolve(p);
      };
      const onAbort = () => { done(); reject(new SignalingError('stopped waiting')); };
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          done();
          reject(new SignalingError(`no ${role}${name ? ` named ${name}` : ''} joined room ${this.room} ` +
            `within ${Math.round(timeoutMs / 1000)}s`));
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.on('peer-joined', onJoin);
    });
  }

  get connected() { return !!this.socket?.connected; }

  close() {
    this._closed = true;
    this.socket?.disconnect();
    this._setState('closed');
  }
}
