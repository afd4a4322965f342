// The SDK holds a document's text as a Rope (src/rope.js) so that an op or a
// position costs the same on any size of text. The plain-string functions
// (applyOp in ot.js, toCodePoints and toUtf16 in units.js) are the reference:
// on seeded random edits, with astral-plane characters, "\r\n" pairs and
// texts many chunks long, the rope must give exactly the same texts, change
// events, byte counts and positions.

import assert from 'node:assert/strict';
import { applyOp, opFromChanges } from '../src/ot.js';
import { Rope } from '../src/rope.js';
import { decodeAll, decoders } from '../src/rope-store.js';
import { codePointLength, splitsPair, toUtf16, utf8Length } from '../src/units.js';
import { seeded, test } from './helpers.js';
import { PIECES, checkPositions, randomText, shape } from './rope-check.js';

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

test('a large text stays in bounded leaves and a shallow tree through many edits', () => {
  const rand = seeded('rope shape');
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
    if (i % 5000 === 0) shape(rope);
  }
  const end = shape(rope);
  console.log(`# shape at the start ${JSON.stringify(start)}, after the edits ${JSON.stringify(end)}`);
  const { leafMax, kidsMax } = rope._inspect();
  assert.ok(end.largest <= leafMax, `a leaf of ${end.largest} units`);
  assert.ok(end.smallest >= 1, 'no empty leaf');
  assert.ok(end.widest <= kidsMax, `a node of ${end.widest} children`);
  assert.ok(end.leaves <= Math.ceil(rope.length / (leafMax / 4)) + 16, `${end.leaves} leaves for ${rope.length} units`);
  assert.ok(end.depth <= Math.ceil(Math.log(end.leaves) / Math.log(kidsMax / 4)) + 1, `depth ${end.depth} for ${end.leaves} leaves`);
});

test('a rope edited piece by piece matches a string, its tree sound after every edit', () => {
  // Rope.replace directly, with the ranges and the inserts that reshape the
  // tree: a leaf filled past its bound, emptied, merged with a neighbour,
  // cuts across many leaves, the text emptied and filled again; every piece
  // with emoji and "\r\n".
  const rand = seeded('rope replace');
  let text = randomText(rand, 5000);
  const rope = new Rope(text);
  for (let step = 0; step < 3000; step++) {
    const points = codePointLength(text);
    const at = rand.int(points + 1);
    const kind = rand.int(10);
    const remove = kind < 4 ? 0 : Math.min(points - at, kind < 8 ? rand.int(4) : rand.int(3000));
    const insert = kind === 9 && rand.int(4) === 0 ? randomText(rand, rand.int(2500)) : randomText(rand, rand.int(3));
    const from16 = toUtf16(text, at);
    const to16 = toUtf16(text, at + remove);
    const got = rope.replace(at, remove, insert);
    assert.equal(got.at, from16, `offset of replace(${at}, ${remove})`);
    assert.equal(got.removed, text.slice(from16, to16), 'the text removed');
    text = text.slice(0, from16) + insert + text.slice(to16);
    if (step % 500 === 250) {
      // Now and then the whole text goes, and comes back.
      const all = rope.replace(0, rope.codePoints, '');
      assert.equal(all.removed, text);
      assert.equal(rope.toString(), '');
      assert.equal(shape(rope).leaves, 1);
      text = randomText(rand, rand.int(4000));
      rope.replace(0, 0, text);
    }
    shape(rope);
    if (step % 100 === 0) assert.equal(rope.toString(), text, `text after step ${step}`);
    checkPositions(rand, rope, text, 3);
    const from = rand.int(codePointLength(text) + 1);
    const to = Math.min(codePointLength(text), from + rand.int(step % 10 === 0 ? 5000 : 20));
    assert.equal(rope.slice(from, to), text.slice(toUtf16(text, from), toUtf16(text, to)), `slice(${from}, ${to})`);
  }
  assert.equal(rope.toString(), text);
});

