/**
 * The sender page's connection to a receiver: signaling, one RTCPeerConnection and data
 * channel per receiver, liveness, the replies that settle the ledger, and the receiver's
 * replacement when it is lost. The browser twin of `sender/stream.py`; it is the
 * {@link import('./pipeline.js').Outlet} the per-frame path (`sender/pipeline.js`) sends into.
 *
 * A lost receiver (silent for 2 s, its channel closed, or its connection failed) does not
 * end the run: frames in flight are settled as lost, capturing goes on (frames dropped as
 * `no_receiver`), and the stream offers on a fresh RTCPeerConnection (aiortc cannot restart
 * ICE) to the next receiver in the room (same name when one was asked for), for up to
 * `reconnectTimeoutS`. Signaling is only for meeting: it reconnects by itself, and an open
 * channel carries on while the server is away.
 * @module stream
 */
import { Liveness } from '../rtc/liveness.js';
import { PeerLink, iceServersFrom } from '../rtc/peer.js';
import { Signaling } from '../rtc/signaling.js';
import { ChannelCounter } from '../rtc/stats.js';

/**
 * @typedef {object} StreamOptions
 * @property {string} room
 * @property {string} name
 * @property {string} [receiver]          a receiver's name to wait for ('' any)
 * @property {string} [ice]               comma-separated ICE server URLs
 * @property {number} [maxBuffered]       bytes queued in the channel beyond which frames are dropped (backpressure)
 * @property {number} [connectTimeoutS]   data channel must open within this
 * @property {number} [reconnectTimeoutS] a lost receiver must be replaced within this
 * @property {number} [drainTimeoutS]     at the end, wait this long for the last replies
 */

/**
 * @typedef {object} StreamHooks
 * @property {(text: string, kind?: string) => void} [status]  the page's status line
 * @property {(kind: string, msg: object|null) => void} [message]  after the ledger settled a
 *   receiver's message (kind "reply", "drop", "error" ...)
 * @property {(change: {state: string, detail: string}) => void} [signaling]  the signaling
 *   connection's state changed (rtc/signaling.js "state" event)
 */

export class SenderStream {
  /**
   * @param {StreamOptions} opts
   * @param {StreamHooks} [hooks]
   */
  constructor(opts, hooks = {}) {
    this.opts = { receiver: '', ice: '', maxBuffered: 256 * 1024, connectTimeoutS: 30, reconnectTimeoutS: 60,
      drainTimeoutS: 5, ...opts };
    this.hooks = hooks;
    /** @type {Signaling|null} */
    this.signaling = null;
    /** @type {PeerLink|null} */
    this.link = null;
    /** @type {RTCDataChannel|null} the open channel frames go on, null while there is none */
    this.channel = null;
    /** @type {{id: string, name: string}|null} */
    this.receiver = null;
    /** @type {import('./ledger.js').Ledger|null} settled by the receiver's messages */
    this.ledger = null;
    /** Our own count of the channel's messages and bytes, across connections (stats.ChannelCounter). */
    this.io = new ChannelCounter('DC');
    this.linkState = 'closed'; // closed | waiting | connecting | open | lost
    /** Each time the receiver was lost: {start, end, cause, receiver, droppedBefore}. */
    this.outages = [];
    /** Set to end the stream: the pipeline stops at its next frame. */
    this.stopping = false;
    /** Why the stream stopped by itself ('' when it did not). */
    this.error = '';
    /** Whether the pipeline is running (the page's phase "streaming"). */
    this.streaming = false;
    /** The newest ping round trip (ms) and how many came, for the adaptive controller. */
    this.rtt = { last: null, seen: 0 };
    this._reconnecting = false;
    this._abortWait = null;
  }

  /**
   * Ready for a new run with these options (room, name, receiver... from the form): the
   * counters, outages and error start over; signaling stays joined if the room is the same.
   * @param {Partial<StreamOptions>} [opts]
   */
  reset(opts = {}) {
    this.close();
    Object.assign(this.opts, opts);
    this.io = new ChannelCounter('DC');
    this.outages = [];
    this.stopping = false;
    this.error = '';
    this.ledger = null;
    this.receiver = null;
    this.rtt = { last: null, seen: 0 };
  }

  _status(text, kind = 'info') { this.hooks.status?.(text, kind); }

