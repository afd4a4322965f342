#!/usr/bin/env node
// Differential test cases for Chorus's text OT type.
//
// Generates random documents and operations, runs them through the reference
// implementation (the npm package `ot-text-unicode`, pinned to 4.0.0 in
// package.json) and prints one JSON object per line on stdout. The Rust test
// suite replays each line against Chorus's own implementation and compares.
//
//   node cases.mjs --seed S --count N
//
// N cases of each kind (apply, transform, compose, transformPosition, invert)
// plus ceil(N/10) applyError cases. Output is a pure function of (S, N), and the
// output for a count N is a prefix of the output for any larger count with the
// same seed (cases are emitted round by round from one PRNG stream).
//
// All positions and lengths are in Unicode code points, never UTF-16 units.

import pkg from 'ot-text-unicode';

const { type } = pkg;

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) process.stderr.write(`cases.mjs: ${msg}\n`);
  process.stderr.write('usage: node cases.mjs --seed S --count N\n');
  process.exit(2);
}

function parseArgs(argv) {
  const out = { seed: null, count: 100 };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const value = () => {
      if (v !== undefined) return v;
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--seed': out.seed = value(); break;
      case '--count': out.count = value(); break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (out.seed === null) {
    // No seed given: pick one (printed below, so any run can be reproduced).
    out.seed = String(Date.now() % 4294967296);
  }
  if (!/^\d+$/.test(out.seed)) usage('--seed must be a non-negative integer');
  if (!/^\d+$/.test(String(out.count))) usage('--count must be a non-negative integer');
  out.count = Number(out.count);
  return out;
}

const args = parseArgs(process.argv.slice(2));
process.stderr.write(`ot-reference cases: seed=${args.seed} count=${args.count}\n`);

// ---------------------------------------------------------------- PRNG

// Fold an arbitrary-size decimal seed into 32 bits, then run mulberry32.
function seedState(seedStr) {
  let s = BigInt(seedStr);
  let h = 0x811c9dc5;
  do {
    const word = Number(s & 0xffffffffn);
    h = Math.imul(h ^ word, 0x01000193) >>> 0;
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d) >>> 0;
    s >>= 32n;
  } while (s > 0n);
  return h >>> 0;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const next32 = mulberry32(seedState(args.seed));
const rnd = {
  float: () => next32() / 4294967296,
  // Integer in [lo, hi], both inclusive.
  int: (lo, hi) => lo + Math.floor((next32() / 4294967296) * (hi - lo + 1)),
  chance: (p) => next32() / 4294967296 < p,
  pick: (arr) => arr[Math.floor((next32() / 4294967296) * arr.length)],
};

// ---------------------------------------------------------------- text

// Every string is built from these "atoms". An atom is one or more whole code
// points, so no generated string ever contains a lone surrogate. Weights bias
// towards plain ASCII while keeping the awkward cases frequent.
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const ATOMS = [
  [40, () => rnd.pick(LETTERS)],
  [8, () => ' '],
  [3, () => '\r\n'],
  [3, () => '\n'],
  [3, () => '\u{1F62D}'], // 😭 (astral)
  [2, () => '\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}'], // 🏳️‍🌈 whole ZWJ sequence
  [1, () => '\u{1F3F3}'], // ...and its code points one at a time
  [1, () => '\u{FE0F}'],
  [1, () => '\u{200D}'],
  [1, () => '\u{1F308}'],
  [2, () => 'e\u0301'], // e + combining acute
  [2, () => '\u0308'], // lone combining diaeresis
  [2, () => '\u6F22'], // 漢
  [2, () => '\u{1D4B3}'], // 𝒳 (astral math letter)
];
const ATOM_TOTAL = ATOMS.reduce((s, [w]) => s + w, 0);

function atom() {
  let r = rnd.int(0, ATOM_TOTAL - 1);
  for (const [w, f] of ATOMS) {
    if (r < w) return f();
    r -= w;
  }
  throw Error('unreachable');
}

/** Random string of exactly n code points, returned as an array of code points. */
function randomCps(n) {
  const cps = [];
  while (cps.length < n) cps.push(...Array.from(atom()));
  // Truncating may cut a multi-code-point atom (a half flag sequence, a lone
  // "\r"); that is intended, every code point is still whole.
  cps.length = n;
  return cps;
}

/** Document of 0..40 code points, as an array of code points. */
function randomDocCps() {
  const r = rnd.float();
  const n = r < 0.08 ? 0 : r < 0.2 ? rnd.int(1, 3) : rnd.int(0, 40);
  return randomCps(n);
}

/** Non-empty text to insert: usually short, sometimes longer. */
function randomInsert() {
  const n = rnd.chance(0.85) ? rnd.int(1, 4) : rnd.int(5, 12);
  return randomCps(n).join('');
}

const cpLen = (s) => Array.from(s).length;
const clone = (x) => JSON.parse(JSON.stringify(x));

// ---------------------------------------------------------------- ops

/**
 * Random op valid against a document given as an array of code points.
 *
 * The document is split at a few cut points into segments; each segment is
 * retained or deleted, and at each boundary (including the start and the end)
 * an insert may be placed. An insert at a boundary lands after the segment that
 * ends there and before the one that starts there, so both "delete then insert"
 * and "insert then delete" arise. The raw list goes through type.normalize
 * (which merges neighbours and drops a trailing retain) and type.checkOp.
 *
 * opts.forceInsertAt: boundary position that must carry an insert (ties).
 * opts.textDeletes: every delete carries its text ({d:"..."}), for invert.
 * opts.shape: 'empty' | 'insert' | 'delete' | 'adjacent' | 'random'.
 */
function randomOp(docCps, opts = {}) {
  const L = docCps.length;
  let shape = opts.shape;
  if (!shape) {
    const r = rnd.float();
    shape = r < 0.05 ? 'empty' : r < 0.17 ? 'insert' : r < 0.29 ? 'delete' : r < 0.45 ? 'adjacent' : 'random';
  }
  const forced = opts.forceInsertAt;
  if (shape === 'empty' && forced === undefined) return [];
  if (shape === 'empty') shape = 'insert';
  if ((shape === 'delete' || shape === 'adjacent') && L === 0) shape = 'insert';

  // Boundaries (sorted, unique, always containing 0 and L) and what to do.
  const cuts = new Set([0, L]);
  if (forced !== undefined) cuts.add(forced);
  const segDelete = new Map(); // segment start -> true if deleted
  const insertAt = new Set();

  if (shape === 'insert') {
    const p = forced !== undefined ? forced : rnd.int(0, L);
    cuts.add(p);
    insertAt.add(p);
  } else if (shape === 'delete') {
    let a = rnd.int(0, L - 1);
    let b = rnd.int(a + 1, L);
    if (forced !== undefined && forced > a && forced < b) {
      // Keep the delete, but end it at the forced insert.
      b = forced;
    }
    cuts.add(a); cuts.add(b);
    segDelete.set(a, true);
    if (forced !== undefined) insertAt.add(forced);
  } else if (shape === 'adjacent') {
    // A delete with an insert right before or right after it (or both).
    let a = rnd.int(0, L - 1);
    let b = rnd.int(a + 1, Math.min(L, a + 1 + rnd.int(0, 5)));
    if (forced !== undefined) {
      // Put the insert on the forced position, the delete touching it.
      if (forced < L && (forced === 0 || rnd.chance(0.5))) {
        a = forced; b = rnd.int(a + 1, L);
      } else {
        b = forced; a = rnd.int(0, b - 1);
      }
      insertAt.add(forced);
    } else {
      const where = rnd.int(0, 2);
      if (where !== 1) insertAt.add(a);
      if (where !== 0) insertAt.add(b);
    }
    cuts.add(a); cuts.add(b);
    segDelete.set(a, true);
  } else {
    const nCuts = L === 0 ? 0 : rnd.int(0, rnd.chance(0.8) ? 2 : 3);
    for (let i = 0; i < nCuts; i++) cuts.add(rnd.int(0, L));
    const sorted = [...cuts].sort((x, y) => x - y);
    for (let i = 0; i + 1 < sorted.length; i++) {
      if (rnd.chance(0.4)) segDelete.set(sorted[i], true);
    }
    for (const c of sorted) if (rnd.chance(0.3)) insertAt.add(c);
    if (forced !== undefined) insertAt.add(forced);
  }

  const sorted = [...cuts].sort((x, y) => x - y);
  const raw = [];
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i];
    if (insertAt.has(p)) raw.push(randomInsert());
    if (i + 1 < sorted.length) {
      const q = sorted[i + 1];
      if (q === p) continue;
      if (segDelete.get(p)) {
        const asText = opts.textDeletes || rnd.chance(0.5);
        raw.push({ d: asText ? docCps.slice(p, q).join('') : q - p });
      } else {
        raw.push(q - p);
      }
    }
  }

  const op = type.normalize(clone(raw));
  checkValid(op, L);
  return op;
}