test('positions and ranges match the string at every offset of a text of many leaves', () => {
  // Exhaustive rather than sampled: every UTF-16 offset and every code point
  // of a text with pairs and "\r\n" at and around leaf edges, after edits.
  const rand = seeded('rope every position');
  let text = randomText(rand, 6000);
  const rope = new Rope(text);
  for (let i = 0; i < 200; i++) {
    const at = rand.int(codePointLength(text) + 1);
    const op = at > 0 ? [at, randomText(rand, 1 + rand.int(3))] : [randomText(rand, 2)];
    text = applyOp(text, op).text;
    rope.apply(op);
  }
  const points = codePointLength(text);
  for (let u = 0; u <= text.length; u++) {
    assert.equal(rope.splitsPair(u), splitsPair(text, u), `splitsPair(${u})`);
    assert.equal(rope.pointAt(u), splitsPair(text, u) ? -1 : codePointLength(text, 0, u), `pointAt(${u})`);
  }
  for (let cp = 0; cp <= points + 1; cp++) assert.equal(rope.toUtf16(cp), toUtf16(text, cp), `toUtf16(${cp})`);
});

test('leaf buffers grow, shrink and keep their text through typing, against a string', () => {
  // Someone typing and deleting in runs at a caret (the edits that stay
  // inside one leaf and move its buffer in place), with now and then a word
  // of emoji, a jump elsewhere, and the text read at random moments (so a
  // leaf's kept text must follow the edits after it was built). Starts from
  // a short text (one leaf whose buffer must grow) and from one of many
  // leaves.
  const rand = seeded('rope typing in leaf buffers');
  for (const start of [0, 12, 20000]) {
    let text = randomText(rand, start);
    const rope = new Rope(text);
    let caret = 0;
    for (let step = 0; step < 6000; step++) {
      const points = codePointLength(text);
      if (rand.int(200) === 0) caret = rand.int(points + 1);
      caret = Math.min(caret, points);
      let op;
      if (rand.int(3) === 0 && caret > 0) {
        const n = Math.min(caret, 1 + rand.int(rand.int(10) === 0 ? 40 : 2));
        caret -= n;
        op = caret > 0 ? [caret, { d: n }] : [{ d: n }];
      } else {
        const insert = rand.int(8) === 0 ? randomText(rand, 1 + rand.int(30)) : PIECES[rand.int(PIECES.length)];
        op = caret > 0 ? [caret, insert] : [insert];
        caret += codePointLength(insert);
      }
      const expected = applyOp(text, op);
      const got = rope.apply(op);
      assert.deepEqual(got.edits, expected.edits, `edits of ${JSON.stringify(op)}`);
      assert.equal(got.bytes, expected.bytes, 'bytes');
      text = expected.text;
      if (rand.int(50) === 0) assert.equal(rope.toString(), text, `text after step ${step}`);
      if (step % 500 === 0) shape(rope);
      checkPositions(rand, rope, text, 2);
    }
    assert.equal(rope.toString(), text);
    shape(rope);
  }
});

