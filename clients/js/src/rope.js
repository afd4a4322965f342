// The text of a document as the SDK holds it: a balanced tree (a treap) of
// chunks of at most a few hundred UTF-16 units, each node knowing its
// subtree's length in UTF-16 units and in code points, and each chunk where
// its surrogate pairs are. Applying an op, converting a position between
// code points (the wire) and UTF-16 (editors) and checking a range then cost
// the depth of the tree (logarithmic in the text's size) plus one chunk:
// about a microsecond on a megabyte, where a plain string costs a scan from
// its start and a copy of the whole text per edit (milliseconds). The string
// itself is built only when someone asks for it, and kept until the next
// change. bench/textdoc.js measures both.
//
// The text is well formed (the SDK refuses lone surrogates in local edits;
// the server's text is UTF-8), and no chunk boundary falls inside a
// surrogate pair, so the chunks' code point counts add up to the text's.

import { codePointLength, utf8Length } from './units.js';

/** Largest chunk (UTF-16 units): what an edit inside one chunk copies. */
const MAX_CHUNK = 512;
/** A chunk the tree is cut and joined again at is merged with a neighbour when smaller than this. */
const MIN_CHUNK = 128;

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The offsets of the surrogate pairs of `s` (their high halves), or null
 * when it has none: with them a chunk converts positions without a scan.
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

class Chunk {
  constructor(s, pairs = pairsOf(s)) {
    this.s = s;
    this.pairs = pairs; // surrogate pairs of s (pairsOf)
    this.cp = s.length - (pairs ? pairs.length : 0); // code points of s
    this.len = s.length; // UTF-16 units of the subtree
    this.cps = this.cp; // code points of the subtree
    this.l = null;
    this.r = null;
    this.p = Math.random(); // heap priority: keeps the tree balanced in expectation
  }
}

function fix(n) {
  let len = n.s.length;
  let cps = n.cp;
  if (n.l) {
    len += n.l.len;
    cps += n.l.cps;
  }
  if (n.r) {
    len += n.r.len;
    cps += n.r.cps;
  }
  n.len = len;
  n.cps = cps;
  return n;
}

/** One tree of `a` then `b`. */
function merge(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (a.p > b.p) {
    a.r = merge(a.r, b);
    return fix(a);
  }
  b.l = merge(a, b.l);
  return fix(b);
}

/** [the first `k` code points, the rest]; a chunk the cut falls inside is cut in two. */
function split(t, k) {
  if (!t) return [null, null];
  const lc = t.l ? t.l.cps : 0;
  if (k <= lc) {
    const [a, b] = split(t.l, k);
    t.l = b;
    return [a, fix(t)];
  }
  if (k >= lc + t.cp) {
    const [a, b] = split(t.r, k - lc - t.cp);
    t.r = a;
    return [fix(t), b];
  }
  const at = unitsOf(t, k - lc);
  const left = new Chunk(t.s.slice(0, at));
  const right = new Chunk(t.s.slice(at));
  return [merge(t.l, left), merge(right, t.r)];
}

/** [the tree without its first chunk, that chunk] */
function popFirst(t) {
  if (!t) return [null, null];
  if (!t.l) {
    const rest = t.r;
    t.r = null;
    return [rest, fix(t)];
  }
  const [rest, first] = popFirst(t.l);
  t.l = rest;
  return [fix(t), first];
}

/** [the tree without its last chunk, that chunk] */
function popLast(t) {
  if (!t) return [null, null];
  if (!t.r) {
    const rest = t.l;
    t.l = null;
    return [rest, fix(t)];
  }
  const [rest, last] = popLast(t.r);
  t.r = rest;
  return [fix(t), last];
}

/** UTF-16 units of the first `k` code points of chunk `n`. */
function unitsOf(n, k) {
  return n.pairs === null ? k : k + pairsBeforePoint(n.pairs, k);
}

/** Code points of the first `u` UTF-16 units of chunk `n` (a cut pair's high half counts one). */
function pointsOf(n, u) {
  return n.pairs === null ? u : u - countBelow(n.pairs, u - 1);
}

/** True when offset `u` of chunk `n` falls between the halves of a pair. */
function cutsPair(n, u) {
  if (n.pairs === null) return false;
  const before = countBelow(n.pairs, u);
  return before > 0 && n.pairs[before - 1] + 1 === u;
}