/** Throws unless op passes the reference's checkOp and fits a doc of L code points. */
function checkValid(op, L) {
  type.checkOp(op);
  let consumed = 0;
  for (const c of op) {
    if (typeof c === 'number') consumed += c;
    else if (typeof c === 'object') consumed += typeof c.d === 'number' ? c.d : cpLen(c.d);
  }
  if (consumed > L) throw Error(`generator bug: op ${JSON.stringify(op)} overruns a doc of ${L}`);
}

/** Positions in the original document where op does something (for cursors). */
function opBoundaries(op) {
  const out = [0];
  let pos = 0;
  for (const c of op) {
    if (typeof c === 'number') pos += c;
    else if (typeof c === 'object') pos += typeof c.d === 'number' ? c.d : cpLen(c.d);
    out.push(pos);
  }
  return out;
}

// ---------------------------------------------------------------- reference calls
// Always hand the reference a private copy: its normalize/invert can mutate
// delete components of their input in place.

const ref = {
  apply: (doc, op) => type.apply(doc, clone(op)),
  transform: (op, other, side) => type.transform(clone(op), clone(other), side),
  compose: (a, b) => type.compose(clone(a), clone(b)),
  transformPosition: (pos, op) => type.transformPosition(pos, clone(op)),
  invert: (op) => type.invert(clone(op)),
};

