/**
 * Operating-point switches as the dashboard sees them: a sender's `switches` count going up,
 * or its `operating_point` changing, between two of its stats events is a switch, marked at
 * the time the dashboard saw it (its own clock: the charts' x axis) with the new point.
 * Marks are kept while they are inside the charts' window (`prune`). Pure, node-tested.
 *
 * A peer's first event is its baseline, never a switch (a dashboard that joins late sees a
 * sender that has switched before, not a switch). Counts come from other clients: a count
 * that goes down is a new baseline, and the number of marks kept is bounded whatever a peer
 * sends.
 * @module switches
 */

import { operatingPoint } from './point.js';

export const MAX_MARKS = 256;

export class SwitchMarks {
  /** @param {number} [limit] marks kept at most (the oldest go first) */
  constructor(limit = MAX_MARKS) {
    this.limit = limit;
    /** @type {Map<string, {switches: number|null, key: string}>} peer id -> last seen */
    this.last = new Map();
    /** @type {{id: string, t: number, point: string, from: string, count: number}[]} oldest first */
    this.marks = [];
  }

  /**
   * One stats event of peer `id` at `t` (seconds, the charts' clock): the new mark, or null.
   * `count` is how many switches it stands for (the counter may rise by more than one
   * between two events).
   * @param {string} id
   * @param {object} app  the peer's app stats
   * @param {number} t
   */
  observe(id, app, t) {
    const point = operatingPoint(app);
    if (point === null) return null;
    const before = this.last.get(id);
    this.last.set(id, { switches: point.switches, key: point.key });
    if (!before) return null;
    const counted = point.switches !== null && before.switches !== null ? point.switches - before.switches : 0;
    if (counted <= 0 && point.key === before.key) return null;
    const mark = { id, t, point: point.key, from: before.key, count: Math.max(counted, 1) };
    this.marks.push(mark);
    if (this.marks.length > this.limit) this.marks.splice(0, this.marks.length - this.limit);
    return mark;
  }

  /** Drop the marks older than `oldest` (seconds): they have scrolled out of the window. */
  prune(oldest) {
    let n = 0;
    while (n < this.marks.length && this.marks[n].t < oldest) n += 1;
    if (n > 0) this.marks.splice(0, n);
  }

  /** A peer is gone for good: forget its baseline (its marks scroll away with time). */
  forget(id) {
    this.last.delete(id);
  }
}
