// The text of a document as the SDK holds it: a B-tree whose leaves are
// chunks of at most LEAF_MAX UTF-16 units and whose inner nodes keep, side
// by side in plain number arrays, each child's length in UTF-16 units and in
// code points. Every leaf is at the same depth, and a node holds up to
// KIDS_MAX children, so a megabyte is three levels deep: finding a position
// reads a few short arrays instead of chasing a pointer per level of a binary
// tree, and a leaf knows where its surrogate pairs are, so converting a
// position between code points (the wire) and UTF-16 (editors), checking a
// range and applying an op never scan the text. A leaf holds its text in a
// UTF-16 buffer with room to grow: an edit inside one leaf moves the units
// after it along the buffer, writes the insert and adds its change to the
// counts on the way down, allocating nothing (a string per leaf was copied
// whole by every edit, and the copies kept the garbage collector busy); only
// an edit that overflows, empties or spans leaves rebuilds, and then only the
// nodes along its path. The string itself is built only when someone asks
// for it, and kept until the next change. bench/textdoc.js measures it.
//
// The text is well formed (the SDK refuses lone surrogates in local edits;
// the server's text is UTF-8), and no leaf boundary falls inside a surrogate
// pair, so the leaves' code point counts add up to the text's.

import { codePointLength, utf8Length } from './units.js';

/** Largest leaf (UTF-16 units): what an edit inside one leaf copies. */
const LEAF_MAX = 1024;
/** A leaf an edit leaves smaller than this is merged with a neighbour. */
const LEAF_MIN = LEAF_MAX / 4;
/** Most children of an inner node: what a lookup reads per level. */
const KIDS_MAX = 32;
/** An inner node left with fewer children than this is merged with a neighbour. */
const KIDS_MIN = KIDS_MAX / 4;

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The offsets of the surrogate pairs of `s` (their high halves), or null
 * when it has none: with them a leaf converts positions without a scan.
 */
function pairsOf(s) {
  let pairs = null;
  for (let i = 0; i + 1 < s.length; i++) {
    if (isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1))) {
      if (pairs === null) pairs = [];
      pairs.push(i);
      i++;
    }
  }
  return pairs;
}

