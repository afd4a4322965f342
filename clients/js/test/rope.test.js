// The SDK holds a document's text as a Rope (src/rope.js) so that an op or a
// position costs the same on any size of text. The plain-string functions
// (applyOp in ot.js, toCodePoints and toUtf16 in units.js) are the reference:
// on seeded random edits, with astral-plane characters, "\r\n" pairs and
// texts many chunks long, the rope must give exactly the same texts, change
// events, byte counts and positions.

import assert from 'node:assert/strict';
import { applyOp, opFromChanges } from '../src/ot.js';
import { Rope } from '../src/rope.js';
import { codePointLength, splitsPair, toCodePoints, toUtf16, utf8Length } from '../src/units.js';
import { seeded, test } from './helpers.js';

const PIECES = ['a', 'b', 'é', '€', '😀', '𝄞', '\r\n', '\r', '\n', ' ', 'xyz'];

function randomText(rand, n) {
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(PIECES[rand.int(PIECES.length)]);
  return parts.join('');
}

/**
 * A random op that fits a text of `length` code points (canonical, as the
 * server sends); half of them start near code point `near` (someone typing).
 */
function randomOp(rand, length, near = 0) {
  const op = [];
  let left = length;
  const big = rand.int(20) === 0; // now and then a paste or a cut across many chunks
  for (let k = 0; k < 1 + rand.int(3); k++) {
    let skip = rand.int(Math.min(left, big ? length + 1 : 2000) + 1);
    if (k === 0 && rand.int(2) === 0) skip = Math.max(0, Math.min(left, near + rand.int(9) - 4));
    if (skip > 0) {
      op.push(skip);
      left -= skip;
    }
    const del = Math.min(left, rand.int(4) === 0 ? rand.int(big ? 3000 : 6) : 0);
    if (del > 0) {
      op.push(rand.int(3) === 0 ? { d: del } : { d: del });
      left -= del;
    }
    if (rand.int(3) > 0) op.push(randomText(rand, big ? rand.int(1500) + 1 : rand.int(4) + 1));
  }
  while (typeof op[op.length - 1] === 'number') op.pop();
  return op;
}

function checkPositions(rand, rope, text, samples) {
  assert.equal(rope.length, text.length);
  assert.equal(rope.codePoints, codePointLength(text));
  for (let i = 0; i < samples; i++) {
    const u = rand.int(text.length + 3) - 1;
    assert.equal(rope.splitsPair(u), splitsPair(text, u), `splitsPair(${u})`);
    let expected;
    try {
      expected = toCodePoints(text, u);
    } catch (err) {
      assert.throws(() => rope.toCodePoints(u), { name: err.name, message: err.message });
      expected = null;
    }
    if (expected !== null) assert.equal(rope.toCodePoints(u), expected, `toCodePoints(${u})`);
    const cp = rand.int(rope.codePoints + 3) - 1;
    assert.equal(rope.toUtf16(cp), toUtf16(text, cp), `toUtf16(${cp})`);
  }
}

test('a rope gives the same texts, changes and positions as the string functions', () => {
  const rand = seeded('rope against strings');
  for (let round = 0; round < 6; round++) {
    // From empty, from a short text, and from texts of many chunks.
    let text = round === 0 ? '' : randomText(rand, [10, 3000, 30000][round % 3]);
    const rope = new Rope(text);
    let op0 = 0; // where the last op started
    checkPositions(rand, rope, text, 200);
    for (let step = 0; step < 1000; step++) {
      const op = randomOp(rand, codePointLength(text), typeof op0 === 'number' ? op0 : 0);
      op0 = op[0];
      const expected = applyOp(text, op);
      const bytes = rope.bytesChange(op);
      const got = rope.apply(op);
      assert.deepEqual(got.changes, expected.changes, `changes of ${JSON.stringify(op).slice(0, 200)}`);
      assert.deepEqual(got.edits, expected.edits, 'edits');
      assert.equal(got.bytes, expected.bytes, 'bytes');
      assert.equal(bytes, expected.bytes, 'bytesChange');
      text = expected.text;
      if (step % 50 === 0) assert.equal(rope.toString(), text, `text after step ${step}`);
      checkPositions(rand, rope, text, 5);
      if (step % 100 === 0) {
        const from = rand.int(rope.codePoints + 1);
        const to = from + rand.int(rope.codePoints - from + 1);
        const f16 = toUtf16(text, from);
        assert.equal(rope.slice(from, to), text.slice(f16, toUtf16(text, to)), `slice(${from}, ${to})`);
      }
      // A document that grew too large is cut back (through the rope, as an op).
      if (text.length > 60000) {
        const cut = [{ d: codePointLength(text) - 1000 }];
        const want = applyOp(text, cut);
        assert.deepEqual(rope.apply(cut).changes, want.changes);
        text = want.text;
      }
    }
    assert.equal(rope.toString(), text);
    assert.equal(utf8Length(rope.toString()), utf8Length(text));
  }
});

