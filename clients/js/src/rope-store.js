// Where a Rope (rope.js) keeps its text: the storage layout, apart from the
// tree's edits and lookups. Leaves are slots of one shared Uint16Array, their
// counts and surrogate pair offsets bytes of one shared byte array, inner
// nodes runs of entries of three shared Int32Arrays, and the slots and nodes
// an edit drops go on free lists for the next. This module hands them out,
// reads and sums them, and converts positions inside one leaf through its
// pair offsets; which leaf and which node hold what is the tree's business.
//
// Why flat: on a large text a remote op lands on a leaf nobody touched
// lately, and what it costs is mostly the cache lines it reads on the way.
// With a JavaScript object per leaf (the object, its typed array, that
// array's buffer, its list of surrogate pairs) and per node (the object and
// three arrays), each level and each leaf was several scattered lines, and
// every leaf edit made garbage. Here a leaf is a slot number and a node a
// node number: a lookup reads a line or two of integers per level and then
// the leaf's counts and text, and an edit inside a leaf allocates nothing.
//
// A leaf keeps the offsets of its surrogate pairs beside its counts (as
// many as its units exceed its code points), so converting a position reads
// a few bytes instead of scanning its text (a scan costs about a nanosecond
// a unit, more than the rest of the lookup), and a leaf without pairs
// converts by adding. Whether an offset cuts a pair is read
// off the same offsets.

/** Units of a leaf's slot, its largest size: what an edit inside one leaf may move. */
export const LEAF_MAX = 512;
/** A leaf an edit leaves smaller than this is merged with a neighbour. */
export const LEAF_MIN = LEAF_MAX / 4;
/** Most surrogate pairs a leaf can hold: the stride of the pair lists. */
const PAIRS_MAX = LEAF_MAX / 2;
/** Entries of a leaf's counts and pairs in _meta. */
export const META = 2 + PAIRS_MAX;
/** One byte per count and pair offset while they fit, two beyond. */
const Meta = LEAF_MAX < 256 ? Uint8Array : Uint16Array;
/** Most children of an inner node: what a lookup reads per level. */
export const KIDS_MAX = 64;
/**
 * Largest leaf and node a text is cut into when built or rebuilt: room for
 * edits to grow them in place, and few enough levels that a lookup on a
 * large text reads only a few lines of memory nobody touched lately.
 */
export const LEAF_FILL = LEAF_MAX / 2;
export const KIDS_FILL = KIDS_MAX / 2;
/** An inner node left with fewer children than this is merged with a neighbour. */
export const KIDS_MIN = KIDS_MAX / 4;

export const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
export const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** The text of units `f`..`t` of `buf`. */
export function decode(buf, f, t) {
  // One character, or an emoji (what a keystroke deletes), without the
  // subarray and the spread call: those cost some 130 ns, more than the
  // rest of the edit.
  if (t - f === 1) return String.fromCharCode(buf[f]);
  if (t - f === 2) return String.fromCharCode(buf[f], buf[f + 1]);
  if (t <= f) return '';
  return String.fromCharCode.apply(null, buf.subarray(f, t));
}

/** Whether a Uint16Array's bytes are UTF-16LE (every platform JavaScript runs on, in practice). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const NodeBuffer = typeof globalThis.Buffer === 'function' && typeof globalThis.Buffer.from === 'function' ? globalThis.Buffer : null;
let utf16le = null;

/**
 * The text of all of `units` (a Uint16Array): what a whole document's text
 * is built with. `String.fromCharCode.apply` costs some 6 ns a unit (its
 * arguments go through the stack); Node's Buffer copies the units into a
 * string at memory speed, a browser's TextDecoder nearly so (measured on a
 * 24 KB text: 150 µs by leaves, 13-21 µs with a Buffer, 32-42 µs with a
 * TextDecoder). The text is well formed, so neither has a lone surrogate
 * to replace, and a leading U+FEFF is kept (`ignoreBOM`).
 */
