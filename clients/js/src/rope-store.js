// Where a Rope (rope.js) keeps its text: the storage layout, apart from the
// tree's edits and lookups. Leaves are a head (counts, where the text
// starts, surrogate pair offsets: one line) in one shared Uint16Array and a
// slot (the text) in another, inner nodes
// runs of entries of one shared Int32Array (a child's running sums and id
// side by side), and the slots and nodes an edit drops go on free lists for
// the next. This module hands them out, reads and sums them, and converts
// positions inside one leaf through its pair offsets; which leaf and which
// node hold what is the tree's business.
//
// Why flat, and why side by side: on a large text a remote op lands on a
// leaf nobody touched lately, and what it costs is mostly the cache lines
// and pages it reads on the way. With a JavaScript object per leaf and per
// node, each level and each leaf was several scattered lines, and every leaf
// edit made garbage; with one array per field, each level still read a line
// of each array, and each leaf a page for its counts and another for its
// text. Here a lookup reads about one line per level and then the leaf's
// head (the heads of a 1 MB text fit in a few dozen pages, its slots span
// thousands), an edit the head and the lines of text it moves, and an edit
// inside a leaf allocates nothing.
//
// A leaf keeps the offsets of its surrogate pairs beside its counts (as
// many as its units exceed its code points; in its slot when they are too
// many for its head), so converting a position reads
// a few units instead of scanning its text (a scan costs about a nanosecond
// a unit, more than the rest of the lookup), and a leaf without pairs
// converts by adding. Whether an offset cuts a pair is read
// off the same offsets.

/** UTF-16 units a leaf holds at most: what an edit inside one leaf may move. */
export const LEAF_MAX = 512;
/** A leaf an edit leaves smaller than this is merged with a neighbour. */
export const LEAF_MIN = LEAF_MAX / 4;
/** Most surrogate pairs a leaf can hold: room for their offsets in its slot. */
const PAIRS_MAX = LEAF_MAX / 2;
/** Where a leaf's text starts in its slot: after its two counts and its pair offsets. */
export const TEXT = 2 + PAIRS_MAX;
/** Units of _buf per leaf: counts, pairs and text, rounded up to whole 64-byte lines. */
export const SLOT = Math.ceil((TEXT + LEAF_MAX) / 32) * 32;
/**
 * Units of _head per leaf, one 64-byte line: its length, its code points,
 * where its text starts in its slot (past TEXT), and up to HEAD_PAIRS pair
 * offsets (from PAIRS_AT).
 */
export const HEAD = 32;
export const START = 2;
const PAIRS_AT = 3;
/**
 * Most pair offsets a leaf keeps in its head; one with more keeps them in
 * its slot. Most leaves of most texts have fewer (prose with an emoji every
 * few words has about ten in a leaf of 256 units).
 */
export const HEAD_PAIRS = HEAD - PAIRS_AT;
/**
 * Most children of an inner node. Wide, so that a 1 MB text is two levels
 * deep (a root that stays in cache, and one node a lookup reads a line of);
 * the runs below keep what an edit rewrites per level small all the same.
 */
export const KIDS_MAX = 128;
/** Int32s per child entry of a node: its units and code points (running sums), its id, one unused. */
export const ENTRY = 4;
/** Int32s of _ent per node. */
export const NODE = KIDS_MAX * ENTRY;
/**
 * Int32s of _ent per run of eight entries, as a shift: each run of a node
 * has a bias of its own (see the constructor), so that a change to a child
 * rewrites a few entries of its run and the biases of the runs after it,
 * not half of a wide node.
 */