/**
 * Chunks of `s` in order, no surrogate pair cut: as even as possible, none
 * over MAX_CHUNK / 2 once there are two, so edits have room to grow them
 * in place.
 */
function chunksOf(s) {
  const out = [];
  if (s.length === 0) return out;
  const pieces = s.length <= MAX_CHUNK ? 1 : Math.ceil(s.length / (MAX_CHUNK / 2));
  const size = Math.ceil(s.length / pieces);
  for (let from = 0; from < s.length; ) {
    let to = Math.min(s.length, from + size);
    if (to < s.length && isLow(s.charCodeAt(to)) && isHigh(s.charCodeAt(to - 1))) to--;
    out.push(new Chunk(s.slice(from, to)));
    from = to;
  }
  return out;
}

/** A tree of `chunks` (in order), built in linear time. */
function build(chunks) {
  const spine = [];
  for (const c of chunks) {
    let last = null;
    while (spine.length > 0 && spine[spine.length - 1].p < c.p) last = spine.pop();
    c.l = last;
    if (spine.length > 0) spine[spine.length - 1].r = c;
    spine.push(c);
  }
  if (spine.length === 0) return null;
  const fixAll = (n) => {
    if (!n) return;
    fixAll(n.l);
    fixAll(n.r);
    fix(n);
  };
  fixAll(spine[0]);
  return spine[0];
}

export class Rope {
  constructor(text = '') {
    this._root = build(chunksOf(text));
    this._string = text;
    /**
     * The chunk the last edit or slice found, its offsets and the nodes from
     * the root down to it: edits and positions near the last one (someone
     * typing) start there instead of at the root. Valid until the tree is
     * cut and joined again; an edit inside it keeps it valid (what comes
     * before it does not move).
     */
    this._finger = null;
    this._fingerBase = 0;
    this._fingerBase16 = 0;
    this._path = [];
    this._scratch = [];
  }

  /** Length in UTF-16 units. */
  get length() {
    return this._root ? this._root.len : 0;
  }

  /** Length in code points. */
  get codePoints() {
    return this._root ? this._root.cps : 0;
  }

  /** The whole text (built on the first call after a change). */
  toString() {
    if (this._string === null) this._string = treeString(this._root);
    return this._string;
  }

  /**
   * The chunk holding code point `k` (the last chunk when `k` is the end),
   * with the path to it in `_path` when `keepPath`; sets `_base` and
   * `_base16` (code points and UTF-16 units before the chunk). Null when the
   * text is empty.
   */
  _findPoint(k, keepPath = true) {
    const f = this._finger;
    if (f !== null) {
      const off = k - this._fingerBase;
      if (off >= 0 && (off < f.cp || (off === f.cp && this._fingerBase + f.cp === this._root.cps))) {
        this._base = this._fingerBase;
        this._base16 = this._fingerBase16;
        return f;
      }
    }
    const path = this._scratch;
    path.length = 0;
    let base = 0;
    let base16 = 0;
    let t = this._root;
    while (t) {
      if (keepPath) path.push(t);
      const lc = t.l ? t.l.cps : 0;
      if (k < lc) {
        t = t.l;
        continue;
      }
      k -= lc;
      base += lc;
      base16 += t.l ? t.l.len : 0;
      if (k < t.cp || (k === t.cp && !t.r)) break;
      k -= t.cp;
      base += t.cp;
      base16 += t.s.length;
      t = t.r;
    }
    this._base = base;
    this._base16 = base16;
    if (keepPath && t) {
      this._scratch = this._path;
      this._path = path;
      this._finger = t;
      this._fingerBase = base;
      this._fingerBase16 = base16;
    }
    return t;
  }

  /** The chunk holding UTF-16 offset `u` (the last chunk when `u` is the end), like `_findPoint`. */
  _findUnit(u) {
    const f = this._finger;
    if (f !== null) {
      const off = u - this._fingerBase16;
      if (off >= 0 && (off < f.s.length || (off === f.s.length && this._fingerBase16 + f.s.length === this._root.len))) {
        this._base = this._fingerBase;
        this._base16 = this._fingerBase16;
        return f;
      }
    }
    let base = 0;
    let base16 = 0;
    let t = this._root;
    while (t) {
      const ll = t.l ? t.l.len : 0;
      if (u < ll) {
        t = t.l;
        continue;
      }
      u -= ll;
      base16 += ll;
      base += t.l ? t.l.cps : 0;
      if (u < t.s.length || (u === t.s.length && !t.r)) break;
      u -= t.s.length;
      base16 += t.s.length;
      base += t.cp;
      t = t.r;
    }
    this._base = base;
    this._base16 = base16;
    return t;
  }