test('editor changes become the same op from a rope as from the string', () => {
  const rand = seeded('changes to ops');
  const text = randomText(rand, 5000);
  const rope = new Rope(text);
  for (let i = 0; i < 2000; i++) {
    const changes = [];
    let pos = 0;
    for (let j = 0; j < 3; j++) {
      const from = pos + rand.int(Math.max(1, (text.length - pos) >> 1) + 1);
      const to = from + rand.int(4);
      changes.push({ from, to, insert: randomText(rand, rand.int(3)) });
      pos = to;
    }
    let expected;
    try {
      expected = opFromChanges(text, changes);
    } catch (err) {
      assert.throws(() => opFromChanges(rope, changes), { name: err.name, message: err.message });
      continue;
    }
    assert.deepEqual(opFromChanges(rope, changes), expected, JSON.stringify(changes));
  }
});

test('an op that does not fit throws and leaves the rope as it was', () => {
  const rope = new Rope('a😀b\r\nc');
  assert.throws(() => rope.apply([5, 'x', 2]), RangeError);
  assert.throws(() => rope.apply([3, { d: 4 }]), RangeError);
  assert.throws(() => rope.apply([1, { x: 1 }]), TypeError);
  assert.throws(() => rope.apply('x'), TypeError);
  assert.equal(rope.toString(), 'a😀b\r\nc');
  assert.equal(rope.codePoints, 6);
  assert.deepEqual(rope.apply([1, { d: 1 }, '🎉']).changes, [{ from: 1, to: 3, insert: '🎉' }]);
  assert.equal(rope.toString(), 'a🎉b\r\nc');
});

test('a large text stays in bounded chunks and a shallow tree through many edits', () => {
  const rand = seeded('rope shape');
  const shape = (rope) => {
    let chunks = 0;
    let deepest = 0;
    let largest = 0;
    let smallest = Infinity;
    const walk = (n, depth) => {
      if (!n) return;
      chunks++;
      deepest = Math.max(deepest, depth);
      largest = Math.max(largest, n.s.length);
      smallest = Math.min(smallest, n.s.length);
      walk(n.l, depth + 1);
      walk(n.r, depth + 1);
    };
    walk(rope._root, 1);
    return { chunks, deepest, largest, smallest };
  };
  const text = randomText(rand, 200000);
  const rope = new Rope(text);
  const start = shape(rope);
  let points = rope.codePoints;
  for (let i = 0; i < 40000; i++) {
    // Typing and deleting anywhere, with now and then a paste or a cut.
    const at = rand.int(points + 1);
    let op;
    if (i % 1000 === 999) op = [at, randomText(rand, 3000)];
    else if (i % 1000 === 500 && at + 4000 < points) op = [at, { d: 4000 }];
    else if (i % 2 === 0 || at === points) op = at > 0 ? [at, 'q'] : ['q'];
    else op = at > 0 ? [at, { d: 1 }] : [{ d: 1 }];
    rope.apply(op);
    points = rope.codePoints;
  }
  const end = shape(rope);
  console.log(`# shape at the start ${JSON.stringify(start)}, after the edits ${JSON.stringify(end)}`);
  assert.ok(end.largest <= 512, `a chunk of ${end.largest} units`);
  assert.ok(end.smallest >= 1, 'no empty chunk');
  assert.ok(end.chunks <= 2 * Math.ceil(rope.length / 128) + 16, `${end.chunks} chunks for ${rope.length} units`);
  assert.ok(end.deepest <= 4 * Math.log2(end.chunks) + 8, `depth ${end.deepest} for ${end.chunks} chunks`);
});
