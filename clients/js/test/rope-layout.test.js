// A Rope keeps each leaf's counts, text start and surrogate pair offsets in
// a head, its text in a slot, and each node's children as entries of
// running sums and ids (src/rope-store.js). A slip in that arithmetic
// shows where an edit meets the edge of a slot or of a node: these tests
// aim their edits there (at leaf and node edges, across them, leaves
// filled to the last unit and to the last pair), starting with a byte order
// mark, and check everything against a plain string.

import assert from 'node:assert/strict';
import { Rope } from '../src/rope.js';

import { codePointLength, splitsPair, toCodePoints, toUtf16 } from '../src/units.js';
import { seeded, test } from './helpers.js';
import { checkPositions, randomText, shape } from './rope-check.js';

/** The code point offsets where a leaf ends, and where a node (of any height) ends. */
function edges(rope) {
  const leaves = [];
  const nodes = [];
  let at = 0;
  const walk = (n) => {
    if (n.h === 0) {
      at += n.cps;
      leaves.push(at);
      return;
    }
    for (const k of n.kids) walk(k);
    nodes.push(at);
  };
  walk(rope._inspect().root);
  return { leaves, nodes };
}

/** `replace` on the rope and on `text`, checked against each other; returns the new text. */
function replaceBoth(rope, text, at, remove, insert) {
  const from16 = toUtf16(text, at);
  const to16 = toUtf16(text, at + remove);
  const got = rope.replace(at, remove, insert);
  assert.equal(got.at, from16, `offset of replace(${at}, ${remove})`);
  assert.equal(got.removed, text.slice(from16, to16), `text removed by replace(${at}, ${remove})`);
  return text.slice(0, from16) + insert + text.slice(to16);
}

/** Every UTF-16 offset and code point within `span` of code point `at`, against the string. */
function checkAround(rope, text, at, span) {
  const points = codePointLength(text);
  for (let cp = Math.max(0, at - span); cp <= Math.min(points, at + span); cp++) {
    const u = toUtf16(text, cp);
    assert.equal(rope.toUtf16(cp), u, `toUtf16(${cp})`);
    for (const v of [u - 1, u, u + 1]) {
      if (v < 0 || v > text.length) continue;
      assert.equal(rope.splitsPair(v), splitsPair(text, v), `splitsPair(${v})`);
      assert.equal(rope.pointAt(v), splitsPair(text, v) ? -1 : toCodePoints(text, v), `pointAt(${v})`);
    }
  }
}

test('edits at and across leaf and node edges match a string, from a text starting with a byte order mark', () => {
  const rand = seeded('rope layout edges');
  let text = '\ufeff' + randomText(rand, 40000);
  const rope = new Rope(text);
  assert.ok(rope._height >= 2, `a tree of height ${rope._height}`);
  for (let step = 0; step < 1500; step++) {
    const points = codePointLength(text);
    const { leaves, nodes } = edges(rope);
    // An edge of a node half the time (where entries and slots meet), of a
    // leaf otherwise, give or take a code point; now and then the very start
    // (before or at the byte order mark) or the very end.
    const pick = rand.int(20);
    let at;
    if (pick === 0) at = rand.int(2);
    else if (pick === 1) at = points;
    else at = rand.pick(pick < 10 ? nodes : leaves) + rand.int(3) - 1;
    at = Math.max(0, Math.min(points, at));
    const kind = rand.int(10);
    let remove = 0;
    let insert = '';
    if (kind < 3) insert = randomText(rand, 1 + rand.int(3)); // typing
    else if (kind < 5) remove = Math.min(points - at, 1 + rand.int(3)); // deleting
    else if (kind < 7) {
      // Across the edge: from a little before it to a little (or a lot) after.
      const back = Math.min(at, rand.int(4));
      at -= back;
      remove = Math.min(points - at, back + 1 + rand.int(rand.int(4) === 0 ? 3000 : 8));
      if (rand.int(2) === 0) insert = randomText(rand, 1 + rand.int(5));
    } else if (kind < 9) insert = randomText(rand, 300 + rand.int(3000)); // a paste, several leaves long
    else {
      // A cut of many leaves, now and then replaced by a paste.
      remove = Math.min(points - at, 500 + rand.int(5000));
      if (rand.int(2) === 0) insert = randomText(rand, rand.int(2000));
    }
    text = replaceBoth(rope, text, at, remove, insert);
    checkAround(rope, text, at, 3);
    checkPositions(rand, rope, text, 3);
    if (step % 50 === 0) {
      shape(rope);
      assert.equal(rope.toString(), text, `text after step ${step}`);
    }
    // Keep it many leaves long, and not too long.
    if (codePointLength(text) < 10000) text = replaceBoth(rope, text, codePointLength(text), 0, randomText(rand, 20000));
    if (text.length > 120000) text = replaceBoth(rope, text, 1, codePointLength(text) - 60000, '');
  }
  shape(rope);
  assert.equal(rope.toString(), text);
  assert.equal(rope.toString().charCodeAt(0), text.charCodeAt(0));
});