export const RUN_SHIFT = 5;
const RUNS = NODE >> RUN_SHIFT;
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
    // Leaves: leaf s has a head, HEAD units of _head from s * HEAD (its
    // length, its code points, where its text starts past TEXT, and the
    // offsets of its surrogate pairs: their high halves, in order, as many
    // as its units exceed its code points), and a slot, SLOT units of _buf
    // from s * SLOT, its text somewhere in TEXT..TEXT + LEAF_MAX. A
    // leaf with more than HEAD_PAIRS pairs keeps their offsets in its slot
    // (from 2) instead.
    //
    // Why apart: on a large text the slots span thousands of pages, the
    // heads a few dozen. Converting a position reads only a head, and an
    // edit the head and the lines of text it moves, not also the start of
    // the slot: at a place nobody touched lately that is a line of memory
    // less, and no page walk for a conversion (measured on a 1 MB text: a
    // conversion 105 -> 90 ns with everything in cache).
    this._buf = new Uint16Array(4 * SLOT);
    this._head = new Uint16Array(4 * HEAD);
    this._leaves = 0; // slots handed out so far (free ones included)
    this._freeLeaves = [];
    // Inner nodes: child j of node n is the ENTRY int32s of _ent from
    // n * NODE + j * ENTRY: the UTF-16 units and code points of the node's
    // children up to and including it (running sums, so a lookup finds a
    // child by guessing from its share of the node and stepping, without
    // adding up the ones before it), and its id. One entry holds all a
    // lookup reads of a child, so a level costs one line of memory (two
    // when the child before it is on the line before), not one per array.
    // An entry is addressed by its offset in _ent.
    //
    // The entries of a node come in runs of eight (1 << RUN_SHIFT int32s),
    // and the true running sum of the entry at e is _ent[e] plus the bias of
    // its run, _bias[2 * (e >> RUN_SHIFT)] (code points: _ent[e + 1] and the
    // next int of _bias). A change to a child must add to its entry and every
    // one after it: it is added to the entries after it in its run, or, when
    // those are more than half of the run, to the run's bias and taken off
    // the entries before it instead, and to the bias of every later run. So
    // an edit that moves a leaf's counts rewrites at most four entries and a
    // few biases of each node along its path, on a wide node as on a narrow
    // one (the sums an edit settled, half a node per level, were a quarter of
    // its cost on a large text).
    this._ent = new Int32Array(4 * NODE);
    this._bias = new Int32Array(4 * RUNS * 2);
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
      if ((slot + 1) * SLOT > this._buf.length) {
        this._buf = grown(this._buf, this._buf.length * 2);
        this._head = grown(this._head, this._head.length * 2);
      }
    }
    const buf = this._buf;
    const o = slot * SLOT;
    // The text in the middle of its room, so an edit can move the shorter
    // side of it (see `_replace` in rope.js).
    const start = (LEAF_MAX - (to - from)) >> 1;
    const t = o + TEXT + start - from;
    let pairs = 0;
    for (let i = from; i < to; i++) {
      const c = s.charCodeAt(i);
      buf[t + i] = c;
      if (isLow(c) && i > from && isHigh(s.charCodeAt(i - 1))) buf[o + 2 + pairs++] = i - 1 - from;
    }
    const head = this._head;
    const hd = slot * HEAD;
    head[hd] = to - from;
    head[hd + 1] = to - from - pairs;
    head[hd + START] = start;
    // The offsets went to the slot; a leaf with few keeps them in its head.
    if (pairs <= HEAD_PAIRS) for (let j = 0; j < pairs; j++) head[hd + PAIRS_AT + j] = buf[o + 2 + j];
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
        this._ent = grown(this._ent, size * NODE);
        this._count = grown(this._count, size);
        this._bias = grown(this._bias, size * RUNS * 2);
      }
    }
    let units = 0;
    let points = 0;
    const ent = this._ent;
    for (let j = 0, e = n * NODE; j < kids.length; j++, e += ENTRY) {
      ent[e] = units += this._totalOf(kids[j], h - 1, 0);
      ent[e + 1] = points += this._totalOf(kids[j], h - 1, 1);
      ent[e + 2] = kids[j];
    }
    this._count[n] = kids.length;
    this._bias.fill(0, n * RUNS * 2, (n + 1) * RUNS * 2);
    return n;
  }

  /** What slot or node `id` of height `h` holds: UTF-16 units (`field` 0) or code points (1). */
  _totalOf(id, h, field) {
    if (h === 0) return this._head[id * HEAD + field];
    return this._count[id] > 0 ? this._sum(id * NODE + (this._count[id] - 1) * ENTRY, field) : 0;
  }

  /** The true running sum of the entry at `e`: UTF-16 units (`field` 0) or code points (1). */
  _sum(e, field) {
    return this._ent[e + field] + this._bias[((e >> RUN_SHIFT) << 1) + field];
  }

  /** The children of node `n`, as a new array. */
  _kidsOf(n) {
    const out = [];
    for (let e = n * NODE, end = e + this._count[n] * ENTRY; e < end; e += ENTRY) out.push(this._ent[e + 2]);
    return out;
  }

  /** What each child of node `n` holds in UTF-16 units (`field` 0) or code points (1), as a new array. */
  _measuresOf(n, field) {
    const out = [];
    for (let e = n * NODE, end = e + this._count[n] * ENTRY, before = 0; e < end; e += ENTRY) {
      const sum = this._sum(e, field);
      out.push(sum - before);
      before = sum;
    }
    return out;
  }

  /**
   * Adds `units` and `points` to the running sums of child entry `e` and the
   * ones after it in its node: to those of its run, or, when they are more
   * than half of the run, to the run's bias, taking them off the entries
   * before `e`; and to the biases of the later runs.
   */
  _addFrom(e, units, points) {
    const ent = this._ent;
    const bias = this._bias;
    const n = (e / NODE) | 0;
    const end = n * NODE + this._count[n] * ENTRY;
    const run = e >> RUN_SHIFT;
    const first = run << RUN_SHIFT;
    const stop = Math.min(end, first + (1 << RUN_SHIFT));
    if (stop - e <= e - first) {
      for (let x = e; x < stop; x += ENTRY) {
        ent[x] += units;
        ent[x + 1] += points;
      }
    } else {
      bias[run << 1] += units;
      bias[(run << 1) + 1] += points;
      for (let x = first; x < e; x += ENTRY) {
        ent[x] -= units;
        ent[x + 1] -= points;
      }
    }
    for (let r = run + 1, last = (end - 1) >> RUN_SHIFT; r <= last; r++) {
      bias[r << 1] += units;
      bias[(r << 1) + 1] += points;
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
      const o = this._textOf(id);
      const len = this._head[id * HEAD];
      out.set(this._buf.subarray(o, o + len), at);
      return at + len;
    }
    for (let e = id * NODE, end = e + this._count[id] * ENTRY; e < end; e += ENTRY) at = this._copyUnits(this._ent[e + 2], h - 1, out, at);
    return at;
  }

  /** The text of leaf `slot`. */
  _leafText(slot) {
    const o = this._textOf(slot);
    return decode(this._buf, o, o + this._head[slot * HEAD]);
  }

  /** Where the text of leaf `slot` starts in _buf. */
  _textOf(slot) {
    return slot * SLOT + TEXT + this._head[slot * HEAD + START];
  }

  // ---- positions inside a leaf --------------------------------------------

  /** UTF-16 units of the first `k` code points of leaf `slot`. */
  _unitsOf(slot, k) {
    return this._unitsIn(slot, this._head[slot * HEAD] - this._head[slot * HEAD + 1], k);
  }

  /** `_unitsOf` for a leaf with `n` surrogate pairs. */
  _unitsIn(slot, n, k) {
    if (n === 0) return k; // no surrogate pair: most leaves of many texts
    // Pair j is code point pairs[j] - j: the pairs before code point `k`.
    if (n <= HEAD_PAIRS) return k + this._pairsBelow(this._head, slot * HEAD + PAIRS_AT, n, k, 1);
    return k + this._pairsBelow(this._buf, slot * SLOT + 2, n, k, 1);
  }

  /**
   * How many of the `n` pair offsets from `o` of `pairs` (_head or _buf)
   * have `offset - perPair * j` (j their index) below `limit`: those values
   * rise with j, so they are counted by halves while there are many, then
   * one by one.
   */
  _pairsBelow(pairs, o, n, limit, perPair) {
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
    const pairs = n <= HEAD_PAIRS ? this._head : this._buf;
    const o = n <= HEAD_PAIRS ? slot * HEAD + PAIRS_AT : slot * SLOT + 2;
    // The pairs wholly before `u`: those whose low half is before it.
    const j = this._pairsBelow(pairs, o, n, u - 1, 0);
    return j < n && pairs[o + j] + 1 === u ? -1 : u - j;
  }

  /**
   * Updates the pair list of leaf `slot` (which had `n` pairs) for units
   * `from`..`to` replaced by `insert`, `d16` units longer; returns the
   * pairs `insert` brought.
   */
  _movePairs(slot, n, from, to, insert, d16) {
    let pairs = n <= HEAD_PAIRS ? this._head : this._buf;
    let o = n <= HEAD_PAIRS ? slot * HEAD + PAIRS_AT : slot * SLOT + 2;
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
    const now = n + move;
    if (n <= HEAD_PAIRS && now > HEAD_PAIRS) {
      // Too many for the head from now on: to the slot.
      const s = slot * SLOT + 2;
      for (let j = 0; j < n; j++) this._buf[s + j] = pairs[o + j];
      pairs = this._buf;
      o = s;
    }
    if (move !== 0) pairs.copyWithin(o + end + move, o + end, o + n);
    for (let j = end + move; j < n + move; j++) pairs[o + j] += d16;
    if (added > 0) {
      let j = o + first;
      for (let i = 0; i + 1 < insert.length; i++) {
        if (isHigh(insert.charCodeAt(i)) && isLow(insert.charCodeAt(i + 1))) pairs[j++] = from + i++;
      }
    }
    if (n > HEAD_PAIRS && now <= HEAD_PAIRS) {
      // Few enough for the head again.
      const h = slot * HEAD + PAIRS_AT;
      for (let j = 0; j < now; j++) this._head[h + j] = pairs[o + j];
    }
    return added;
  }

  // ---- for tests ----------------------------------------------------------------

  /**
   * The tree under `root` (of height `h`) as plain objects (`{h, node, kids,
   * lens, cpl}` for a node, `{h: 0, slot, len, cps, start, text, pairs, inHead}`
   * for a leaf, `inHead` when its pair offsets are kept in its head), and
   * the slots and nodes in use and free: what the tests check the layout with.
   */
  _layout(root, h) {
    const view = (id, h) => {
      if (h === 0) {
        const hd = id * HEAD;
        const n = this._head[hd] - this._head[hd + 1];
        const inHead = n <= HEAD_PAIRS;
        const o = inHead ? hd + PAIRS_AT : id * SLOT + 2;
        const pairs = Array.from((inHead ? this._head : this._buf).subarray(o, o + n));
        return { h, slot: id, len: this._head[hd], cps: this._head[hd + 1], start: this._head[hd + START], text: this._leafText(id), pairs, inHead };
      }
      return {
        h,
        node: id,
        kids: this._kidsOf(id).map((k) => view(k, h - 1)),
        lens: this._measuresOf(id, 0),
        cpl: this._measuresOf(id, 1),
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