test('positions and edits match a string with sparse and dense surrogate pairs and uneven leaves', () => {
  // Leaves with a few surrogate pairs are counted by a scan, leaves with
  // many by a binary search, and a child is guessed from its share of its
  // node: this mixes ASCII stretches (no pairs), prose with an emoji now and
  // then (a few per leaf) and runs of emoji (many), and pastes and cuts that
  // leave leaves of very different sizes side by side, checking every
  // lookup and edit against the string functions.
  const rand = seeded('rope sparse and dense pairs');
  const piece = (kind) => {
    if (kind === 0) return 'abcdefghij'.slice(0, 1 + rand.int(10));
    if (kind === 1) return rand.int(40) === 0 ? '😀' : 'xyz '[rand.int(4)];
    return rand.int(3) === 0 ? 'é' : '𝄞';
  };
  const chunk = (n) => {
    const kind = rand.int(3);
    const parts = [];
    for (let i = 0; i < n; i++) parts.push(piece(kind));
    return parts.join('');
  };
  let text = '';
  for (let i = 0; i < 60; i++) text += chunk(1 + rand.int(400));
  const rope = new Rope(text);
  for (let step = 0; step < 4000; step++) {
    const points = codePointLength(text);
    const at = rand.int(points + 1);
    let op;
    const kind = rand.int(50);
    if (kind === 0) op = [at, chunk(1 + rand.int(1500))];
    else if (kind === 1 && at + 1 < points) op = [at, { d: Math.min(points - at, 1 + rand.int(2500)) }];
    else if (kind < 25 || at === points) op = [at, piece(rand.int(3))];
    else op = [at, { d: Math.min(points - at, 1 + rand.int(3)) }];
    if (op[0] === 0) op.shift();
    const expected = applyOp(text, op);
    const got = rope.apply(op);
    assert.deepEqual(got.changes, expected.changes, `changes of ${JSON.stringify(op).slice(0, 100)}`);
    assert.deepEqual(got.edits, expected.edits, 'edits');
    assert.equal(got.bytes, expected.bytes, 'bytes');
    text = expected.text;
    checkPositions(rand, rope, text, 8);
    if (step % 400 === 0) {
      shape(rope);
      assert.equal(rope.toString(), text, `text after step ${step}`);
    }
  }
  const { leaves, smallest, largest } = shape(rope);
  console.log(`# ${leaves} leaves of ${smallest} to ${largest} units`);
  assert.equal(rope.toString(), text);
});

test('slots and nodes given back by rebuilds are reused: pastes and cuts do not grow the rope', () => {
  // The flat layout hands out leaf slots and node numbers and takes them
  // back on free lists; a slot given back twice, or never, would show as
  // mixed texts (shape) or as a rope that grows with every paste and cut.
  const rand = seeded('rope slot reuse');
  let text = randomText(rand, 20000);
  const rope = new Rope(text);
  let first = null;
  for (let cycle = 0; cycle < 300; cycle++) {
    const points = codePointLength(text);
    const at = rand.int(points + 1);
    const paste = randomText(rand, 1 + rand.int(3000));
    let op = at > 0 ? [at, paste] : [paste];
    text = applyOp(text, op).text;
    rope.apply(op);
    const cut = codePointLength(paste);
    const from = rand.int(codePointLength(text) - cut + 1);
    op = from > 0 ? [from, { d: cut }] : [{ d: cut }];
    text = applyOp(text, op).text;
    rope.apply(op);
    if (cycle % 50 === 0) {
      shape(rope);
      assert.equal(rope.toString(), text, `text after cycle ${cycle}`);
    }
    const { leaves, nodes } = rope._inspect();
    if (cycle === 20) first = { leaves, nodes };
    if (cycle > 20) {
      assert.ok(leaves <= first.leaves * 2, `${leaves} slots handed out, ${first.leaves} after 20 cycles`);
      assert.ok(nodes <= first.nodes * 2 + 8, `${nodes} nodes handed out, ${first.nodes} after 20 cycles`);
    }
  }
  shape(rope);
  assert.equal(rope.toString(), text);
});