export function decodeAll(units) {
  if (units.length <= 64 || !LITTLE_ENDIAN) return decoders.chunks(units);
  if (NodeBuffer) return decoders.buffer(units);
  if (typeof TextDecoder !== 'function') return decoders.chunks(units);
  return decoders.textDecoder(units);
}

/** The ways `decodeAll` has (exported for the tests, which check each on every platform). */
export const decoders = {
  /** By `String.fromCharCode`, in pieces the argument stack takes. */
  chunks(units) {
    const parts = [];
    for (let i = 0; i < units.length; i += 8192) parts.push(decode(units, i, Math.min(units.length, i + 8192)));
    return parts.join('');
  },
  buffer: (units) => NodeBuffer.from(units.buffer, units.byteOffset, units.byteLength).toString('utf16le'),
  textDecoder(units) {
    if (utf16le === null) utf16le = new TextDecoder('utf-16le', { ignoreBOM: true });
    return utf16le.decode(units);
  },
};

/** A copy of `a` (an Int32Array or Uint16Array) `size` entries long. */
export function grown(a, size) {
  const out = new a.constructor(size);
  out.set(a);
  return out;
}

/** The slots, nodes and free lists of a Rope, and what reads them. */
export class RopeStore {
  constructor() {
    // Leaves: slot s holds units s * LEAF_MAX .. + its length of _buf. Its
    // length, its code points and the offsets of its surrogate pairs (their
    // high halves, in order, as many as its units exceed its code points)
    // are META bytes of _meta from s * META, on the line a lookup reads
    // anyway.
    this._buf = new Uint16Array(4 * LEAF_MAX);
    this._meta = new Meta(4 * META);
    this._leaves = 0; // slots handed out so far (free ones included)
    this._freeLeaves = [];
    // Inner nodes: child j of node n is entry n * KIDS_MAX + j of three
    // arrays: _units and _points hold the UTF-16 units and code points of
    // the node's children up to and including it (running sums, so a
    // lookup finds a child by guessing from its share of the node and
    // stepping, without adding up the ones before it), _kids its id. A
    // lookup reads one or two lines of the measure it walks by.
    //
    // The true running sum of entry e of node n is _units[e] + _biasUnits[n]
    // (and _points[e] + _biasPoints[n]): a change to a child must add to its
    // entry and every one after it, and when those are more than half of the
    // node it is added to the node's bias and taken off the entries before
    // instead, so an edit that moves a leaf's counts rewrites at most half
    // of each node along its path (on a large text, the sums an edit
    // settles were a quarter of its cost).
    this._units = new Int32Array(4 * KIDS_MAX);
    this._points = new Int32Array(4 * KIDS_MAX);
    this._biasUnits = new Int32Array(4);
    this._biasPoints = new Int32Array(4);
    this._kids = new Int32Array(4 * KIDS_MAX);
    this._count = new Int32Array(4);
    this._nodes = 0;
    this._freeNodes = [];
  }

  // ---- slots and nodes ----------------------------------------------------

  /** A new leaf holding units `from`..`to` of `s` (no pair cut at either end). */
  _newLeaf(s, from, to) {
    let slot;
    if (this._freeLeaves.length > 0) slot = this._freeLeaves.pop();
    else {
      slot = this._leaves++;
      if ((slot + 1) * META > this._meta.length) {
        const size = (this._meta.length / META) * 2;
        this._buf = grown(this._buf, size * LEAF_MAX);
        this._meta = grown(this._meta, size * META);
      }
    }
    const buf = this._buf;
    const o = slot * LEAF_MAX;
    let pairs = 0;
    for (let i = from; i < to; i++) {
      const c = s.charCodeAt(i);
      buf[o + i - from] = c;
      if (isLow(c) && i > from && isHigh(s.charCodeAt(i - 1))) this._meta[slot * META + 2 + pairs++] = i - 1 - from;
    }
    this._meta[slot * META] = to - from;
    this._meta[slot * META + 1] = to - from - pairs;
    return slot;
  }

