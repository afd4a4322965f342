// Positions in a Chorus document and in an editor that normalises line
// breaks, for the editor bindings.
//
// Editors read "\r\n", "\r" and "\n" alike as one line break of one
// position: CodeMirror splits its text into lines on all three, and a
// <textarea>'s value turns "\r\n" and "\r" into "\n". A Chorus document
// keeps its text as it is: "\r\n" there is two UTF-16 units. Outside "\r\n"
// pairs the two agree unit for unit (editors count UTF-16 units too), so a
// document without "\r" needs no mapping at all; one with "\r\n" pairs needs
// every position shifted by the pairs before it. This module does that
// mapping and turns changes of one side into changes of the other, so that
// the editor's text is always the document's text with its line breaks
// normalised.

/** The offsets of the "\r" of every "\r\n" pair of `text`, ascending. */
export function crlfPairs(text) {
  const pairs = [];
  for (let i = text.indexOf('\r\n'); i >= 0; i = text.indexOf('\r\n', i + 2)) pairs.push(i);
  return pairs;
}

/** `text` as an editor holds it: every line break one "\n". */
export function normalizeLineBreaks(text) {
  return text.indexOf('\r') < 0 ? text : text.replace(/\r\n?/g, '\n');
}

/** How many entries of ascending `xs` satisfy `fits` (true for a prefix of them). */
function countWhile(xs, fits) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fits(xs[mid], mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The position mapping for Chorus text `text`:
 * - `toEditor(offset)`: the CodeMirror position of a UTF-16 offset (an offset
 *   between the "\r" and "\n" of a pair maps to the line break);
 * - `toChorus(pos)`: the UTF-16 offset of a CodeMirror position (a line break
 *   that is a pair spans two units);
 * - `lineBreak`: what a new line break should be in this document ("\r\n"
 *   when it already uses them, else "\n").
 */
export function lineMapping(text) {
  if (text.indexOf('\r') < 0) {
    return { identity: true, pairs: [], toEditor: (c) => c, toChorus: (m) => m, lineBreak: '\n' };
  }
  const pairs = crlfPairs(text);
  return {
    identity: pairs.length === 0,
    pairs,
    toEditor(c) {
      const before = countWhile(pairs, (p) => p + 2 <= c);
      const inside = before < pairs.length && pairs[before] + 1 === c ? 1 : 0;
      return c - before - inside;
    },
    toChorus(m) {
      // The pair at index i is the line break at editor position p - i.
      return m + countWhile(pairs, (p, i) => p - i < m);
    },
    lineBreak: pairs.length > 0 ? '\r\n' : '\n',
  };
}

/**
 * Editor changes for Chorus `changes` ({from, to, insert}, ascending,
 * UTF-16 offsets of `text`). A change touching a "\r\n" pair, or one that
 * would make or break a pair, is widened over the neighbouring "\r" or "\n"
 * so that no pair is ever split between the replaced range and the text
 * around it. The inserts keep the document's line breaks: the editor
 * normalises them as it reads them (`normalizeLineBreaks` does the same).
 */
export function editorChanges(text, changes, mapping = lineMapping(text)) {
  if (mapping.identity && text.indexOf('\r') < 0 && !changes.some((c) => c.insert.indexOf('\r') >= 0)) {
    return changes.map(({ from, to, insert }) => ({ from, to, insert }));
  }
  return changes.map(({ from, to, insert }) => {
    let start = from;
    let end = to;
    if (start > 0 && text.charCodeAt(start - 1) === 13) start--; // "\r" before
    if (end < text.length && text.charCodeAt(end) === 10) end++; // "\n" after
    return {
      from: mapping.toEditor(start),
      to: mapping.toEditor(end),
      insert: text.slice(start, from) + insert + text.slice(to, end),
    };
  });
}

/**
 * Chorus changes for editor changes (`{from, to, lines}`: positions in the
 * editor's text before the change, and the inserted lines) made to the
 * editor showing Chorus text `text`. Inserted line breaks take the
 * document's own kind (`mapping.lineBreak`). Where a lone "\r" in the
 * document would pair up with a "\n" next to it (and so turn two of
 * CodeMirror's lines into one), the change puts a "\r" before that "\n",
 * so the document keeps the lines the editor shows.
 */
export function chorusChanges(text, changes, mapping = lineMapping(text)) {
  return changes.map(({ from, to, lines }) => {
    const start = mapping.toChorus(from);
    const end = mapping.toChorus(to);
    let insert = lines.join(mapping.lineBreak);
    if (start > 0 && text.charCodeAt(start - 1) === 13) {
      const next = insert.length > 0 ? insert.charCodeAt(0) : end < text.length ? text.charCodeAt(end) : -1;
      if (next === 10) insert = '\r' + insert;
    }
    return { from: start, to: end, insert };
  });
}