function assertEq(what, a, b, ctx) {
  if (a !== b) {
    throw Error(`${what} failed: ${JSON.stringify(a)} !== ${JSON.stringify(b)}\n  ${JSON.stringify(ctx)}`);
  }
}

// ---------------------------------------------------------------- case kinds

function caseApply() {
  const docCps = randomDocCps();
  const doc = docCps.join('');
  const op = randomOp(docCps);
  return { kind: 'apply', doc, op, result: ref.apply(doc, op) };
}

function caseTransform(side) {
  const docCps = randomDocCps();
  const doc = docCps.join('');
  const L = docCps.length;
  let op, other;
  if (rnd.chance(0.5)) {
    // Tie: both ops insert at the same position.
    const t = rnd.chance(0.2) ? rnd.pick([0, L]) : rnd.int(0, L);
    op = randomOp(docCps, { forceInsertAt: t });
    other = randomOp(docCps, { forceInsertAt: t });
  } else {
    op = randomOp(docCps);
    other = randomOp(docCps);
  }
  const result = ref.transform(op, other, side);
  checkValid(result, cpLen(ref.apply(doc, other)));

  // TP1: both orders converge.
  const otherSide = side === 'left' ? 'right' : 'left';
  const otherPrime = ref.transform(other, op, otherSide);
  const viaOp = ref.apply(ref.apply(doc, op), otherPrime);
  const viaOther = ref.apply(ref.apply(doc, other), result);
  assertEq('TP1', viaOp, viaOther, { doc, op, other, side, result, otherPrime });

  return { kind: 'transform', doc, op, other, side, result };
}

