// The text of a document as the SDK holds it: a B-tree over the flat
// storage of rope-store.js, so that an op or a position costs the same on a
// megabyte as on an empty text (bench/textdoc.js measures it). This module
// is the tree: finding the leaf of a position (from the root, or from the
// last leaf found, where someone typing keeps landing), edits, and the
// rebuilds that keep leaves and nodes within their bounds.
//
// An edit inside one leaf moves the units before or after it (the fewer)
// within the slot and notes
// its change for the running sums along the path, allocating nothing. Only an
// edit that overflows, empties or spans leaves rebuilds, and then only the
// nodes along its path.
//
// The text is well formed (the SDK refuses lone surrogates in local edits;
// the server's text is UTF-8), and no leaf boundary falls inside a surrogate
// pair, so the leaves' code point counts add up to the text's.

import { codePointLength, utf8Length } from './units.js';
import { ENTRY, HEAD, KIDS_FILL, KIDS_MAX, KIDS_MIN, LEAF_FILL, LEAF_MAX, LEAF_MIN, NODE, RUN_SHIFT, RopeStore, SLOT, START, TEXT, decode, decodeAll, grown, isHigh, isLow } from './rope-store.js';

/** The changes of an op applied without `describe`. */
const NONE = Object.freeze([]);

export class Rope extends RopeStore {
  constructor(text = '') {
    super();
    // The root (a slot when _height is 0, a node otherwise) and its measures.
    this._root = 0;
    this._height = 0;
    this._len = 0;
    this._cps = 0;
    /**
     * The leaf the last lookup found (-1: none), the code points and UTF-16
     * units before it, and the entries (child indices of the node arrays) from
     * the root down to it (`_depth` of them): an edit inside it adds its
     * change along that path, and positions in it (someone typing) need no
     * walk from the root. Valid until the tree is rebuilt somewhere (an edit
     * inside the leaf keeps it valid: what comes before it does not move).
     */
    this._finger = -1;
    this._fingerBase = 0;
    this._fingerBase16 = 0;
    // The finger's UTF-16 units and code points (read off its entry on the
    // way down, so a lookup does not read the leaf's own counts).
    this._fingerLen = 0;
    this._fingerCps = 0;
    this._path = new Int32Array(16);
    this._depth = 0;
    // What edits inside the finger changed (UTF-16 units, code points) not
    // yet added to the running sums along its path: an edit adds to these
    // two, and whatever reads the sums settles them first (`_settle`), so
    // someone typing pays for the sums once per leaf rather than per key.
    this._pend16 = 0;
    this._pendCps = 0;
    this._base = 0;
    this._base16 = 0;
    /** The UTF-16 offset of the last `replace` (what `_replace` returns beside the text). */
    this._at = 0;
    this._setRoot(this._leavesOf(text), 0);
    this._string = text;
  }

  /** Length in UTF-16 units. */
  get length() {
    return this._len;
  }

  /** Length in code points. */
  get codePoints() {
    return this._cps;
  }

  // ---- building and rebuilding ----------------------------------------------

  /**
   * Leaves of `s` in order, no surrogate pair cut: as even as possible, none
   * over LEAF_MAX / 2 once there are two, so edits have room to grow them in
   * place (and none under LEAF_MIN).
   */
  _leavesOf(s) {
    const out = [];
    if (s.length === 0) return out;
    const pieces = s.length <= LEAF_MAX ? 1 : Math.ceil(s.length / LEAF_FILL);
    const size = Math.ceil(s.length / pieces);
    for (let from = 0; from < s.length; ) {
      let to = Math.min(s.length, from + size);
      if (to < s.length && isLow(s.charCodeAt(to)) && isHigh(s.charCodeAt(to - 1))) to--;
      out.push(this._newLeaf(s, from, to));
      from = to;
    }
    return out;
  }

  /** Inner nodes of height `h` holding `kids` in order, as even as possible, like `_leavesOf`. */
  _innersOf(kids, h) {
    const out = [];
    if (kids.length === 0) return out;
    const pieces = kids.length <= KIDS_MAX ? 1 : Math.ceil(kids.length / KIDS_FILL);
    const size = Math.ceil(kids.length / pieces);
    for (let from = 0; from < kids.length; from += size) out.push(this._newNode(kids.slice(from, from + size), h));
    return out;
  }

