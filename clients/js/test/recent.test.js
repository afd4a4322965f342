// The ops a document keeps to place remote selections made at older versions
// (src/recent.js): one edits are kept as numbers, other ops whole. On seeded
// random runs of ops of every shape, far past the ring's capacity and across
// restarts, moving a position from any kept version must give what moving it
// op by op through the plain list gives.

import assert from 'node:assert/strict';
import { oneEdit, transformPosition } from '../src/ot.js';
import { RecentOps } from '../src/recent.js';
import { seeded, test } from './helpers.js';

function randomOp(rand) {
  const at = rand.int(3) === 0 ? 0 : rand.int(40);
  const pre = at > 0 ? [at] : [];
  switch (rand.int(6)) {
    case 0:
      return [...pre, rand.pick(['q', '😀', 'ab', '\r\n'])];
    case 1:
      return [...pre, { d: 1 + rand.int(5) }];
    case 2:
      // A committed delete, carrying the text it removed.
      return [...pre, { d: rand.pick(['x', 'é😀', 'abc']) }];
    case 3:
      // A replacement: not one edit.
      return [...pre, { d: 1 + rand.int(3) }, 'zz'];
    case 4:
      return [...pre, 'a', 3, { d: 2 }];
    default:
      return [...pre, 'k'];
  }
}

test('a position moves through the kept ops as through the ops themselves', () => {
  const rand = seeded('recent ops');
  const recent = new RecentOps();
  let ops = []; // every op since the last restart; ops[i] is version first + i
  let first = 1;
  let version = 0;
  for (let step = 0; step < 6000; step++) {
    if (rand.int(2500) === 0) {
      // A gap (a new text at another version): everything starts afresh.
      version += 1 + rand.int(5);
      ops = [];
      first = version + 1;
    }
    version++;
    const op = randomOp(rand);
    ops.push(op);
    recent.push(version, op);
    assert.equal(recent.last, version);
    const kept = Math.min(ops.length, 2048);
    assert.equal(recent.first, version - kept + 1, `at version ${version}`);
    if (step % 7 !== 0) continue;
    for (let k = 0; k < 4; k++) {
      const from = version - rand.int(kept + 1); // 0 .. kept ops back
      assert.ok(recent.keepsAfter(from));
      const pos = rand.int(60);
      let want = pos;
      for (let v = from + 1; v <= version; v++) want = transformPosition(ops[v - first], want, false);
      assert.equal(recent.moveFrom(from, pos), want, `from version ${from} at ${version}`);
    }
    assert.equal(recent.keepsAfter(version - kept - 1), false, 'an op older than any kept');
  }
  recent.clear();
  assert.equal(recent.keepsAfter(0), false);
});

test('oneEdit reads the place and size of one edit, including a committed delete carrying its text', () => {
  const out = [0, 0];
  assert.ok(oneEdit([5, 'a😀'], out));
  assert.deepEqual(out, [5, 2]);
  assert.ok(oneEdit([{ d: 3 }], out));
  assert.deepEqual(out, [0, -3]);
  assert.ok(oneEdit([2, { d: 'é😀' }], out));
  assert.deepEqual(out, [2, -2]);
  assert.equal(oneEdit([2, { d: 1 }, 'x'], out), false);
  assert.equal(oneEdit([0, 'x'], out), false);
  assert.equal(oneEdit([{ d: '' }], out), false);
  assert.equal(oneEdit([], out), false);
});
