// The op algebra: ot-text-unicode (code points, like the Chorus wire), plus
// the pieces the SDK needs on top of it: applying an op while reporting the
// change in UTF-16 terms, building an op from an editor's changes, cutting
// an op that is too large for the server's limits into ops that fit, and
// moving positions with the own/other rule.

import otText from 'ot-text-unicode';
import { advance, codePointLength, jsonCharBytes, splitsPair, utf8Length } from './units.js';

// The package is CommonJS: Node hands us `module.exports` as the default
// export; the vendored ESM bundle does the same.
const textType = (otText && otText.type) || (otText && otText.default && otText.default.type);
if (!textType || typeof textType.transform !== 'function') {
  throw new Error('ot-text-unicode did not load: expected its CommonJS exports to have .type');
}

export { textType };

/** The number of code points a delete component removes. */
export const deleteLength = (d) => (typeof d === 'number' ? d : codePointLength(d));

/**
 * `op` rewritten to apply after `other`; `side` 'left' goes first at ties.
 * What ot-text-unicode's transform gives; when both ops are one edit (an
 * insert or a delete by count at one place, as typing makes and as every
 * remote op meets the op in flight), worked out here directly: the
 * library's general walk over both ops costs several times more, and the
 * SDK transforms twice per remote op while an edit of its own is in flight.
 */
export function transform(op, other, side) {
  const kind = editOf(op);
  if (kind !== NOT_ONE_EDIT) {
    const at = editAt;
    const length = editLength;
    const otherKind = editOf(other);
    if (otherKind !== NOT_ONE_EDIT) {
      const out = transformEdit(op, kind, at, length, otherKind, editAt, editLength, side);
      if (out !== null) return out;
    }
  }
  return textType.transform(op, other, side);
}

const NOT_ONE_EDIT = 0;
const INSERT = 1;
const DELETE = 2;
// Where the edit `editOf` recognised starts and how many code points it
// inserts or deletes (module variables: no object per call).
let editAt = 0;
let editLength = 0;

/** INSERT or DELETE when `op` is one canonical edit (`[at, x]` or `[x]`, a delete by count), else NOT_ONE_EDIT. */
function editOf(op) {
  let at = 0;
  let c;
  if (op.length === 2) {
    at = op[0];
    if (typeof at !== 'number' || !Number.isInteger(at) || at <= 0) return NOT_ONE_EDIT;
    c = op[1];
  } else if (op.length === 1) {
    c = op[0];
  } else {
    return NOT_ONE_EDIT;
  }
  if (typeof c === 'string') {
    if (c.length === 0) return NOT_ONE_EDIT;
    editAt = at;
    editLength = c.length === 1 ? 1 : codePointLength(c);
    return INSERT;
  }
  if (c !== null && typeof c === 'object' && typeof c.d === 'number' && Number.isInteger(c.d) && c.d > 0) {
    editAt = at;
    editLength = c.d;
    return DELETE;
  }
  return NOT_ONE_EDIT;
}

/**
 * Whether `op` is one canonical edit; if so its place goes to `out[0]` and
 * its size to `out[1]`: the code points it inserts, or minus those it deletes.
 */
export function oneEdit(op, out) {
  const kind = editOf(op);
  if (kind !== NOT_ONE_EDIT) {
    out[0] = editAt;
    out[1] = kind === INSERT ? editLength : -editLength;
    return true;
  }
  // A committed delete carries the text it removed (`{"d": "..."}`).
  const at = op.length === 2 ? op[0] : 0;
  const c = op[op.length - 1];
  if ((op.length === 1 || (op.length === 2 && Number.isInteger(at) && at > 0)) && c !== null && typeof c === 'object' && typeof c.d === 'string' && c.d !== '') {
    out[0] = at;
    out[1] = -codePointLength(c.d);
    return true;
  }
  return false;
}

/**
 * One edit (`op`, of `kind` at `at`, `length` code points) transformed past
 * another, as ot-text-unicode does it; null for the one case that splits
 * the edit (an insert inside the range a delete removes), left to the library.
 */