  /** Makes one root over `ids` (of height `h`, in order); an empty leaf when there are none. */
  _setRoot(ids, h) {
    while (ids.length > 1) ids = this._innersOf(ids, ++h);
    let root;
    if (ids.length === 1) root = ids[0];
    else {
      root = this._newLeaf('', 0, 0);
      h = 0;
    }
    while (h > 0 && this._count[root] === 1) {
      const only = this._ent[root * NODE + 2];
      this._free(root, h);
      root = only;
      h--;
    }
    this._root = root;
    this._height = h;
    this._len = this._totalOf(root, h, 0);
    this._cps = this._totalOf(root, h, 1);
  }

  _underfull(id, h) {
    return h === 0 ? this._head[id * HEAD] < LEAF_MIN : this._count[id] < KIDS_MIN;
  }

  /** `a` then `b` (height `h`, given back) as one node, or two even ones when that is too large. */
  _merge(a, b, h) {
    if (h === 0) {
      const s = this._leafText(a) + this._leafText(b);
      this._free(a, 0);
      this._free(b, 0);
      return this._leavesOf(s);
    }
    const kids = this._kidsOf(a).concat(this._kidsOf(b));
    this._free(a, h);
    this._free(b, h);
    return this._innersOf(kids, h);
  }

  /**
   * Merges the underfull nodes of `ids` (height `h`) between `lo` and `hi`
   * (inclusive) with a neighbour. Only nodes an edit rebuilt can be underfull.
   */
  _mend(ids, h, lo, hi) {
    let p = Math.max(0, lo);
    while (p <= hi && p < ids.length && ids.length > 1) {
      if (!this._underfull(ids[p], h)) {
        p++;
        continue;
      }
      const q = p + 1 < ids.length ? p : p - 1; // merge ids[q] and ids[q + 1]
      const merged = this._merge(ids[q], ids[q + 1], h);
      ids.splice(q, 2, ...merged);
      hi += merged.length - 2;
      // One node may still be underfull (look at it again); two or more even
      // parts of more than a full node are not.
      p = merged.length === 1 ? q : q + merged.length;
    }
  }

  /** Appends the texts of the leaves under `id` (height `h`) to `parts`. */
  _texts(id, h, parts) {
    if (h === 0) parts.push(this._leafText(id));
    else for (const k of this._kidsOf(id)) this._texts(k, h - 1, parts);
  }

  /** Appends the text between code points `from` and `to` of `id` (height `h`) to `parts`. */
  _collect(id, h, from, to, parts) {
    if (h === 0) {
      const o = this._textOf(id);
      parts.push(decode(this._buf, o + this._unitsOf(id, from), o + this._unitsOf(id, to)));
      return;
    }
    const ent = this._ent;
    for (let e = id * NODE, end = e + this._count[id] * ENTRY, off = 0; e < end && off < to; off = this._sum(e, 1), e += ENTRY) {
      const c = this._sum(e, 1) - off;
      if (off + c > from) {
        if (from <= off && off + c <= to) this._texts(ent[e + 2], h - 1, parts);
        else this._collect(ent[e + 2], h - 1, Math.max(0, from - off), Math.min(c, to - off), parts);
      }
    }
  }

  /**
   * Replaces code points `from`..`to` of `id` (height `h`) with `insert`,
   * appending the text taken out to `removed`. Gives `id` back and returns
   * the ids (of height `h`, none when nothing is left) to put in its place:
   * the children the range touches are rebuilt, the ones inside it given
   * back, the others kept.
   */
  _edit(id, h, from, to, insert, removed) {
    if (h === 0) {
      const s = this._leafText(id);
      const f = this._unitsOf(id, from);
      const t = this._unitsOf(id, to);
      if (t > f) removed.push(s.slice(f, t));
      this._free(id, 0);
      return this._leavesOf(s.slice(0, f) + insert + s.slice(t));
    }
    // Read the node before anything below reuses or moves the arrays.
    const kids = this._kidsOf(id);
    const cpl = this._measuresOf(id, 1);
    this._free(id, h);
    // The first child the range touches (one ending exactly at `from` takes
    // the insert) and the last, and where the first starts.
    let i = 0;
    let off = 0;
    while (i < kids.length - 1 && from > off + cpl[i]) off += cpl[i++];
    let j = i;
    let offJ = off;
    while (j < kids.length - 1 && to > offJ + cpl[j]) offJ += cpl[j++];
    let fresh;
    if (i === j) {
      fresh = this._edit(kids[i], h - 1, from - off, to - off, insert, removed);
    } else {
      fresh = this._edit(kids[i], h - 1, from - off, cpl[i], insert, removed);
      for (let m = i + 1; m < j; m++) {
        this._texts(kids[m], h - 1, removed);
        this._freeTree(kids[m], h - 1);
      }
      fresh = fresh.concat(this._edit(kids[j], h - 1, 0, to - offJ, '', removed));
    }
    const out = kids.slice(0, i).concat(fresh, kids.slice(j + 1));
    this._mend(out, h - 1, i - 1, i + fresh.length);
    return this._innersOf(out, h);
  }

