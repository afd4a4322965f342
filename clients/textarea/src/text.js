// Pure text helpers of the textarea binding: moving a caret through a Chorus
// change (its `changes`, every position in the text before it). No DOM here,
// so Node tests cover them directly.

/**
 * Where UTF-16 offset `pos` of the text before `changes` is afterwards.
 * `assoc` decides an insert exactly at `pos`, and a replaced range around
 * it: -1 keeps the position before the inserted text (a caret stays before
 * someone else's insert at it), 1 moves it after.
 */
export function mapPosition(pos, changes, assoc = -1) {
  let shift = 0;
  for (const { from, to, insert } of changes) {
    if (pos < from) break;
    const removed = to - from;
    if (pos > to || (pos === to && removed > 0)) {
      shift += insert.length - removed;
      continue;
    }
    if (removed === 0) {
      // An insert exactly at pos.
      if (assoc > 0) shift += insert.length;
      break;
    }
    // pos is at the start of, or inside, a replaced range.
    return from + shift + (assoc > 0 && pos > from ? insert.length : 0);
  }
  return pos + shift;
}

/** The offset right after the last replacement, in the text after `changes` (null if none). */
export function endOfLastChange(changes) {
  if (changes.length === 0) return null;
  let shift = 0;
  for (let i = 0; i < changes.length - 1; i++) shift += changes[i].insert.length - (changes[i].to - changes[i].from);
  const last = changes[changes.length - 1];
  return last.from + shift + last.insert.length;
}