function transformEdit(op, kind, at, length, otherKind, otherAt, otherLength, side) {
  let moved = at;
  let left = length;
  if (kind === INSERT) {
    if (otherKind === INSERT) {
      if (otherAt < at || (otherAt === at && side === 'right')) moved = at + otherLength;
    } else if (at > otherAt) {
      moved = Math.max(otherAt, at - otherLength);
    }
    const text = op[op.length - 1];
    return moved > 0 ? [moved, text] : [text];
  }
  if (otherKind === INSERT) {
    if (otherAt <= at) moved = at + otherLength;
    else if (otherAt < at + length) return null;
  } else {
    const overlap = Math.min(at + length, otherAt + otherLength) - Math.max(at, otherAt);
    if (overlap > 0) left = length - overlap;
    if (at > otherAt) moved = at >= otherAt + otherLength ? at - otherLength : otherAt;
    if (left === 0) return [];
  }
  return moved > 0 ? [moved, { d: left }] : [{ d: left }];
}

/** One op with the effect of `a` then `b`. */
export const compose = (a, b) => textType.compose(a, b);

/** An insert of `text` at code point `at`. */
export function insertOp(at, text) {
  if (text.length === 0) return [];
  return at === 0 ? [text] : [at, text];
}

/** A delete of `length` code points at `at`, optionally followed by an insert. */
export function replaceOp(at, length, text = '') {
  const op = [];
  if (at > 0) op.push(at);
  if (length > 0) op.push({ d: length });
  if (text.length > 0) op.push(text);
  return op;
}

/**
 * Applies `op` (code points) to `text`. Returns the new text, the change in
 * UTF-16 terms in two shapes, and the change in UTF-8 bytes:
 *
 * - `changes`: `{from, to, insert}` replacements, ascending and not
 *   overlapping, every position in the text *before* the op (the shape
 *   editors apply as one transaction, CodeMirror's `changes` among them);
 * - `edits`: the same as `{type: 'insert'|'delete', ...}` steps, each
 *   relative to the text left by the steps before it.
 *
 * Throws (leaving nothing changed) if the op does not fit the text.
 */
export function applyOp(text, op) {
  if (!Array.isArray(op)) throw new TypeError('an op must be an array of components');
  const parts = [];
  const changes = [];
  const edits = [];
  let from = 0; // UTF-16 offset into the old text
  let at = 0; // UTF-16 offset into the new text
  let bytes = 0;
  let open = null; // the change still growing at `from`
  for (const c of op) {
    if (typeof c === 'number') {
      const to = advance(text, from, c);
      parts.push(text.slice(from, to));
      at += to - from;
      from = to;
      open = null;
    } else if (typeof c === 'string') {
      parts.push(c);
      edits.push({ type: 'insert', index: at, text: c });
      at += c.length;
      bytes += utf8Length(c);
      if (open) open.insert += c;
      else changes.push((open = { from, to: from, insert: c }));
    } else if (c && (typeof c.d === 'number' || typeof c.d === 'string')) {
      const to = advance(text, from, deleteLength(c.d));
      edits.push({ type: 'delete', index: at, length: to - from });
      bytes -= utf8Length(text, from, to);
      if (open) open.to = to;
      else changes.push((open = { from, to, insert: '' }));
      from = to;
    } else {
      throw new TypeError(`invalid op component ${JSON.stringify(c)}`);
    }
  }
  parts.push(text.slice(from));
  return { text: parts.join(''), changes, edits, bytes };
}

/**
 * The op replacing UTF-16 ranges of `text` (a string or a Rope):
 * `changes` are `{from, to, insert}`, ascending, not overlapping, positions
 * in `text`. Throws a RangeError for a range out of order, out of the text,
 * or splitting a surrogate pair.
 */
export function opFromChanges(text, changes) {
  // The code point offset of each end: a scan of the string from the last
  // change on, or one lookup in the rope (-1: inside a surrogate pair).
  const plain = typeof text === 'string';
  let pos = 0;
  let posPoints = 0;
  const pointAt = (i, after, afterPoints) => {
    if (!plain) return i === after ? afterPoints : text.pointAt(i);
    return splitsPair(text, i) ? -1 : afterPoints + codePointLength(text, after, i);
  };
  const op = [];
  const push = (c) => {
    const last = op[op.length - 1];
    if (typeof c === 'number') {
      if (c === 0) return;
      if (typeof last === 'number') op[op.length - 1] = last + c;
      else op.push(c);
    } else if (typeof c === 'string') {
      if (c === '') return;
      if (typeof last === 'string') op[op.length - 1] = last + c;
      else op.push(c);
    } else {
      if (c.d === 0) return;
      if (last && typeof last === 'object') last.d += c.d;
      else op.push(c);
    }
  };
  for (const { from, to, insert = '' } of changes) {
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < pos || to < from || to > text.length) {
      throw new RangeError(`change ${from}..${to} is out of order or outside the text (length ${text.length})`);
    }
    if (typeof insert !== 'string') throw new TypeError('insert must be a string');
    const fromPoints = pointAt(from, pos, posPoints);
    const toPoints = fromPoints < 0 ? -1 : pointAt(to, from, fromPoints);
    if (fromPoints < 0 || toPoints < 0) throw new RangeError(`change ${from}..${to} splits a surrogate pair`);
    push(fromPoints - posPoints);
    push({ d: toPoints - fromPoints });
    push(insert);
    pos = to;
    posPoints = toPoints;
  }
  if (typeof op[op.length - 1] === 'number') op.pop();
  return op;
}

