// Pure text helpers of the textarea binding: moving a caret through a Chorus
// change (its `changes`, every position in the text before it). No DOM here,
// so Node tests cover them directly.

import { diffText } from '@chorus/client';

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

/**
 * The replacement ({from, to, insert}, or null for none) that turns `before`
 * into `after`, for an edit at one place that touches offsets `lo`..`hi` of
 * `before` (the caret and selection around the edit). Only a window around
 * them, `slack` wider on each side, is compared, so the cost follows the
 * edit rather than the text: the window widens whenever the change found
 * reaches its edge (the text there differs, so the edit may go on beyond
 * it), up to the whole text. The answer is diffText's whenever the replaced
 * range lies in the first window. An edit elsewhere misaligns the window's
 * two sides, which nearly always reaches an edge and widens it, but
 * repetitive text can hide that: callers pass a hint only for edits made at
 * the caret (typing, deleting, pasting), whose range the hint covers.
 */
export function diffNear(before, after, lo, hi, slack = 64) {
  const delta = after.length - before.length;
  for (let pad = slack; ; pad *= 8) {
    const start = Math.max(0, Math.min(lo, hi) - pad);
    const end = Math.min(before.length, Math.max(lo, hi, start) + pad);
    if (start === 0 && end === before.length) return diffText(before, after);
    // The window is [start, end) of `before` and [start, end + delta) of `after`.
    if (end + delta < start) continue;
    const change = diffText(before.slice(start, end), after.slice(start, end + delta));
    if (change && (start === 0 || change.from > 0) && (end === before.length || change.to < end - start)) {
      return { from: start + change.from, to: start + change.to, insert: change.insert };
    }
  }
}