  // ---- lookups ----------------------------------------------------------------

  /**
   * The whole text, built on the first call after a change: the leaves'
   * units copied into one array and decoded at once (`decodeAll`), not
   * decoded leaf by leaf and joined, which cost ten times more (an
   * application that reads `doc.text` after each op pays it per op).
   */
  toString() {
    if (this._string === null) {
      const units = new Uint16Array(this._len);
      this._copyUnits(this._root, this._height, units, 0);
      this._string = decodeAll(units);
    }
    return this._string;
  }

  /**
   * The leaf holding code point `k` (the last leaf when `k` is the end; at
   * a boundary between leaves, the later one), which becomes the finger;
   * sets `_base` and `_base16` (code points and UTF-16 units before it).
   */
  _findPoint(k) {
    const f = this._finger;
    if (f >= 0) {
      const off = k - this._fingerBase;
      const cps = this._fingerCps;
      if (off >= 0 && (off < cps || (off === cps && this._fingerBase + cps === this._cps))) {
        this._base = this._fingerBase;
        this._base16 = this._fingerBase16;
        return f;
      }
    }
    return this._descend(k, false);
  }

  /** The leaf holding UTF-16 offset `u` (the last leaf when `u` is the end), like `_findPoint`. */
  _findUnit(u) {
    const f = this._finger;
    if (f >= 0) {
      const off = u - this._fingerBase16;
      const len = this._fingerLen;
      if (off >= 0 && (off < len || (off === len && this._fingerBase16 + len === this._len))) {
        this._base = this._fingerBase;
        this._base16 = this._fingerBase16;
        return f;
      }
    }
    return this._descend(u, true);
  }

  /**
   * Walks from the root to the leaf holding position `k`, counted in UTF-16
   * units when `units` is set and in code points otherwise, recording the
   * path, and makes that leaf the finger. One walk serves both measures, so
   * the two lookups cannot drift apart.
   */
  _descend(k, units) {
    this._settle();
    const ent = this._ent;
    const bias = this._bias;
    const by = units ? 0 : 1; // the field of the running sums walked by, in an entry and in a bias
    const oth = 1 - by;
    const count = this._count;
    let path = this._path;
    let base = 0; // before the leaf, in the measure walked by
    let other = 0; // before the leaf, in the other measure
    let total = units ? this._len : this._cps; // of the node walked through
    let totalOther = units ? this._cps : this._len;
    let depth = 0;
    let n = this._root;
    for (let h = this._height; h > 0; h--) {
      const first = n * NODE;
      const kids = count[n];
      // The children of a node hold about the same: guess the child from
      // `k`'s share of the node, then step to the first one ending after
      // `k` (the last one at the end), most often none or one step. A true
      // running sum is its entry's plus its run's bias.
      let j = ((k * kids) / total) | 0;
      if (!(j < kids)) j = kids - 1;
      let e = first + j * ENTRY;
      const last = first + (kids - 1) * ENTRY;
      while (e < last && ent[e + by] + bias[((e >> RUN_SHIFT) << 1) + by] <= k) e += ENTRY;
      let p = e - ENTRY; // the entry before
      while (e > first && ent[p + by] + bias[((p >> RUN_SHIFT) << 1) + by] > k) {
        e = p;
        p -= ENTRY;
      }
      let start = 0;
      let startOther = 0;
      if (e > first) {
        const b = (p >> RUN_SHIFT) << 1;
        start = ent[p + by] + bias[b + by];
        startOther = ent[p + oth] + bias[b + oth];
      }
      const b = (e >> RUN_SHIFT) << 1;
      k -= start;
      base += start;
      other += startOther;
      total = ent[e + by] + bias[b + by] - start;
      totalOther = ent[e + oth] + bias[b + oth] - startOther;
      if (depth === path.length) this._path = path = grown(path, depth * 2);
      path[depth++] = e;
      n = ent[e + 2];
    }
    this._finger = n;
    this._depth = depth;
    this._fingerLen = units ? total : totalOther;
    this._fingerCps = units ? totalOther : total;
    if (units) {
      this._fingerBase = this._base = other;
      this._fingerBase16 = this._base16 = base;
    } else {
      this._fingerBase = this._base = base;
      this._fingerBase16 = this._base16 = other;
    }
    return n;
  }