  /** The status line's text for the link's state. */
  describe() {
    if (this.channel) return `streaming to ${this.receiver?.name || this.receiver?.id}`;
    const wanted = this.opts.receiver;
    return `no receiver: waiting for a receiver${wanted ? ` named ${wanted}` : ''} in room ${this.opts.room}…`;
  }

  // -------------------------------------------------------------------------------------
  // Signaling and connecting

  /** Join the room (once; a page that starts again in the same room keeps its connection). */
  async join() {
    const { room, name } = this.opts;
    if (this.signaling?.connected && this.signaling.room === room) return this.signaling;
    this.signaling?.close();
    const sig = new Signaling({ room, role: 'sender', name }); // checks the room
    sig.on('signal', (msg) => this._onSignal(msg));
    // the receiver's Socket.IO id changes when signaling restarts, and a receiver that left
    // stops answering: liveness decides that the link is lost, not this event
    sig.on('peer-left', (p) => {
      if (p?.id === this.receiver?.id) console.info(`receiver ${p.name || p.id} left signaling; its channel decides`);
    });
    sig.on('state', (change) => this.hooks.signaling?.(change));
    await sig.connect();
    this.signaling = sig;
    return sig;
  }

  /** Join, find a receiver and open a channel to it within `connectTimeoutS`. */
  async connect() {
    await this.join();
    this._status(this.describe());
    await this._connectOnce(this.opts.connectTimeoutS * 1000);
  }

