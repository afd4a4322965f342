// Conversions between UTF-16 code units (JavaScript strings, editors) and
// Unicode code points (the unit of Chorus text ops and selections).

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
