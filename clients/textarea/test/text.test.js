// The textarea binding's caret arithmetic, checked against the SDK's own
// application of changes: a position moved through a change lands on the
// same text it was next to before.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyChanges } from '@chorus/client';
import { endOfLastChange, mapPosition } from '../src/text.js';

test('a caret keeps its place through changes before, after and at it', () => {
  const changes = [
    { from: 1, to: 3, insert: 'XYZ' }, // "abcdef" -> "aXYZdef"
    { from: 4, to: 4, insert: '!' }, // insert before "e"
  ];
  assert.equal(applyChanges('abcdef', changes), 'aXYZd!ef');
  assert.equal(mapPosition(0, changes), 0, 'before every change');
  assert.equal(mapPosition(6, changes), 8, 'after every change');
  assert.equal(mapPosition(3, changes), 4, 'right after a replaced range: after its text');
  assert.equal(mapPosition(2, changes, -1), 1, 'inside a replaced range: its start...');
  assert.equal(mapPosition(2, changes, 1), 4, '...or its end');
  assert.equal(mapPosition(4, changes, -1), 5, 'an insert at the caret stays after it');
  assert.equal(mapPosition(4, changes, 1), 6, 'or goes before it');
  assert.equal(endOfLastChange(changes), 6);
  assert.equal(endOfLastChange([]), null);
});

test('random changes: a mapped caret stays next to the same text', () => {
  let seed = Number(process.env.SEED) || Math.floor(Math.random() * 2 ** 31);
  console.log(`# caret mapping: seed ${seed} (rerun with SEED=${seed})`);
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 2000; round++) {
    const text = 'abcdefghij'.slice(0, 1 + rand(10));
    const changes = [];
    let pos = 0;
    while (pos <= text.length && changes.length < 3) {
      const from = pos + rand(3);
      if (from > text.length) break;
      const to = Math.min(text.length, from + rand(3));
      changes.push({ from, to, insert: 'XY'.slice(0, rand(3)) });
      pos = to + 1;
    }
    const after = applyChanges(text, changes);
    const caret = rand(text.length + 1);
    const touched = changes.some((c) => c.from <= caret && caret <= c.to);
    const moved = mapPosition(caret, changes, -1);
    assert.ok(moved >= 0 && moved <= after.length);
    if (!touched) {
      // Untouched surroundings: the text on both sides is the same.
      assert.equal(after.slice(moved, moved + 1), text.slice(caret, caret + 1), JSON.stringify({ text, changes, caret }));
      assert.equal(after.slice(moved - 1, moved), text.slice(caret - 1, caret), JSON.stringify({ text, changes, caret }));
    }
  }
});

test('the module loads and binds nothing without a field', async () => {
  const { bindTextarea } = await import('../src/index.js');
  assert.throws(() => bindTextarea(null, null), TypeError);
});

test('random edits at a hint: diffNear finds the replacement diffText finds, comparing around the hint', async () => {
  const { diffNear } = await import('../src/text.js');
  const { diffText } = await import('@chorus/client');
  let seed = Number(process.env.SEED) || Math.floor(Math.random() * 2 ** 31);
  console.log(`# diffNear: seed ${seed} (rerun with SEED=${seed})`);
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const alphabet = ['a', 'b', 'é', '\n', ' ', 'xy'];
  for (let round = 0; round < 2000; round++) {
    let before = '';
    for (let n = rand(3000); n > 0; n--) before += alphabet[rand(round % 2 ? 2 : alphabet.length)];
    const from = rand(before.length + 1);
    const to = Math.min(before.length, from + (rand(4) === 0 ? rand(500) : rand(3)));
    let insert = '';
    for (let n = rand(4) === 0 ? rand(300) : rand(3); n > 0; n--) insert += alphabet[rand(alphabet.length)];
    const after = before.slice(0, from) + insert + before.slice(to);
    // The hint: around the replaced range, as the caret and selection before
    // and after an edit are, give or take the slack.
    const slack = 1 + rand(64);
    const lo = Math.max(0, from - rand(slack));
    const hi = Math.min(before.length, to + rand(slack));
    const found = diffNear(before, after, lo, hi, slack);
    const expected = diffText(before, after);
    assert.deepEqual(found, expected, JSON.stringify({ before: before.length, from, to, insert, lo, hi }));
  }
});

test('diffNear compares a window around the hint, not the whole text', async () => {
  const { diffNear } = await import('../src/text.js');
  // Strings that differ far from the hint would be found only by widening to
  // them: an edit at 500 000 is found from the hint alone.
  const before = 'abcdefgh'.repeat(1 << 17);
  const after = before.slice(0, 500000) + 'Q' + before.slice(500000);
  assert.deepEqual(diffNear(before, after, 500001, 500001), { from: 500000, to: 500000, insert: 'Q' });
  // A hint far from the edit still finds it (by widening).
  const edited = 'Z' + before.slice(1);
  assert.deepEqual(diffNear(before, edited, 900000, 900000), { from: 0, to: 1, insert: 'Z' });
});
