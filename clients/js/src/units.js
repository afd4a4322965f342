// Conversions between UTF-16 code units (JavaScript strings, editors) and
// Unicode code points (the unit of Chorus text ops and selections), and the
// byte sizes the server's limits are counted in (UTF-8 text, JSON frames).

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** True when UTF-16 offset `index` falls between the halves of a surrogate pair. */
export function splitsPair(text, index) {
  return index > 0 && index < text.length && isHigh(text.charCodeAt(index - 1)) && isLow(text.charCodeAt(index));
}

/**
 * The UTF-16 offset reached by walking `count` code points from UTF-16
 * offset `from`. Throws a RangeError when the text ends first.
 */
export function advance(text, from, count) {
  let i = from;
  const len = text.length;
  for (let k = 0; k < count; k++) {
    if (i >= len) throw new RangeError('position is past the end of the text');
    const c = text.charCodeAt(i);
    i += isHigh(c) && i + 1 < len && isLow(text.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

/** The number of code points in `text` (a lone surrogate counts as one). */
export function codePointLength(text, from = 0, to = text.length) {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (isHigh(c) && i + 1 < to && isLow(text.charCodeAt(i + 1))) i++;
    n++;
  }
  return n;
}

/**
 * The code point offset of UTF-16 offset `index`. Throws a RangeError when
 * `index` is out of range or inside a surrogate pair (never rounds).
 */
export function toCodePoints(text, index) {
  if (!Number.isInteger(index) || index < 0 || index > text.length) {
    throw new RangeError(`offset ${index} is outside the text (length ${text.length})`);
  }
  if (splitsPair(text, index)) throw new RangeError(`offset ${index} is inside a surrogate pair`);
  return codePointLength(text, 0, index);
}

/** The UTF-16 offset of code point offset `cp`, clamped to the end of the text. */
export function toUtf16(text, cp) {
  let i = 0;
  const len = text.length;
  for (let k = 0; k < cp && i < len; k++) {
    const c = text.charCodeAt(i);
    i += isHigh(c) && i + 1 < len && isLow(text.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

/** True when `text` has no lone surrogates (so it can travel as UTF-8 JSON). */
export function isWellFormed(text) {
  if (typeof text.isWellFormed === 'function') return text.isWellFormed();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isHigh(c)) {
      if (i + 1 < text.length && isLow(text.charCodeAt(i + 1))) i++;
      else return false;
    } else if (isLow(c)) return false;
  }
  return true;
}

/**
 * UTF-8 bytes of `text` between UTF-16 offsets `from` and `to` (the unit of
 * the server's document and op size limits). A lone surrogate counts as the
 * three bytes of the replacement character it would become.
 */
export function utf8Length(text, from = 0, to = text.length) {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (isHigh(c) && i + 1 < to && isLow(text.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Bytes one UTF-16 unit (or, for a high surrogate, its pair) takes inside a
 * JSON string as JSON.stringify writes it and the frame carries it: escapes
 * for quotes, backslashes and control characters, raw UTF-8 otherwise.
 */
export function jsonCharBytes(c) {
  if (c === 0x22 || c === 0x5c) return 2; // \" \\
  if (c < 0x20) return c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6;
  if (c < 0x80) return 1;
  if (c < 0x800) return 2;
  if (isHigh(c)) return 4; // with its low half, which then counts 0
  if (isLow(c)) return 0;
  return 3;
}

/**
 * The one replacement `{from, to, insert}` that turns `before` into `after`:
 * the common prefix and suffix are kept, and the range between them (never
 * splitting a surrogate pair) is replaced. `to` is an offset in `before`.
 * `null` when the texts are equal.
 */
export function diffText(before, after) {
  if (before === after) return null;
  const max = Math.min(before.length, after.length);
  let start = 0;
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before.charCodeAt(endBefore - 1) === after.charCodeAt(endAfter - 1)) {
    endBefore--;
    endAfter--;
  }
  if (endBefore < before.length && isLow(before.charCodeAt(endBefore))) {
    endBefore++;
    endAfter++;
  }
  return { from: start, to: endBefore, insert: after.slice(start, endAfter) };
}

/** `text` with `changes` ({from, to, insert}, ascending, offsets in `text`) applied. */
export function applyChanges(text, changes) {
  let out = '';
  let pos = 0;
  for (const { from, to, insert } of changes) {
    out += text.slice(pos, from) + insert;
    pos = to;
  }
  return out + text.slice(pos);
}