/** How many of ascending `xs` are below `x`. */
function countBelow(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** How many pairs of ascending offsets `pairs` start before code point `k` (pair j is code point pairs[j] - j). */
function pairsBeforePoint(pairs, k) {
  let lo = 0;
  let hi = pairs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pairs[mid] - mid < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A leaf's buffer for `n` units: room to grow by half (typing), within LEAF_MAX. */
const capacityFor = (n) => Math.min(LEAF_MAX, Math.max(16, n + (n >> 1)));

/** The text of units `f`..`t` of `buf`. */
function decode(buf, f, t) {
  // One character, or an emoji (what a keystroke deletes), without the
  // subarray and the spread call: those cost some 130 ns, more than the
  // rest of the edit.
  if (t - f === 1) return String.fromCharCode(buf[f]);
  if (t - f === 2) return String.fromCharCode(buf[f], buf[f + 1]);
  if (t <= f) return '';
  return String.fromCharCode.apply(null, buf.subarray(f, t));
}

/**
 * A chunk of the text, held in a UTF-16 buffer with room to grow: an edit
 * inside it moves the units after the change along the buffer and writes
 * the insert, allocating nothing (a JavaScript string would be copied
 * whole on every edit, and the copies are garbage for the collector). Its
 * text as a string is built when asked for, and kept until its next edit.
 */
class Leaf {
  constructor(s, pairs = pairsOf(s)) {
    this.h = 0; // height: leaves are 0
    const buf = new Uint16Array(capacityFor(s.length));
    for (let i = 0; i < s.length; i++) buf[i] = s.charCodeAt(i);
    this.buf = buf;
    this.s = s; // the text, or null when not built since the last edit
    this.pairs = pairs; // surrogate pairs of the text (pairsOf)
    this.len = s.length; // UTF-16 units
    this.cps = s.length - (pairs ? pairs.length : 0); // code points
  }

  /** The leaf's text. */
  text() {
    if (this.s === null) this.s = decode(this.buf, 0, this.len);
    return this.s;
  }

  /**
   * Replaces units `from`..`to` with `insert` (the leaf stays within
   * LEAF_MAX); returns the text taken out.
   */
  splice(from, to, insert) {
    let buf = this.buf;
    const removed = to > from ? decode(buf, from, to) : '';
    const size = this.len - (to - from) + insert.length;
    if (size > buf.length) {
      const grown = new Uint16Array(capacityFor(size));
      grown.set(buf.subarray(0, from));
      grown.set(buf.subarray(to, this.len), from + insert.length);
      this.buf = buf = grown;
    } else if (to - from !== insert.length) {
      buf.copyWithin(from + insert.length, to, this.len);
    }
    for (let j = 0; j < insert.length; j++) buf[from + j] = insert.charCodeAt(j);
    this.len = size;
    this.s = null;
    return removed;
  }
}

class Inner {
  constructor(kids) {
    this.h = kids[0].h + 1;
    this.kids = kids;
    /** UTF-16 units and code points of each child, read without touching the children. */
    this.lens = [];
    this.cpl = [];
    let len = 0;
    let cps = 0;
    for (const k of kids) {
      this.lens.push(k.len);
      this.cpl.push(k.cps);
      len += k.len;
      cps += k.cps;
    }
    this.len = len;
    this.cps = cps;
  }
}

/** UTF-16 units of the first `k` code points of leaf `n`. */
function unitsOf(n, k) {
  return n.pairs === null ? k : k + pairsBeforePoint(n.pairs, k);
}

/** Code points of the first `u` UTF-16 units of leaf `n` (a cut pair's high half counts one). */
function pointsOf(n, u) {
  return n.pairs === null ? u : u - countBelow(n.pairs, u - 1);
}

/** True when offset `u` of leaf `n` falls between the halves of a pair. */
function cutsPair(n, u) {
  if (n.pairs === null) return false;
  const before = countBelow(n.pairs, u);
  return before > 0 && n.pairs[before - 1] + 1 === u;
}

/**
 * Leaves of `s` in order, no surrogate pair cut: as even as possible, none
 * over LEAF_MAX / 2 once there are two, so edits have room to grow them in
 * place (and none under LEAF_MIN).
 */
function leavesOf(s) {
  const out = [];
  if (s.length === 0) return out;
  const pieces = s.length <= LEAF_MAX ? 1 : Math.ceil(s.length / (LEAF_MAX / 2));
  const size = Math.ceil(s.length / pieces);
  for (let from = 0; from < s.length; ) {
    let to = Math.min(s.length, from + size);
    if (to < s.length && isLow(s.charCodeAt(to)) && isHigh(s.charCodeAt(to - 1))) to--;
    out.push(new Leaf(s.slice(from, to)));
    from = to;
  }
  return out;
}

/** Inner nodes holding `kids` (one height) in order, as even as possible, like `leavesOf`. */
function innersOf(kids) {
  const out = [];
  if (kids.length === 0) return out;
  const pieces = kids.length <= KIDS_MAX ? 1 : Math.ceil(kids.length / (KIDS_MAX / 2));
  const size = Math.ceil(kids.length / pieces);
  for (let from = 0; from < kids.length; from += size) out.push(new Inner(kids.slice(from, from + size)));
  return out;
}

/** One root over `nodes` (one height, in order); an empty leaf when there are none. */
function rootOf(nodes) {
  while (nodes.length > 1) nodes = innersOf(nodes);
  let root = nodes.length === 1 ? nodes[0] : new Leaf('');
  while (root.h > 0 && root.kids.length === 1) root = root.kids[0];
  return root;
}

const underfull = (n) => (n.h === 0 ? n.len < LEAF_MIN : n.kids.length < KIDS_MIN);

/** `a` then `b` (one height) as one node, or two even ones when that is too large. */
function mergeNodes(a, b) {
  return a.h === 0 ? leavesOf(a.text() + b.text()) : innersOf(a.kids.concat(b.kids));
}

/**
 * Merges the underfull nodes of `nodes` between `lo` and `hi` (inclusive)
 * with a neighbour. Only nodes an edit rebuilt can be underfull.
 */
function mendRange(nodes, lo, hi) {
  let p = Math.max(0, lo);
  while (p <= hi && p < nodes.length && nodes.length > 1) {
    if (!underfull(nodes[p])) {
      p++;
      continue;
    }
    const q = p + 1 < nodes.length ? p : p - 1; // merge nodes[q] and nodes[q + 1]
    const merged = mergeNodes(nodes[q], nodes[q + 1]);
    nodes.splice(q, 2, ...merged);
    hi += merged.length - 2;
    // One node may still be underfull (look at it again); two or more even
    // parts of more than a full node are not.
    p = merged.length === 1 ? q : q + merged.length;
  }
}

/** Appends the texts of `node`'s leaves to `parts`. */
function texts(node, parts) {
  if (node.h === 0) parts.push(node.text());
  else for (const k of node.kids) texts(k, parts);
}

/** Appends the text between code points `from` and `to` of `node` to `parts`. */
function collect(node, from, to, parts) {
  if (node.h === 0) {
    parts.push(decode(node.buf, unitsOf(node, from), unitsOf(node, to)));
    return;
  }
  const { kids, cpl } = node;
  let off = 0;
  for (let i = 0; i < kids.length && off < to; i++) {
    const c = cpl[i];
    if (off + c > from) {
      if (from <= off && off + c <= to) texts(kids[i], parts);
      else collect(kids[i], Math.max(0, from - off), Math.min(c, to - off), parts);
    }
    off += c;
  }
}

/**
 * Replaces code points `from`..`to` of `node` with `insert`, appending the
 * text taken out to `removed`. Returns the nodes (of `node`'s height, none
 * when nothing is left) to put in its place: the children the range touches
 * are rebuilt, the ones inside it dropped, the others shared.
 */
function edit(node, from, to, insert, removed) {
  if (node.h === 0) {
    const s = node.text();
    const f = unitsOf(node, from);
    const t = unitsOf(node, to);
    if (t > f) removed.push(s.slice(f, t));
    return leavesOf(s.slice(0, f) + insert + s.slice(t));
  }
  const { kids, cpl } = node;
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
    fresh = edit(kids[i], from - off, to - off, insert, removed);
  } else {
    fresh = edit(kids[i], from - off, cpl[i], insert, removed);
    for (let m = i + 1; m < j; m++) texts(kids[m], removed);
    fresh = fresh.concat(edit(kids[j], 0, to - offJ, '', removed));
  }
  const out = kids.slice(0, i).concat(fresh, kids.slice(j + 1));
  mendRange(out, i - 1, i + fresh.length);
  return innersOf(out);
}

export class Rope {
  constructor(text = '') {
    this._root = rootOf(leavesOf(text));
    this._string = text;
    /**
     * The leaf the last lookup found, the code points and UTF-16 units
     * before it, and the nodes and child indexes from the root down to it
     * (`_depth` of them): an edit inside it adds its change along that path,
     * and positions in it (someone typing) need no walk from the root.
     * Valid until the tree is rebuilt somewhere (an edit inside the leaf
     * keeps it valid: what comes before it does not move).
     */
    this._finger = null;
    this._fingerBase = 0;
    this._fingerBase16 = 0;
    this._pathNodes = [];
    this._pathIdx = [];
    this._depth = 0;
    this._base = 0;
    this._base16 = 0;
  }

  /** Length in UTF-16 units. */
  get length() {
    return this._root.len;
  }

  /** Length in code points. */
  get codePoints() {
    return this._root.cps;
  }

  /** The whole text (built on the first call after a change). */
  toString() {
    if (this._string === null) {
      const parts = [];
      texts(this._root, parts);
      this._string = parts.join('');
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
    if (f !== null) {
      const off = k - this._fingerBase;
      if (off >= 0 && (off < f.cps || (off === f.cps && this._fingerBase + f.cps === this._root.cps))) {
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
    if (f !== null) {
      const off = u - this._fingerBase16;
      if (off >= 0 && (off < f.len || (off === f.len && this._fingerBase16 + f.len === this._root.len))) {
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
    const nodes = this._pathNodes;
    const idx = this._pathIdx;
    let base = 0; // before the leaf, in the measure walked by
    let other = 0; // before the leaf, in the other measure
    let depth = 0;
    let n = this._root;
    while (n.h > 0) {
      const by = units ? n.lens : n.cpl;
      const oth = units ? n.cpl : n.lens;
      const total = units ? n.len : n.cps;
      const last = by.length - 1;
      let i;
      if (k < total >> 1) {
        i = 0;
        while (i < last && k >= by[i]) {
          k -= by[i];
          base += by[i];
          other += oth[i];
          i++;
        }
      } else {
        // In the second half: walk from the end (half the reads on average),
        // to the same child (the first one ending after `k`).
        i = last;
        let end = total;
        let endOther = units ? n.cps : n.len;
        while (i > 0 && k < end - by[i]) {
          end -= by[i];
          endOther -= oth[i];
          i--;
        }
        const start = end - by[i];
        k -= start;
        base += start;
        other += endOther - oth[i];
      }
      nodes[depth] = n;
      idx[depth] = i;
      depth++;
      n = n.kids[i];
    }
    return units ? this._setFinger(n, other, base, depth) : this._setFinger(n, base, other, depth);
  }

  _setFinger(leaf, base, base16, depth) {
    this._finger = leaf;
    this._fingerBase = this._base = base;
    this._fingerBase16 = this._base16 = base16;
    this._depth = depth;
    return leaf;
  }

  /** The UTF-16 offset of code point offset `cp`, clamped to the end of the text. */
  toUtf16(cp) {
    if (cp >= this._root.cps) return this._root.len;
    if (!(cp > 0)) return 0;
    const n = this._findPoint(cp);
    return this._base16 + unitsOf(n, cp - this._base);
  }

  /**
   * The code point offset of UTF-16 offset `index`. Throws a RangeError when
   * `index` is out of range or inside a surrogate pair (never rounds).
   */
  toCodePoints(index) {
    const length = this.length;
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
    return cutsPair(n, u) ? -1 : this._base + pointsOf(n, u);
  }

  /** True when UTF-16 offset `index` falls between the halves of a surrogate pair. */
  splitsPair(index) {
    if (!(index > 0) || index >= this.length) return false;
    const n = this._findUnit(index);
    // No leaf boundary falls inside a pair.
    return cutsPair(n, index - this._base16);
  }

  /** The text between code point offsets `from` and `to` (both within the text). */
  slice(from, to) {
    if (to <= from) return '';
    const n = this._findPoint(from);
    const k = from - this._base;
    if (to - this._base <= n.cps) return decode(n.buf, unitsOf(n, k), unitsOf(n, to - this._base));
    const parts = [];
    collect(this._root, from, to, parts);
    return parts.join('');
  }

  /**
   * Replaces `remove` code points at code point `at` with `insert`. Returns
   * the UTF-16 offset of `at` and the text removed. The range must be
   * within the text.
   */
  replace(at, remove, insert) {
    this._string = null;
    const insertPoints = insert.length === 0 ? 0 : codePointLength(insert);
    // The common case: the range is inside one leaf, which stays within bounds.
    const n = this._findPoint(at);
    const k = at - this._base;
    if (k + remove <= n.cps) {
      const from = unitsOf(n, k);
      const to = remove === 0 ? from : unitsOf(n, k + remove);
      const d16 = insert.length - (to - from);
      const size = n.len + d16;
      if (size <= LEAF_MAX && (size >= LEAF_MIN || d16 >= 0 || this._depth === 0)) {
        const removed = n.splice(from, to, insert);
        const dcp = insertPoints - remove;
        n.cps += dcp;
        if (n.pairs !== null || insertPoints !== insert.length) {
          n.pairs = movePairs(n.pairs, from, to, insertPoints === insert.length ? null : pairsOf(insert), d16);
        }
        const nodes = this._pathNodes;
        const idx = this._pathIdx;
        for (let d = 0; d < this._depth; d++) {
          const p = nodes[d];
          const i = idx[d];
          p.lens[i] += d16;
          p.cpl[i] += dcp;
          p.len += d16;
          p.cps += dcp;
        }
        return { at: this._base16 + from, removed };
      }
    }
    // Rebuild the nodes along the range's path.
    const offset = this.toUtf16(at);
    this._finger = null;
    const removed = [];
    this._root = rootOf(edit(this._root, at, at + remove, insert, removed));
    return { at: offset, removed: removed.join('') };
  }

  /**
   * Applies `op` (code points). Returns the change in UTF-16 terms in the
   * two shapes `applyOp` (ot.js) gives for a string, and the change in UTF-8
   * bytes. Throws, leaving the text as it was, if the op does not fit.
   */
  apply(op) {
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
    const changes = [];
    const edits = [];
    let cp = 0; // code point position in the text being changed
    let shift = 0; // UTF-16 units the steps so far added (new offset - old offset)
    let bytes = 0;
    let open = null; // the change still growing at this position
    for (const c of op) {
      if (typeof c === 'number') {
        cp += c;
        open = null;
      } else if (typeof c === 'string') {
        const { at } = this.replace(cp, 0, c);
        edits.push({ type: 'insert', index: at, text: c });
        if (open) open.insert += c;
        else changes.push((open = { from: at - shift, to: at - shift, insert: c }));
        shift += c.length;
        cp += codePointLength(c);
        bytes += utf8Length(c);
      } else {
        const n = typeof c.d === 'number' ? c.d : codePointLength(c.d);
        if (n === 0) {
          const at = this.toUtf16(cp);
          edits.push({ type: 'delete', index: at, length: 0 });
          if (!open) changes.push((open = { from: at - shift, to: at - shift, insert: '' }));
          continue;
        }
        const { at, removed } = this.replace(cp, n, '');
        edits.push({ type: 'delete', index: at, length: removed.length });
        bytes -= utf8Length(removed);
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
}

/**
 * Pairs of a leaf after `from`..`to` was replaced by text with pairs
 * `added`, `d16` units longer: `pairs` updated in place (typing moves the
 * pairs after the caret and allocates nothing), or null when none are left.
 */
function movePairs(pairs, from, to, added, d16) {
  if (pairs === null) {
    if (added === null) return null;
    for (let j = 0; j < added.length; j++) added[j] += from;
    return added;
  }
  const first = countBelow(pairs, from); // the first pair at or after the range
  const end = to === from ? first : countBelow(pairs, to); // the first pair after it
  if (d16 !== 0) for (let j = end; j < pairs.length; j++) pairs[j] += d16;
  if (added !== null) {
    for (let j = 0; j < added.length; j++) added[j] += from;
    pairs.splice(first, end - first, ...added);
  } else if (end > first) {
    pairs.splice(first, end - first);
  }
  return pairs.length === 0 ? null : pairs;
}