  /** The UTF-16 offset of code point offset `cp`, clamped to the end of the text. */
  toUtf16(cp) {
    if (cp >= this.codePoints) return this.length;
    if (!(cp > 0)) return 0;
    const n = this._findPoint(cp, false);
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
    // No chunk boundary falls inside a pair.
    return cutsPair(n, index - this._base16);
  }

  /** The text between code point offsets `from` and `to` (both within the text). */
  slice(from, to) {
    if (to <= from) return '';
    const parts = [];
    let n = this._findPoint(from);
    let u = unitsOf(n, from - this._base);
    let left = to - from;
    // Walk chunk by chunk in order from the one found, using the path.
    const stack = this._path.slice();
    for (;;) {
      const avail = n.cp - (u === 0 ? 0 : pointsOf(n, u));
      if (left <= avail) {
        const end = unitsOf(n, pointsOf(n, u) + left);
        parts.push(n.s.slice(u, end));
        break;
      }
      parts.push(n.s.slice(u));
      left -= avail;
      n = nextChunk(stack);
      u = 0;
    }
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
    if (this._root) {
      // The common case: the range is inside one chunk, which stays small.
      const n = this._findPoint(at);
      const k = at - this._base;
      if (k + remove <= n.cp) {
        const from = unitsOf(n, k);
        const to = remove === 0 ? from : unitsOf(n, k + remove);
        const size = n.s.length - (to - from) + insert.length;
        if (size > 0 && size <= MAX_CHUNK) {
          const removed = n.s.slice(from, to);
          n.s = n.s.slice(0, from) + insert + n.s.slice(to);
          const d16 = insert.length - removed.length;
          const dcp = insertPoints - remove;
          n.cp += dcp;
          const added = insertPoints === insert.length ? null : pairsOf(insert);
          if (n.pairs !== null || added !== null) n.pairs = movePairs(n.pairs, from, to, added, d16);
          for (const p of this._path) {
            p.len += d16;
            p.cps += dcp;
          }
          return { at: this._base16 + from, removed };
        }
      }
    }
    // Cut the tree around the range and rebuild the chunks at the seam.
    this._finger = null;
    const [before, rest] = split(this._root, at);
    const [middle, after] = split(rest, remove);
    const removed = middle ? treeString(middle) : '';
    const offset = before ? before.len : 0;
    let [head, last] = popLast(before);
    let [tail, first] = popFirst(after);
    let seam = (last ? last.s : '') + insert + (first ? first.s : '');
    if (seam.length < MIN_CHUNK && tail) {
      let next;
      [tail, next] = popFirst(tail);
      seam += next.s;
    }
    if (seam.length < MIN_CHUNK && head) {
      let prev;
      [head, prev] = popLast(head);
      seam = prev.s + seam;
    }
    this._root = merge(merge(head, build(chunksOf(seam))), tail);
    return { at: offset, removed };
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

/** Pairs of a chunk after `from`..`to` was replaced by text with pairs `added`, `d16` units longer. */
function movePairs(pairs, from, to, added, d16) {
  const out = [];
  if (pairs !== null) for (const o of pairs) if (o < from) out.push(o);
  if (added !== null) for (const o of added) out.push(from + o);
  if (pairs !== null) for (const o of pairs) if (o >= to) out.push(o + d16);
  return out.length === 0 ? null : out;
}

function treeString(t) {
  const parts = [];
  const walk = (n) => {
    if (!n) return;
    walk(n.l);
    parts.push(n.s);
    walk(n.r);
  };
  walk(t);
  return parts.join('');
}

/**
 * The chunk after the last one of `stack` (a path from the root to it,
 * updated to the path of the chunk returned).
 */
function nextChunk(stack) {
  let n = stack[stack.length - 1];
  if (n.r) {
    n = n.r;
    stack.push(n);
    while (n.l) {
      n = n.l;
      stack.push(n);
    }
    return n;
  }
  for (;;) {
    const child = stack.pop();
    const parent = stack[stack.length - 1];
    if (parent.l === child) return parent;
  }
}