/** What an op costs against the server's limits (docs/protocol.md, section 11). */
function componentCost(c) {
  if (typeof c === 'number') return { op: 8, json: String(c).length + 1 };
  if (typeof c === 'string') return { op: 8 + utf8Length(c), json: jsonStringBytes(c) + 3 };
  return { op: 8 + (typeof c.d === 'string' ? utf8Length(c.d) : 0), json: JSON.stringify(c).length + 1 };
}

function jsonStringBytes(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) n += jsonCharBytes(s.charCodeAt(i));
  return n;
}

/**
 * Splits `op` into a first part that fits `budget` (`op`: the server's op
 * size, inserted text in UTF-8 plus 8 per component; `json`: bytes of the
 * op's JSON in the frame) and the rest, such that applying `first` and then
 * `rest` is applying `op`. `rest` is null when the whole op fits. Returns
 * null when not even one code point fits (no progress is possible).
 */
export function splitOp(op, budget) {
  let opBytes = 0;
  let jsonBytes = 2; // [ ]
  let produced = 0; // code points of output the first part spans
  const first = [];
  for (let i = 0; i < op.length; i++) {
    const c = op[i];
    const cost = componentCost(c);
    if (opBytes + cost.op <= budget.op && jsonBytes + cost.json <= budget.json) {
      first.push(c);
      opBytes += cost.op;
      jsonBytes += cost.json;
      if (typeof c === 'number') produced += c;
      else if (typeof c === 'string') produced += codePointLength(c);
      continue;
    }
    // The component does not fit whole. A long insert is cut at a code point
    // boundary; anything else starts the rest.
    let rest = op.slice(i);
    if (typeof c === 'string') {
      let take = 0;
      let o = opBytes + 8;
      let j = jsonBytes + 3;
      while (take < c.length) {
        const code = c.charCodeAt(take);
        const width = code >= 0xd800 && code <= 0xdbff && take + 1 < c.length ? 2 : 1;
        const ob = utf8Length(c, take, take + width);
        const jb = jsonCharBytes(code); // a surrogate pair's whole width
        if (o + ob > budget.op || j + jb > budget.json) break;
        o += ob;
        j += jb;
        take += width;
      }
      if (take > 0) {
        const head = c.slice(0, take);
        first.push(head);
        produced += codePointLength(head);
        rest = [c.slice(take), ...op.slice(i + 1)];
      }
    }
    // A canonical op has no trailing retain; the rest still starts past it.
    while (typeof first[first.length - 1] === 'number') first.pop();
    if (first.length === 0) return null;
    if (produced === 0) return { first, rest };
    if (typeof rest[0] === 'number') return { first, rest: [produced + rest[0], ...rest.slice(1)] };
    return { first, rest: [produced, ...rest] };
  }
  return { first: op, rest: null };
}

/**
 * Where code point position `cursor` goes through `op`. An insert exactly at
 * the cursor moves it along only if `own` (the op belongs to the cursor's
 * owner); someone else's insert there stays after it.
 */
export function transformPosition(op, cursor, own = false) {
  let moved = cursor;
  let pre = 0; // code points of the original text walked so far
  for (const c of op) {
    if (typeof c === 'string') {
      if (pre < cursor || (pre === cursor && own)) moved += codePointLength(c);
      else break;
    } else if (pre >= cursor) {
      break;
    } else if (typeof c === 'number') {
      pre += c;
    } else {
      const n = deleteLength(c.d);
      moved -= Math.min(n, cursor - pre);
      pre += n;
    }
  }
  return moved;
}