  /** Adds the finger's pending changes to the running sums along its path. */
  _settle() {
    if (this._pend16 === 0 && this._pendCps === 0) return;
    for (let d = 0; d < this._depth; d++) this._addFrom(this._path[d], this._pend16, this._pendCps);
    this._pend16 = this._pendCps = 0;
  }

  /** The UTF-16 offset of code point offset `cp`, clamped to the end of the text. */
  toUtf16(cp) {
    if (cp >= this._cps) return this._len;
    if (!(cp > 0)) return 0;
    const n = this._findPoint(cp);
    return this._base16 + this._unitsIn(n, this._fingerLen - this._fingerCps, cp - this._base);
  }

  /**
   * The code point offset of UTF-16 offset `index`. Throws a RangeError when
   * `index` is out of range or inside a surrogate pair (never rounds).
   */
  toCodePoints(index) {
    const length = this._len;
    if (!Number.isInteger(index) || index < 0 || index > length) {
      throw new RangeError(`offset ${index} is outside the text (length ${length})`);
    }
    const cp = this.pointAt(index);
    if (cp < 0) throw new RangeError(`offset ${index} is inside a surrogate pair`);
    return cp;
  }

  /** The code point offset of UTF-16 offset `index` (within the text), or -1 inside a surrogate pair. */
  pointAt(index) {
    if (index === 0) return 0;
    const n = this._findUnit(index);
    const u = index - this._base16;
    const cp = this._pointsIn(n, this._fingerLen - this._fingerCps, u);
    return cp < 0 ? -1 : this._base + cp;
  }

  /** True when UTF-16 offset `index` falls between the halves of a surrogate pair. */
  splitsPair(index) {
    if (!(index > 0) || index >= this._len) return false;
    const n = this._findUnit(index);
    // No leaf boundary falls inside a pair.
    return this._pointsIn(n, this._fingerLen - this._fingerCps, index - this._base16) < 0;
  }

  /** The text between code point offsets `from` and `to` (both within the text). */
  slice(from, to) {
    if (to <= from) return '';
    const n = this._findPoint(from);
    const k = from - this._base;
    if (to - this._base <= this._fingerCps) {
      const o = this._textOf(n);
      const pairs = this._fingerLen - this._fingerCps;
      return decode(this._buf, o + this._unitsIn(n, pairs, k), o + this._unitsIn(n, pairs, to - this._base));
    }
    const parts = [];
    this._settle();
    this._collect(this._root, this._height, from, to, parts);
    return parts.join('');
  }

  // ---- edits ------------------------------------------------------------------

  /**
   * Replaces `remove` code points at code point `at` with `insert`. Returns
   * the UTF-16 offset of `at` and the text removed. The range must be
   * within the text.
   */
  replace(at, remove, insert) {
    const removed = this._replace(at, remove, insert);
    return { at: this._at, removed };
  }

  /** `replace`, returning the text removed and leaving the offset in `_at` (no object per edit). */
  _replace(at, remove, insert) {
    this._string = null;
    // The common case: the range is inside one leaf, which stays within bounds.
    const n = this._findPoint(at);
    const k = at - this._base;
    const cps = this._fingerCps;
    if (k + remove <= cps) {
      const len = this._fingerLen;
      const had = len - cps; // surrogate pairs
      const from = this._unitsIn(n, had, k);
      const to = remove === 0 ? from : this._unitsIn(n, had, k + remove);
      const d16 = insert.length - (to - from);
      const size = len + d16;
      if (size <= LEAF_MAX && (size >= LEAF_MIN || d16 >= 0 || this._depth === 0)) {
        const buf = this._buf;
        const head = this._head;
        const room = n * SLOT + TEXT;
        let start = head[n * HEAD + START];
        let o = room + start;
        const removed = decode(buf, o + from, o + to);
        if (d16 !== 0) {
          // Move the shorter side of the text: the part before the range
          // (the text then starts elsewhere) or the one after it, where
          // there is room; on a large text the lines of text an edit moves
          // are most of the memory it reads.
          const left = start >= d16; // room before the text
          const right = start + size <= LEAF_MAX; // room after it
          if (left && (from < len - to || !right)) {
            buf.copyWithin(o - d16, o, o + from);
            start -= d16;
          } else if (right) {
            buf.copyWithin(o + from + insert.length, o + to, o + len);
          } else {
            // No room on either side: the text to the middle again (the
            // part before moves left, as start > LEAF_MAX - size >= there).
            const there = (LEAF_MAX - size) >> 1;
            buf.copyWithin(room + there, o, o + from);
            buf.copyWithin(room + there + from + insert.length, o + to, o + len);
            start = there;
          }
          head[n * HEAD + START] = start;
          o = room + start;
        }
        for (let j = 0; j < insert.length; j++) buf[o + from + j] = insert.charCodeAt(j);
        // Pairs of the leaf and of the insert (none: nothing to move).
        const added = had === 0 && insert.length < 2 ? 0 : this._movePairs(n, had, from, to, insert, d16);
        const dcp = insert.length - added - remove;
        head[n * HEAD] = this._fingerLen = size;
        head[n * HEAD + 1] = this._fingerCps = cps + dcp;
        this._pend16 += d16;
        this._pendCps += dcp;
        this._len += d16;
        this._cps += dcp;
        this._at = this._base16 + from;
        return removed;
      }
    }
    // Rebuild the nodes along the range's path.
    this._settle();
    this._at = this.toUtf16(at);
    this._finger = -1;
    const removed = [];
    const h = this._height;
    this._setRoot(this._edit(this._root, h, at, at + remove, insert, removed), h);
    return removed.join('');
  }

