// What the rope tests check a Rope (src/rope.js) with: random texts of
// the pieces that matter (astral-plane characters, "\r\n" pairs), its
// positions against the plain-string functions of units.js, and the shape of
// its tree and storage (through `_inspect`).

import assert from 'node:assert/strict';
import { HEAD_PAIRS } from '../src/rope-store.js';
import { codePointLength, splitsPair, toCodePoints, toUtf16 } from '../src/units.js';

export const PIECES = ['a', 'b', 'é', '€', '😀', '𝄞', '\r\n', '\r', '\n', ' ', 'xyz'];

export function randomText(rand, n) {
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(PIECES[rand.int(PIECES.length)]);
  return parts.join('');
}

export function checkPositions(rand, rope, text, samples) {
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

/**
 * The shape of a rope's tree, checked on the way: every leaf at one depth,
 * within its slot and not empty (but for an empty text), every node's kept
 * counts equal to its children's, no pair cut at a leaf edge, and every
 * slot and node either in the tree once or on its free list once (a slot
 * given back twice, or used by two leaves, would mix their texts).
 */
export function shape(rope) {
  const info = rope._inspect();
  let leaves = 0;
  let largest = 0;
  let smallest = Infinity;
  let widest = 0;
  let leafDepth = -1;
  const slots = new Set();
  const nodes = new Set();
  const walk = (n, depth) => {
    if (n.h === 0) {
      leaves++;
      if (leafDepth < 0) leafDepth = depth;
      assert.equal(depth, leafDepth, 'every leaf at the same depth');
      assert.ok(!slots.has(n.slot), `slot ${n.slot} used twice`);
      slots.add(n.slot);
      const s = n.text;
      assert.equal(n.len, s.length);
      assert.ok(n.len <= info.leafMax, `a leaf of ${n.len} units`);
      assert.ok(n.start + n.len <= info.leafMax, `the text of slot ${n.slot} within its room`);
      assert.equal(n.cps, codePointLength(s));
      assert.ok(!splitsPair(s, s.length) && !(s.length > 0 && /^[\udc00-\udfff]/.test(s)), 'no pair cut at a leaf edge');
      const pairs = [];
      for (let i = 0; i + 1 < s.length; i++) if (/[\ud800-\udbff]/.test(s[i]) && /[\udc00-\udfff]/.test(s[i + 1])) pairs.push(i++);
      assert.deepEqual(n.pairs, pairs, `pair offsets of slot ${n.slot}`);
      assert.equal(n.inHead, pairs.length <= HEAD_PAIRS, `where slot ${n.slot} keeps its pair offsets`);
      largest = Math.max(largest, s.length);
      smallest = Math.min(smallest, s.length);
      return { len: n.len, cps: n.cps };
    }
    assert.ok(!nodes.has(n.node), `node ${n.node} used twice`);
    nodes.add(n.node);
    widest = Math.max(widest, n.kids.length);
    assert.ok(n.kids.length >= 1 && n.kids.length <= info.kidsMax);
    let len = 0;
    let cps = 0;
    n.kids.forEach((k, i) => {
      assert.equal(k.h, n.h - 1, 'a child one level down');
      const m = walk(k, depth + 1);
      assert.equal(n.lens[i], m.len, 'kept length of a child');
      assert.equal(n.cpl[i], m.cps, 'kept code points of a child');
      len += m.len;
      cps += m.cps;
    });
    return { len, cps };
  };
  const total = walk(info.root, 0);
  assert.equal(info.len, total.len, 'length of the text');
  assert.equal(info.cps, total.cps, 'code points of the text');
  const free = new Set(info.freeLeaves);
  assert.equal(free.size, info.freeLeaves.length, 'a slot on the free list twice');
  for (const s of slots) assert.ok(!free.has(s), `slot ${s} in the tree and free`);
  assert.equal(slots.size + free.size, info.leaves, 'every slot in the tree or free');
  const freeNodes = new Set(info.freeNodes);
  assert.equal(freeNodes.size, info.freeNodes.length, 'a node on the free list twice');
  for (const n of nodes) assert.ok(!freeNodes.has(n), `node ${n} in the tree and free`);
  assert.equal(nodes.size + freeNodes.size, info.nodes, 'every node in the tree or free');
  return { leaves, depth: leafDepth, largest, smallest, widest };
}