function caseCompose() {
  const docCps = randomDocCps();
  const doc = docCps.join('');
  const op1 = randomOp(docCps);
  const mid = ref.apply(doc, op1);
  const op2 = randomOp(Array.from(mid));
  const result = ref.compose(op1, op2);
  checkValid(result, docCps.length);
  assertEq('compose', ref.apply(doc, result), ref.apply(mid, op2), { doc, op1, op2, result });
  return { kind: 'compose', doc, op1, op2, result };
}

function caseTransformPosition() {
  const docCps = randomDocCps();
  const doc = docCps.join('');
  const op = randomOp(docCps);
  let pos;
  if (rnd.chance(0.5)) {
    // Cursor on a boundary of the op: where the interesting cases are.
    const b = opBoundaries(op);
    pos = rnd.pick(b);
    if (rnd.chance(0.3)) pos += rnd.pick([-1, 1]);
    pos = Math.max(0, Math.min(docCps.length, pos));
  } else {
    pos = rnd.int(0, docCps.length);
  }
  const result = ref.transformPosition(pos, op);
  const newLen = cpLen(ref.apply(doc, op));
  if (!(Number.isInteger(result) && result >= 0 && result <= newLen)) {
    throw Error(`transformPosition out of range: ${result} (len ${newLen}) ${JSON.stringify({ doc, pos, op })}`);
  }
  return { kind: 'transformPosition', doc, pos, op, result };
}

function caseInvert() {
  const docCps = randomDocCps();
  const doc = docCps.join('');
  const op = randomOp(docCps, { textDeletes: true });
  for (const c of op) {
    if (typeof c === 'object' && typeof c.d !== 'string') throw Error('generator bug: numeric delete in invert case');
  }
  const result = ref.invert(op);
  assertEq('invert', ref.apply(ref.apply(doc, op), result), doc, { doc, op, result });
  return { kind: 'invert', doc, op, result };
}

/** An op that passes checkOp but whose retains run past the end of the doc. */
function caseApplyError() {
  for (let attempt = 0; attempt < 100; attempt++) {
    const docCps = randomDocCps();
    const doc = docCps.join('');
    const L = docCps.length;
    const over = rnd.int(1, 3);
    const tail = () => (rnd.chance(0.7) ? randomInsert() : { d: rnd.int(1, 3) });
    let op;
    switch (rnd.int(0, 3)) {
      case 0: // A single retain past the end, then an insert or delete.
        op = [L + over, tail()];
        break;
      case 1: { // A valid op, then a retain that crosses the end.
        const base = randomOp(docCps, { shape: 'random' });
        const used = opBoundaries(base).pop();
        op = type.normalize([...clone(base), L - used + over, tail()]);
        break;
      }
      case 2: { // A delete, then a retain that together overrun.
        if (L === 0) continue;
        const d = rnd.int(1, L);
        op = [{ d: rnd.chance(0.5) ? docCps.slice(0, d).join('') : d }, L - d + over, tail()];
        break;
      }
      default: { // Insert, retain to the very end, then one more.
        op = [randomInsert(), L + over, tail()];
        break;
      }
    }
    type.checkOp(op);
    let threw = false;
    try { ref.apply(doc, op); } catch { threw = true; }
    if (threw) return { kind: 'applyError', doc, op };
  }
  throw Error('could not make an applyError case');
}

// ---------------------------------------------------------------- main

let buf = [];
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0); // e.g. piped into `head`
  throw e;
});
function emit(obj) {
  buf.push(JSON.stringify(obj));
  if (buf.length >= 512) flush();
}
function flush() {
  if (buf.length) process.stdout.write(buf.join('\n') + '\n');
  buf = [];
}

for (let i = 0; i < args.count; i++) {
  emit(caseApply());
  emit(caseTransform(i % 2 === 0 ? 'left' : 'right'));
  emit(caseCompose());
  emit(caseTransformPosition());
  emit(caseInvert());
  if (i % 10 === 0) emit(caseApplyError());
}
flush();