  /** A new inner node over `kids` (of height `h` - 1, at most KIDS_MAX). */
  _newNode(kids, h) {
    let n;
    if (this._freeNodes.length > 0) n = this._freeNodes.pop();
    else {
      n = this._nodes++;
      if (n >= this._count.length) {
        const size = this._count.length * 2;
        this._units = grown(this._units, size * KIDS_MAX);
        this._points = grown(this._points, size * KIDS_MAX);
        this._kids = grown(this._kids, size * KIDS_MAX);
        this._count = grown(this._count, size);
        this._biasUnits = grown(this._biasUnits, size);
        this._biasPoints = grown(this._biasPoints, size);
      }
    }
    let units = 0;
    let points = 0;
    for (let j = 0; j < kids.length; j++) {
      const e = n * KIDS_MAX + j;
      this._units[e] = units += this._lenOf(kids[j], h - 1);
      this._points[e] = points += this._cpsOf(kids[j], h - 1);
      this._kids[e] = kids[j];
    }
    this._count[n] = kids.length;
    this._biasUnits[n] = 0;
    this._biasPoints[n] = 0;
    return n;
  }

  /** UTF-16 units under slot or node `id` of height `h`. */
  _lenOf(id, h) {
    if (h === 0) return this._meta[id * META];
    return this._count[id] > 0 ? this._units[id * KIDS_MAX + this._count[id] - 1] + this._biasUnits[id] : 0;
  }

  /** Code points under slot or node `id` of height `h`. */
  _cpsOf(id, h) {
    if (h === 0) return this._meta[id * META + 1];
    return this._count[id] > 0 ? this._points[id * KIDS_MAX + this._count[id] - 1] + this._biasPoints[id] : 0;
  }

  /** The children of node `n`, as a new array. */
  _kidsOf(n) {
    const e = n * KIDS_MAX;
    return Array.from(this._kids.subarray(e, e + this._count[n]));
  }

  /** What each child of node `n` holds of `sums` (_units or _points), as a new array. */
  _measuresOf(n, sums) {
    const out = [];
    const bias = (sums === this._units ? this._biasUnits : this._biasPoints)[n];
    for (let e = n * KIDS_MAX, end = e + this._count[n], before = 0; e < end; e++) {
      out.push(sums[e] + bias - before);
      before = sums[e] + bias;
    }
    return out;
  }

  /**
   * Adds `units` and `points` to the running sums of child entry `e` and the
   * ones after it in its node: to those entries, or, when they are more than
   * half of the node, to its bias, taking them off the entries before `e`.
   */
  _addFrom(e, units, points) {
    const u = this._units;
    const p = this._points;
    const n = (e / KIDS_MAX) | 0;
    const first = n * KIDS_MAX;
    const end = first + this._count[n];
    if (end - e <= e - first) {
      for (; e < end; e++) {
        u[e] += units;
        p[e] += points;
      }
    } else {
      this._biasUnits[n] += units;
      this._biasPoints[n] += points;
      for (let b = first; b < e; b++) {
        u[b] -= units;
        p[b] -= points;
      }
    }
  }

  /** Gives back slot or node `id` of height `h` (not what is under it). */
  _free(id, h) {
    if (h === 0) this._freeLeaves.push(id);
    else this._freeNodes.push(id);
  }

  /** Gives back `id` of height `h` and everything under it. */
  _freeTree(id, h) {
    if (h > 0) for (const k of this._kidsOf(id)) this._freeTree(k, h - 1);
    this._free(id, h);
  }

  /**
   * Copies the units of the leaves under `id` (height `h`), in order, into
   * `out` from `at`; returns where they end.
   */
  _copyUnits(id, h, out, at) {
    if (h === 0) {
      const o = id * LEAF_MAX;
      const len = this._meta[id * META];
      out.set(this._buf.subarray(o, o + len), at);
      return at + len;
    }
    for (let e = id * KIDS_MAX, end = e + this._count[id]; e < end; e++) at = this._copyUnits(this._kids[e], h - 1, out, at);
    return at;
  }

  /** The text of leaf `slot`. */
  _leafText(slot) {
    const o = slot * LEAF_MAX;
    return decode(this._buf, o, o + this._meta[slot * META]);
  }

