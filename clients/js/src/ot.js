// The op algebra: ot-text-unicode (code points, like the Chorus wire), plus
// the pieces the SDK needs on top of it: applying an op while reporting the
// change in UTF-16 terms, and moving positions with the own/other rule.

import otText from 'ot-text-unicode';
import { advance, codePointLength } from './units.js';

// The package is CommonJS: Node hands us `module.exports` as the default
// export; the vendored ESM bundle does the same.
const textType = (otText && otText.type) || (otText && otText.default && otText.default.type);
if (!textType || typeof textType.transform !== 'function') {
  throw new Error('ot-text-unicode did not load: expected its CommonJS exports to have .type');
}

export { textType };

/** The number of code points a delete component removes. */
export const deleteLength = (d) => (typeof d === 'number' ? d : codePointLength(d));

/** `op` rewritten to apply after `other`; `side` 'left' goes first at ties. */
export const transform = (op, other, side) => textType.transform(op, other, side);

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
 * Applies `op` (code points) to `text`. Returns the new text and the change
 * as UTF-16 edits, each relative to the text left by the edits before it.
 * Throws (leaving nothing changed) if the op does not fit the text.
 */
export function applyOp(text, op) {
  if (!Array.isArray(op)) throw new TypeError('an op must be an array of components');
  const parts = [];
  const changes = [];
  let from = 0; // UTF-16 offset into the old text
  let at = 0; // UTF-16 offset into the new text
  for (const c of op) {
    if (typeof c === 'number') {
      const to = advance(text, from, c);
      parts.push(text.slice(from, to));
      at += to - from;
      from = to;
    } else if (typeof c === 'string') {
      parts.push(c);
      changes.push({ type: 'insert', index: at, text: c });
      at += c.length;
    } else if (c && (typeof c.d === 'number' || typeof c.d === 'string')) {
      const to = advance(text, from, deleteLength(c.d));
      changes.push({ type: 'delete', index: at, length: to - from });
      from = to;
    } else {
      throw new TypeError(`invalid op component ${JSON.stringify(c)}`);
    }
  }
  parts.push(text.slice(from));
  return { text: parts.join(''), changes };
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
