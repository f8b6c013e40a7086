/**
 * RTCPeerConnection set-up over our signaling, and the stats a peer publishes.
 *
 * Browsers trickle ICE: each local candidate goes out as a `candidate` signal
 * (RTCIceCandidateInit; null at the end). aiortc never trickles (its candidates are in its
 * SDP) but accepts ours. Candidates are held back in both directions until they can be
 * used: outgoing ones until our offer/answer has been sent (so the peer has a session to
 * add them to), incoming ones until the remote description is set.
 * @module rtcpeer
 */
import { reportEntries } from './stats.js';

/** No STUN by default: the project must work on closed networks and on loopback. */
export function iceServersFrom(param) {
  return (param ? param.split(',') : []).filter(Boolean).map((u) => ({ urls: u.trim() }));
}

const PAIR_RANK = { host: 0, prflx: 1, srflx: 1, relay: 2 };

/**
 * The security entry of a getStats() report, or null before a candidate pair is selected
 * and DTLS is up. candidatePairType is the "furthest" end's type (relay if either is).
 */
export function securityEntry(stats, prefix = '') {
  const byId = new Map();
  for (let s of stats?.values?.() ?? stats ?? []) {
    if (Array.isArray(s)) s = s[1];
    if (s?.id) byId.set(s.id, s);
  }
  const transport = [...byId.values()].find((s) => s.type === 'transport');
  if (!transport) return null;
  const e = { type: 'security', id: `${prefix}security`, timestamp: transport.timestamp };
  for (const k of ['tlsVersion', 'dtlsCipher', 'dtlsState']) if (typeof transport[k] === 'string') e[k] = transport[k];
  const pair = byId.get(transport.selectedCandidatePairId);
  const local = pair && byId.get(pair.localCandidateId);
  const remote = pair && byId.get(pair.remoteCandidateId);
  if (local?.candidateType && remote?.candidateType) {
    e.localCandidateType = local.candidateType;
    e.remoteCandidateType = remote.candidateType;
    e.candidatePairType = (PAIR_RANK[local.candidateType] ?? 0) >= (PAIR_RANK[remote.candidateType] ?? 0)
      ? local.candidateType : remote.candidateType;
    if (typeof local.protocol === 'string') e.protocol = local.protocol;
  }
  return e.dtlsCipher || e.candidatePairType ? e : null;
}

export class PeerLink {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {string} remoteId the peer's Socket.IO id
   * @param {{iceServers?: RTCIceServer[]}} [opts] iceServers: the page's own list (`?ice=`);
   *   empty: those the server handed out in the join ack, with its transport policy
   */
  constructor(signaling, remoteId, { iceServers = [] } = {}) {
    this.signaling = signaling;
    this.remoteId = remoteId;
    this.config = typeof signaling.rtcConfig === 'function' ? signaling.rtcConfig(iceServers) : { iceServers };
    this.pc = new RTCPeerConnection(this.config);
    this._outgoing = [];   // local candidates waiting for our description to be sent
    this._described = false;
    this._incoming = [];   // remote candidates waiting for the remote description
    this.pc.onicecandidate = (e) => {
      const init = e.candidate ? e.candidate.toJSON() : null;
      if (this._described) this._sendCandidate(init);
      else this._outgoing.push(init);
    };
  }

  _sendCandidate(init) {
    this.signaling.signal(this.remoteId, 'candidate', { candidate: init })
      .catch((e) => console.warn('candidate not delivered', e));
  }

  async _markDescribed() {
    this._described = true;
    for (const c of this._outgoing.splice(0)) this._sendCandidate(c);
  }

  /** Sender side: create the offer and send it. */
  async offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this.signaling.signal(this.remoteId, 'offer', { sdp: this.pc.localDescription.sdp });
    await this._markDescribed();
  }

  /** Receiver side: apply an offer, send the answer. */
  async answer(sdp) {
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    await this._flushIncoming();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this.signaling.signal(this.remoteId, 'answer', { sdp: this.pc.localDescription.sdp });
    await this._markDescribed();
  }

  /** Sender side: apply the receiver's answer. */
  async accept(sdp) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    await this._flushIncoming();
  }

  /** A trickled candidate from the peer (null / empty candidate: end of candidates). */
  async addCandidate(init) {
    if (!init || !init.candidate) return; // end-of-candidates needs no action here
    if (!this.pc.remoteDescription) {
      this._incoming.push(init);
      return;
    }
    try {
      await this.pc.addIceCandidate(init);
    } catch (e) {
      console.warn('ignored a candidate the browser refused', init, e);
    }
  }

  async _flushIncoming() {
    for (const c of this._incoming.splice(0)) await this.addCandidate(c);
  }

  /**
   * data-channel and transport entries of this connection (ids prefixed when asked), and a
   * "security" entry: the selected candidate pair's type and the DTLS version and cipher,
   * with the fields Python peers report (splitcore/rtc/peer.py security_entry).
   */
  async report({ prefix = '', state } = {}) {
    const stats = await this.pc.getStats();
    const out = reportEntries(stats, { prefix, state });
    const sec = securityEntry(stats, prefix);
    if (sec) out.push(sec);
    return out;
  }

  close() {
    this.pc.onicecandidate = null;
    this.pc.close();
  }
}