test('leaves full to the last unit and to the last surrogate pair keep their text, against a string', () => {
  // A text of nothing but astral-plane characters puts as many pair offsets
  // in a slot as it has room for; typing into full leaves, one unit at a
  // time or a pair at a time, fills them to the last unit before they split.
  const rand = seeded('rope layout full leaves');
  for (const start of ['😀'.repeat(3000), '\ufeff' + '𝄞😀'.repeat(2000), 'a'.repeat(6000), '\ufeff' + 'x😀'.repeat(3000)]) {
    let text = start;
    const rope = new Rope(text);
    let caret = rand.int(codePointLength(text) + 1);
    for (let step = 0; step < 3000; step++) {
      const points = codePointLength(text);
      if (rand.int(100) === 0) caret = rand.int(points + 1);
      caret = Math.min(caret, points);
      const r = rand.int(12);
      if (r === 0 && caret > 0) {
        const n = Math.min(caret, 1 + rand.int(600));
        caret -= n;
        text = replaceBoth(rope, text, caret, n, '');
      } else {
        const insert = r < 6 ? '😀' : r < 9 ? 'b' : r < 11 ? '𝄞\r\n' : '😀'.repeat(1 + rand.int(300));
        text = replaceBoth(rope, text, caret, 0, insert);
        caret += codePointLength(insert);
      }
      if (step % 20 === 0) checkAround(rope, text, caret, 2);
      if (step % 300 === 0) {
        const s = shape(rope);
        assert.ok(s.largest <= rope._inspect().leafMax);
        assert.equal(rope.toString(), text, `text after step ${step}`);
      }
    }
    shape(rope);
    assert.equal(rope.toString(), text);
  }
});

test('pair offsets move between the head and the slot of a leaf as leaves go over and under HEAD_PAIRS pairs, against a string', () => {
  // A leaf keeps its pair offsets in its head while it has at most
  // HEAD_PAIRS of them, in its slot when more: these edits put emoji in and
  // take them out of leaves holding about that many, so leaves cross that
  // count both ways, by one pair and by many at once, checking every leaf's
  // offsets after every edit and the positions around it.
  const rand = seeded('rope leaf heads');
  const piece = () => (rand.int(12) === 0 ? '😀' : rand.int(3) === 0 ? 'é' : 'abcdefg'[rand.int(7)]);
  const parts = [];
  for (let i = 0; i < 2400; i++) parts.push(rand.int(40) === 0 ? '😀😀😀😀' : piece());
  let text = parts.join('');
  const rope = new Rope(text);
  assert.ok(rope._inspect().root.h > 0, 'a text of many leaves');
  // How many leaves have more pairs than their head holds, after each edit:
  // it must go up and down many times.
  const overHead = () => {
    let count = 0;
    const walk = (n) => (n.h === 0 ? (count += n.inHead ? 0 : 1) : n.kids.forEach(walk));
    walk(rope._inspect().root);
    return count;
  };
  let before = overHead();
  let ups = 0;
  let downs = 0;
  for (let step = 0; step < 2000; step++) {
    const points = codePointLength(text);
    const at = rand.int(points + 1);
    // Pairs come in and go out about as often (a deletion takes one in eight).
    const r = rand.int(10);
    if (r < 3) text = replaceBoth(rope, text, at, 0, '😀'.repeat(1 + rand.int(rand.int(8) === 0 ? 40 : 2)));
    else if (r < 8 && at < points) text = replaceBoth(rope, text, at, Math.min(points - at, 1 + rand.int(rand.int(8) === 0 ? 60 : 3)), '');
    else text = replaceBoth(rope, text, at, 0, piece());
    checkAround(rope, text, at, 3);
    shape(rope); // every head against its leaf's pairs
    const now = overHead();
    if (now > before) ups++;
    if (now < before) downs++;
    before = now;
  }
  console.log(`# leaves went over HEAD_PAIRS pairs ${ups} times and under ${downs} times; ${before} over at the end`);
  assert.ok(ups >= 5 && downs >= 5);
  assert.equal(rope.toString(), text);
});