  // ---- positions inside a leaf --------------------------------------------

  /** UTF-16 units of the first `k` code points of leaf `slot`. */
  _unitsOf(slot, k) {
    return this._unitsIn(slot, this._meta[slot * META] - this._meta[slot * META + 1], k);
  }

  /** `_unitsOf` for a leaf with `n` surrogate pairs. */
  _unitsIn(slot, n, k) {
    if (n === 0) return k; // no surrogate pair: most leaves of most texts
    // Pair j is code point pairs[j] - j: the pairs before code point `k`.
    return k + this._pairsBelow(slot * META + 2, n, k, 1);
  }

  /**
   * How many of the `n` pair offsets from `o` of _meta have `offset -
   * perPair * j` (j their index) below `limit`: those values rise with j,
   * so they are counted by halves while there are many, then one by one.
   */
  _pairsBelow(o, n, limit, perPair) {
    const pairs = this._meta;
    let j = 0;
    let end = n;
    while (end - j > 8) {
      const mid = (j + end) >> 1;
      if (pairs[o + mid] - perPair * mid < limit) j = mid + 1;
      else end = mid;
    }
    while (j < end && pairs[o + j] - perPair * j < limit) j++;
    return j;
  }

  /**
   * Code points of the first `u` UTF-16 units of leaf `slot`, which has `n`
   * surrogate pairs, or -1 when `u` falls between the halves of a pair: read
   * off the pair offsets, not the text, so a lookup reads no text.
   */
  _pointsIn(slot, n, u) {
    if (n === 0) return u;
    const o = slot * META + 2;
    // The pairs wholly before `u`: those whose low half is before it.
    const j = this._pairsBelow(o, n, u - 1, 0);
    return j < n && this._meta[o + j] + 1 === u ? -1 : u - j;
  }

  /**
   * Updates the pair list of leaf `slot` (which had `n` pairs) for units
   * `from`..`to` replaced by `insert`, `d16` units longer; returns the
   * pairs `insert` brought.
   */
  _movePairs(slot, n, from, to, insert, d16) {
    const pairs = this._meta;
    const o = slot * META + 2;
    let first = 0; // the first pair at or after the range
    while (first < n && pairs[o + first] < from) first++;
    let end = first; // the first pair after it
    while (end < n && pairs[o + end] < to) end++;
    let added = 0;
    for (let i = 0; i + 1 < insert.length; i++) {
      if (isHigh(insert.charCodeAt(i)) && isLow(insert.charCodeAt(i + 1))) {
        added++;
        i++;
      }
    }
    const move = added - (end - first);
    if (move !== 0) pairs.copyWithin(o + end + move, o + end, o + n);
    for (let j = end + move; j < n + move; j++) pairs[o + j] += d16;
    if (added > 0) {
      let j = o + first;
      for (let i = 0; i + 1 < insert.length; i++) {
        if (isHigh(insert.charCodeAt(i)) && isLow(insert.charCodeAt(i + 1))) pairs[j++] = from + i++;
      }
    }
    return added;
  }

  // ---- for tests ----------------------------------------------------------------

  /**
   * The tree under `root` (of height `h`) as plain objects (`{h, node, kids,
   * lens, cpl}` for a node, `{h: 0, slot, len, cps, text}` for a leaf), and
   * the slots and nodes in use and free: what the tests check the layout with.
   */
  _layout(root, h) {
    const view = (id, h) => {
      if (h === 0) return { h, slot: id, len: this._meta[id * META], cps: this._meta[id * META + 1], text: this._leafText(id) };
      return {
        h,
        node: id,
        kids: this._kidsOf(id).map((k) => view(k, h - 1)),
        lens: this._measuresOf(id, this._units),
        cpl: this._measuresOf(id, this._points),
      };
    };
    return {
      root: view(root, h),
      leafMax: LEAF_MAX,
      kidsMax: KIDS_MAX,
      leaves: this._leaves,
      freeLeaves: this._freeLeaves.slice(),
      nodes: this._nodes,
      freeNodes: this._freeNodes.slice(),
    };
  }
}