test('running sums stay true when single edits far apart settle through node biases, against a string', () => {
  // Edits one code point at a time at places far apart (as remote ops from
  // several people land), so each settles the last one's change along its
  // path: on the shorter side of every node, adding to the entries after
  // the leaf or to the node's bias less the entries before it. Positions,
  // slices and the tree's kept counts must match a string throughout.
  const rand = seeded('rope sums and biases');
  let text = randomText(rand, 60000);
  const rope = new Rope(text);
  assert.ok(rope._height >= 2, `a tree of height ${rope._height}`);
  let biased = 0;
  for (let step = 0; step < 6000; step++) {
    const points = codePointLength(text);
    // Near the start and near the end of the text now and then: the nodes'
    // first and last children, where one side of the node is empty.
    const pick = rand.int(10);
    const at = pick === 0 ? rand.int(Math.min(points, 300) + 1) : pick === 1 ? points - rand.int(Math.min(points, 300) + 1) : rand.int(points + 1);
    const remove = step % 2 === 1 && at < points ? 1 : 0;
    const insert = remove ? '' : rand.pick(PIECES);
    const from16 = toUtf16(text, at);
    const to16 = toUtf16(text, at + remove);
    const got = rope.replace(at, remove, insert);
    assert.equal(got.at, from16, `offset of replace(${at}, ${remove}) at step ${step}`);
    assert.equal(got.removed, text.slice(from16, to16));
    text = text.slice(0, from16) + insert + text.slice(to16);
    checkPositions(rand, rope, text, 2);
    if (step % 100 === 0) {
      rope._settle();
      biased += rope._bias.some((b) => b !== 0) ? 1 : 0;
      shape(rope);
      const from = rand.int(codePointLength(text) + 1);
      const to = Math.min(codePointLength(text), from + rand.int(3000));
      assert.equal(rope.slice(from, to), text.slice(toUtf16(text, from), toUtf16(text, to)), `slice(${from}, ${to})`);
    }
  }
  assert.ok(biased > 0, 'some node carried a bias');
  assert.equal(rope.toString(), text);
});

test('the whole text is built the same by every decoder, a leading byte order mark and pairs kept, against a string', () => {
  const rand = seeded('rope whole text');
  for (const n of [0, 1, 30, 65, 200, 5000, 40000]) {
    // Now and then a U+FEFF first (a UTF-16 decoder drops it unless told not to).
    const text = (rand.int(2) === 0 ? '\ufeff' : '') + randomText(rand, n);
    // The text's units, and the same one unit into a buffer (a view not at its start).
    const after = new Uint16Array(text.length + 1);
    after[0] = 0x78;
    for (let i = 0; i < text.length; i++) after[i + 1] = text.charCodeAt(i);
    const units = after.slice(1);
    for (const [name, decode] of Object.entries(decoders)) {
      if (name === 'buffer' && typeof Buffer !== 'function') continue;
      assert.equal(decode(units), text, `${name} on ${text.length} units`);
      assert.equal(decode(after.subarray(1)), text, `${name} on a view not at the start of its buffer`);
    }
    assert.equal(decodeAll(units), text);
    const rope = new Rope(text);
    assert.equal(rope.toString(), text);
    // Edits anywhere, the text read after each (as an application reading `doc.text` per op does).
    let plain = text;
    for (let i = 0; i < 200; i++) {
      const op = randomOp(rand, codePointLength(plain), rand.int(codePointLength(plain) + 1));
      plain = applyOp(plain, op).text;
      rope.apply(op);
      assert.equal(rope.toString(), plain, `text after edit ${i}`);
    }
  }
});

test('an op applied without a description changes the text and its size as with one, against a string', () => {
  const rand = seeded('rope apply undescribed');
  let text = randomText(rand, 20000);
  const described = new Rope(text);
  const bare = new Rope(text);
  for (let step = 0; step < 500; step++) {
    const op = randomOp(rand, codePointLength(text), rand.int(codePointLength(text) + 1));
    const want = applyOp(text, op);
    assert.equal(described.apply(op).bytes, want.bytes);
    const got = bare.apply(op, false);
    assert.equal(got.bytes, want.bytes, 'bytes');
    assert.deepEqual([got.changes.length, got.edits.length], [0, 0], 'nothing described');
    text = want.text;
    if (step % 25 === 0) assert.equal(bare.toString(), text, `text after step ${step}`);
    checkPositions(rand, bare, text, 3);
  }
  assert.equal(bare.toString(), text);
});
