// The server ops of the last versions, kept to move a remote selection made
// at an older version through everything committed since (`TextDoc._place`).
//
// Every op applied passes through here, so remembering must cost next to
// nothing and keep nothing alive: an op kept as it came (an array, its
// strings) lives for a thousand ops, long enough to be copied out of the
// young generation and left to the full collections, on every client, for
// every op. Almost every op is one edit (typing, a paste, a delete), and a
// position moves through one edit by its place and size alone, so those are
// kept as two numbers in typed arrays; only other ops are kept whole.

import { oneEdit, transformPosition } from './ot.js';

/** Ops kept at most (at least the last CAPACITY are always there). */
const CAPACITY = 2048;
const FIRST_CAPACITY = 32;

export class RecentOps {
  constructor() {
    this.clear();
  }

  /** Forgets every op (a new text, a new incarnation). */
  clear() {
    this._at = new Int32Array(FIRST_CAPACITY);
    this._size = new Int32Array(FIRST_CAPACITY); // > 0 inserts, < 0 deletes, 0: the op is in `_ops`
    /** Ops that are not one edit, by slot. @type {Map<number, any[]>} */
    this._ops = new Map();
    this._count = 0;
    this._next = 0; // the slot of the next op
    /** The version of the oldest op kept. */
    this.first = 0;
  }

  /** The version of the newest op kept (first - 1 when none is). */
  get last() {
    return this.first + this._count - 1;
  }

  /** Keeps the op of `version`; a version that does not follow the last starts afresh. */
  push(version, op) {
    if (this._count === 0 || version !== this.last + 1) {
      if (this._count !== 0) this.clear();
      this.first = version;
    }
    if (this._count === this._at.length && this._at.length < CAPACITY) this._grow();
    const slot = this._next;
    if (this._count === this._at.length) {
      // Full: the oldest goes.
      this._ops.delete(slot);
      this.first++;
    } else {
      this._count++;
    }
    if (oneEdit(op, EDIT) && EDIT[0] <= 0x7fffffff && EDIT[1] >= -0x7fffffff && EDIT[1] <= 0x7fffffff) {
      this._at[slot] = EDIT[0];
      this._size[slot] = EDIT[1];
    } else {
      this._size[slot] = 0;
      this._ops.set(slot, op);
    }
    this._next = (slot + 1) % this._at.length;
  }

  _grow() {
    // The ring is full and in order from `_next` (its oldest) on: laid out
    // from 0 in the larger arrays.
    const n = this._at.length;
    const at = new Int32Array(n * 2);
    const size = new Int32Array(n * 2);
    const ops = new Map();
    for (let k = 0; k < n; k++) {
      const slot = (this._next + k) % n;
      at[k] = this._at[slot];
      size[k] = this._size[slot];
      if (size[k] === 0) ops.set(k, this._ops.get(slot));
    }
    this._at = at;
    this._size = size;
    this._ops = ops;
    this._next = n;
  }

  /** Whether every op after `version` up to `last` is kept. */
  keepsAfter(version) {
    return this._count > 0 && version + 1 >= this.first && version <= this.last;
  }

  /**
   * Code point `pos` of the text at `version` moved through every op kept
   * after it (someone else's inserts at `pos` stay after it); `keepsAfter(version)` must hold.
   */
  moveFrom(version, pos) {
    const n = this._at.length;
    let p = pos;
    for (let v = version + 1; v <= this.last; v++) {
      const slot = (this._next - (this.last - v) - 1 + n) % n;
      const size = this._size[slot];
      const at = this._at[slot];
      if (size > 0) {
        if (at < p) p += size;
      } else if (size < 0) {
        if (at < p) p -= Math.min(-size, p - at);
      } else {
        p = transformPosition(this._ops.get(slot), p, false);
      }
    }
    return p;
  }
}

const EDIT = [0, 0];