  /**
   * Applies `op` (code points). Returns the change in UTF-16 terms in the
   * two shapes `applyOp` (ot.js) gives for a string (empty unless
   * `describe`), and the change in UTF-8 bytes. Throws, leaving the text as
   * it was, if the op does not fit.
   */
  apply(op, describe = true) {
    if (!Array.isArray(op)) throw new TypeError('an op must be an array of components');
    let span = 0;
    for (const c of op) {
      if (typeof c === 'number') span += c;
      else if (typeof c === 'string') continue;
      else if (c && typeof c.d === 'number') span += c.d;
      else if (c && typeof c.d === 'string') span += codePointLength(c.d);
      else throw new TypeError(`invalid op component ${JSON.stringify(c)}`);
    }
    if (span > this.codePoints) throw new RangeError('position is past the end of the text');
    const changes = describe ? [] : NONE;
    const edits = describe ? [] : NONE;
    let cp = 0; // code point position in the text being changed
    let shift = 0; // UTF-16 units the steps so far added (new offset - old offset)
    let bytes = 0;
    let open = null; // the change still growing at this position
    for (const c of op) {
      if (typeof c === 'number') {
        cp += c;
        open = null;
      } else if (typeof c === 'string') {
        this._replace(cp, 0, c);
        if (describe) {
          const at = this._at;
          edits.push({ type: 'insert', index: at, text: c });
          if (open) open.insert += c;
          else changes.push((open = { from: at - shift, to: at - shift, insert: c }));
          shift += c.length;
        }
        cp += codePointLength(c);
        bytes += utf8Length(c);
      } else {
        const n = typeof c.d === 'number' ? c.d : codePointLength(c.d);
        if (n === 0) {
          if (!describe) continue;
          const at = this.toUtf16(cp);
          edits.push({ type: 'delete', index: at, length: 0 });
          if (!open) changes.push((open = { from: at - shift, to: at - shift, insert: '' }));
          continue;
        }
        const removed = this._replace(cp, n, '');
        bytes -= utf8Length(removed);
        if (!describe) continue;
        const at = this._at;
        edits.push({ type: 'delete', index: at, length: removed.length });
        if (open) open.to = at - shift + removed.length;
        else changes.push((open = { from: at - shift, to: at - shift + removed.length, insert: '' }));
        shift -= removed.length;
      }
    }
    return { changes, edits, bytes };
  }

  /** The change in UTF-8 bytes `op` would make (it must fit the text). */
  bytesChange(op) {
    let cp = 0;
    let bytes = 0;
    for (const c of op) {
      if (typeof c === 'number') cp += c;
      else if (typeof c === 'string') bytes += utf8Length(c);
      else {
        const n = typeof c.d === 'number' ? c.d : codePointLength(c.d);
        bytes -= utf8Length(this.slice(cp, cp + n));
        cp += n;
      }
    }
    return bytes;
  }

  // ---- for tests ----------------------------------------------------------------

  /** The tree and its storage as plain objects (`_layout`), and the text's measures. */
  _inspect() {
    this._settle();
    return { ...this._layout(this._root, this._height), len: this._len, cps: this._cps };
  }
}
