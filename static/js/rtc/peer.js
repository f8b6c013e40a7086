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

export class PeerLink {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {string} remoteId the peer's Socket.IO id
   * @param {{iceServers?: RTCIceServer[]}} [opts]
   */
  constructor(signaling, remoteId, { iceServers = [] } = {}) {
    this.signaling = signaling;
    this.remoteId = remoteId;
    this.pc = new RTCPeerConnection({ iceServers });
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

  /** data-channel and transport entries of this connection (ids prefixed when asked). */
  async report({ prefix = '', state } = {}) {
    return reportEntries(await this.pc.getStats(), { prefix, state });
  }

  close() {
    this.pc.onicecandidate = null;
    this.pc.close();
  }
}
