// The SDK transforms one-edit ops (an insert, or a delete by count, at one
// place: typing, and nearly every op of a busy document) itself instead of
// through ot-text-unicode, for speed. On seeded random pairs of such ops,
// at every kind of overlap and tie and on both sides, and on longer ops
// (which go to the library), the result must be the library's.

import assert from 'node:assert/strict';
import { textType, transform } from '../src/ot.js';
import { seeded, test } from './helpers.js';

const INSERTS = ['a', '😀', 'bc', 'é𝄞x', '\r\n'];

function oneEdit(rand) {
  const at = rand.int(4) === 0 ? 0 : rand.int(12);
  const c = rand.int(2) === 0 ? rand.pick(INSERTS) : { d: 1 + rand.int(6) };
  return at > 0 ? [at, c] : [c];
}

function anyOp(rand) {
  if (rand.int(3) > 0) return oneEdit(rand);
  const op = [];
  for (let n = 1 + rand.int(3); n > 0; n--) {
    op.push(1 + rand.int(5));
    op.push(rand.int(3) === 0 ? { d: rand.pick(['x', '😀y']) } : rand.int(2) === 0 ? rand.pick(INSERTS) : { d: 1 + rand.int(4) });
  }
  return op;
}

test('one-edit ops transform as ot-text-unicode transforms them', () => {
  const rand = seeded('one-edit transforms');
  for (let i = 0; i < 50000; i++) {
    const op = anyOp(rand);
    const other = anyOp(rand);
    const side = rand.int(2) === 0 ? 'left' : 'right';
    const expected = textType.transform(op, other, side);
    const got = transform(op, other, side);
    assert.deepEqual(got, expected, `transform(${JSON.stringify(op)}, ${JSON.stringify(other)}, ${side})`);
  }
});

test('ops ot-text-unicode refuses are still refused', () => {
  for (const [op, other] of [
    [[0, 'a'], ['b']],
    [['a'], [3]],
    [[''], ['b']],
    [[{ d: 0 }], ['b']],
  ]) {
    assert.throws(() => textType.transform(op, other, 'left'));
    assert.throws(() => transform(op, other, 'left'), undefined, JSON.stringify([op, other]));
  }
});
