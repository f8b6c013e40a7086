/**
 * A receiver pool as a dashboard watching it sees it (docs/signaling.md, "Pools"): every pool
 * receiver's `stats` event carries `pool: {load: {streams, cpu, queue, workers}, senders: [Peer]}`,
 * the load the server assigns by and the senders it has assigned to that receiver. A receiver
 * of N worker processes (`python -m receiver --workers N`) reports its workers' load added up;
 * it is saturated, as the server judges it, at N times the limits of one. The model
 * keeps the latest of each receiver, drops a receiver that leaves, and says which senders
 * have none. Pure, node-tested.
 *
 * The server clamps the load (signaling/pool.py `Load.from_app`) and sends only `Peer`
 * objects, but a dashboard trusts nothing it did not compute: values are type-checked and
 * list lengths bounded here too.
 * @module pool
 */

/** signaling/pool.py: a receiver this busy is assigned new senders last. */
export const SATURATED_CPU = 0.9;
export const SATURATED_QUEUE = 8;
const MAX_RECEIVERS = 1024;
const MAX_SENDERS = 4096;
const MAX_NAME = 64;
const MAX_WORKERS = 1024;

const count = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/** A `Peer` object ({id, role, name}) or null. */
function peerOf(p) {
  if (!p || typeof p !== 'object' || typeof p.id !== 'string' || !p.id || p.id.length > MAX_NAME) return null;
  return { id: p.id, name: typeof p.name === 'string' ? p.name.slice(0, MAX_NAME) : '' };
}

const byName = (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id);

export class PoolModel {
  constructor() {
    /** @type {Map<string, {id: string, name: string, load: {streams: number, cpu: number, queue: number, workers: number},
     *   saturated: boolean, senders: {id: string, name: string}[], time: number}>} */
    this.byId = new Map();
  }

  /**
   * A stats event (`{from, role, name, time, pool}`): true when it was a pool receiver's and
   * the model changed with it.
   */
  update(msg) {
    const pool = msg?.pool;
    if (msg?.role !== 'receiver' || !pool || typeof pool !== 'object' || typeof msg.from !== 'string') return false;
    const load = pool.load && typeof pool.load === 'object' ? pool.load : {};
    const entry = {
      id: msg.from,
      name: typeof msg.name === 'string' ? msg.name.slice(0, MAX_NAME) : '',
      load: {
        streams: Math.floor(count(load.streams)), cpu: count(load.cpu), queue: Math.floor(count(load.queue)),
        workers: Math.max(1, Math.min(MAX_WORKERS, Math.floor(count(load.workers ?? 1)))),
      },
      saturated: false,
      senders: (Array.isArray(pool.senders) ? pool.senders.slice(0, MAX_SENDERS) : []).map(peerOf).filter(Boolean).sort(byName),
      time: typeof msg.time === 'number' ? msg.time : 0,
    };
    const n = entry.load.workers;
    entry.saturated = entry.load.cpu >= SATURATED_CPU * n || entry.load.queue >= SATURATED_QUEUE * n;
    if (!this.byId.has(entry.id) && this.byId.size >= MAX_RECEIVERS) return false;
    this.byId.set(entry.id, entry);
    return true;
  }

  /** A peer left: true when it was one of the pool's receivers. */
  remove(id) {
    return this.byId.delete(id);
  }

  /** After a (re)join: only the receivers in `ids` are still there. */
  retain(ids) {
    for (const id of [...this.byId.keys()]) if (!ids.has(id)) this.byId.delete(id);
  }

  /** The receivers, by name. */
  receivers() {
    return [...this.byId.values()].sort(byName);
  }

  /** Of `senders` ({id, name}), those no receiver lists as its own: waiting for one. */
  waiting(senders) {
    const served = new Set();
    for (const r of this.byId.values()) for (const s of r.senders) served.add(s.id);
    return senders.filter((s) => !served.has(s.id)).sort(byName);
  }
}

/** "45% of a core" (cpu is the share of one core the receiver's process used, last second). */
export function formatCpu(cpu, workers = 1) {
  return workers > 1 ? `${Math.round(cpu * 100)}% of ${workers} cores` : `${Math.round(cpu * 100)}% of a core`;
}