  /**
   * Find a receiver, offer to it and wait for the data channel to open; resolves when it is
   * open. `waitMs` bounds the wait for a receiver to join (0: no bound).
   */
  async _connectOnce(waitMs) {
    this.linkState = 'waiting';
    const abort = new AbortController();
    this._abortWait = abort;
    const peer = await this.signaling.waitForPeer('receiver', this.opts.receiver, waitMs, { signal: abort.signal });
    this.receiver = peer;
    this.linkState = 'connecting';
    const link = new PeerLink(this.signaling, peer.id, { iceServers: iceServersFrom(this.opts.ice) });
    this.link = link;
    const dc = link.pc.createDataChannel('latent', { ordered: true });
    dc.binaryType = 'arraybuffer';
    const io = this.io;
    const liveness = new Liveness({
      send: (text) => { if (dc.readyState === 'open') { dc.send(text); io.sent(text); } },
      onLost: (ms) => this._lost(link, `no message from the receiver for ${Math.round(ms)} ms`),
    });
    link.liveness = liveness;
    dc.onmessage = (e) => { io.received(e.data); liveness.heard(); this._onReceiverMessage(e.data, liveness); };
    dc.onclose = () => this._lost(link, 'data channel closed');
    link.pc.addEventListener('connectionstatechange', () => {
      if (['failed', 'closed'].includes(link.pc.connectionState)) this._lost(link, `connection ${link.pc.connectionState}`);
    });
    const timeoutS = this.opts.connectTimeoutS;
    const opened = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`data channel to receiver ${peer.name || peer.id} did not open ` +
        `within ${timeoutS}s (connection ${link.pc.connectionState})`)), timeoutS * 1000);
      dc.addEventListener('open', () => { clearTimeout(t); resolve(); }, { once: true });
    });
    try {
      await link.offer();
      this._status(`offered to receiver ${peer.name || peer.id}; connecting…`);
      await opened;
    } catch (e) {
      link.close();
      if (this.link === link) this.link = null;
      throw e;
    }
    this.channel = dc;
    this.linkState = 'open';
    liveness.start();
    const outage = this.outages.at(-1);
    if (outage && outage.end === null) {
      outage.end = performance.now();
      outage.receiver = peer.name || peer.id;
    }
    if (this.streaming) this._status(this.describe(), 'ok');
  }

  /** The receiver is gone: every frame in flight is lost; a new receiver will be looked for. */
  _lost(link, cause) {
    if (link.lostAt !== undefined) return;
    link.lostAt = performance.now();
    link.liveness?.stop();
    const dc = this.link === link ? this.channel : null;
    if (dc) { dc.onmessage = null; dc.onclose = null; }
    if (this.link !== link) { link.close(); return; }
    console.warn(`receiver ${this.receiver?.name || this.receiver?.id} lost: ${cause}`);
    this.ledger?.onConnectionLost();
    this.outages.push({ start: link.lostAt, end: null, cause, receiver: '',
      droppedBefore: this.ledger?.droppedSender.get('no_receiver') ?? 0 });
    this.channel = null;
    this.link = null;
    this.linkState = 'lost';
    link.close();
    if (this.streaming) {
      this._status(`receiver lost (${cause}); ${this.describe()}`, 'error');
      this._reconnect();
    }
  }

  /** Look for a receiver until one is connected, the stream stops, or the wait times out. */
  async _reconnect() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    const timeoutS = this.opts.reconnectTimeoutS;
    const deadline = performance.now() + timeoutS * 1000;
    try {
      while (!this.stopping && this.channel === null) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`no receiver came back within ${timeoutS}s`);
        try {
          if (this.streaming) this._status(this.describe(), 'info');
          await this._connectOnce(left);
        } catch (e) {
          if (this.stopping) break;
          if (performance.now() >= deadline) throw e;
          console.warn('reconnecting to a receiver failed; trying again', e);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } catch (e) {
      this.error = e.message;
      this.stopping = true;
    } finally {
      this._reconnecting = false;
    }
  }

  async _onSignal(msg) {
    const link = this.link;
    if (!link || msg?.from !== link.remoteId) {
      console.warn(`ignoring ${msg?.type} from ${msg?.from}: not our receiver`);
      return;
    }
    if (msg.type === 'answer') await link.accept(msg.sdp);
    else if (msg.type === 'candidate') await link.addCandidate(msg.candidate);
  }

  /** A message from the receiver: settle a frame in the ledger, or answer liveness. */
  _onReceiverMessage(data, liveness) {
    const led = this.ledger;
    if (typeof data !== 'string') {
      console.warn('binary message from the receiver: not one of ours');
      if (led) led.unmatched += 1;
      return;
    }
    if (!led) return;
    const now = performance.now();
    const { kind, msg, error } = led.onText(data, now);
    if (msg && liveness.onMessage(msg, now)) {
      if (msg.type === 'pong' && now - msg.t_ms >= 0 && now - msg.t_ms < 60000) { // as Python's stream
        this.rtt.last = now - msg.t_ms;
        this.rtt.seen += 1;
      }
      return;
    }
    if (kind === 'error') console.warn(`receiver refused seq ${msg.seq}: ${msg.reason} ${msg.detail}`);
    else if (error) console.warn(`malformed message from the receiver (${kind}): ${error.message}`);
    this.hooks.message?.(kind, msg ?? null);
  }

  // -------------------------------------------------------------------------------------
  // The Outlet the pipeline sends into

  /** The channel to send the next frame on, or why it is dropped before the head runs. */
  channelForFrame() {
    const dc = this.channel;
    if (dc === null) return 'no_receiver';
    if (dc.readyState !== 'open') {
      if (this.link) this._lost(this.link, `data channel ${dc.readyState}`);
      return 'channel_closed';
    }
    if (dc.bufferedAmount > this.opts.maxBuffered) return 'backpressure';
    return dc;
  }

  /** Whether `dc` is still the open channel (the receiver may be lost while the head runs). */
  stillOpen(dc) { return this.channel === dc && dc.readyState === 'open'; }

  /** One frame message onto `dc`, counted. */
  send(dc, message) {
    dc.send(message);
    this.io.sent(message);
  }

  // -------------------------------------------------------------------------------------
  // The end

  /** Stop waiting for a receiver (the stream is ending). */
  abortWait() { this._abortWait?.abort(); }

  /** Wait up to `drainTimeoutS` for the replies to the frames in flight. */
  async drain() {
    const led = this.ledger;
    const deadline = performance.now() + this.opts.drainTimeoutS * 1000;
    while (led && led.inFlight.size && performance.now() < deadline && this.channel?.readyState === 'open') {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The getStats entries of the current connection, our channel counters always among them. */
  async report() {
    const entries = this.link ? await this.link.report().catch(() => []) : [];
    if (!this.io.observe(entries)) entries.unshift(this.io.entry({ state: this.channel?.readyState ?? 'closed' }));
    return entries;
  }

  /** Close the connection (signaling stays joined for the next start). */
  close() {
    this.link?.liveness?.stop();
    this.link?.close();
    this.link = null;
    this.channel = null;
    this.linkState = 'closed';
  }
}
