// What the SDK itself spends on a document, on an empty text and on a 1 MB
// one: applying a remote op, making a local edit (acknowledged at once, so
// nothing piles up), placing the local selection and reading the remote
// ones. A TextDoc is driven directly, without a server or a socket, with a
// stand-in for its room and client that drops what it would send: the
// figures are the SDK's own work, nothing else's. For comparison, the same
// op and positions on a plain string with the string functions (what the
// SDK did before it held its text as a Rope).
//
//   node bench/textdoc.js [--size BYTES] [--rounds N]
//
// Prints, for every measure, the median over the rounds of the mean time per
// operation, and the ratio of the large text to the empty one.

import { TextDoc } from '../src/textdoc.js';
import { applyOp } from '../src/ot.js';
import { codePointLength, toCodePoints, toUtf16 } from '../src/units.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SIZE = option('--size', 1 << 20);
const ROUNDS = option('--rounds', 15);
const BATCH = 2000;

/** A deterministic PRNG (mulberry32), so both sizes see the same positions. */
function prng(seed) {
  let state = seed >>> 0;
  return (n) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** About `units` UTF-16 units of prose: "\r\n" lines, accents, now and then an emoji. */
function prose(units) {
  const words = ['chorus', 'édition', 'text', 'naïve', 'op', '😀', 'cursor', 'Ωmega', '𝄞', 'room'];
  const rand = prng(7);
  const parts = [];
  let n = 0;
  while (n < units) {
    const w = rand(12) === 0 ? '\r\n' : words[rand(words.length)] + ' ';
    parts.push(w);
    n += w.length;
  }
  return parts.join('');
}

/** A TextDoc opened on `text`, with a stand-in room and client that send nothing. */
function openDoc(text) {
  const client = {
    session: { limits: { max_document_bytes: 64 << 20, max_op_bytes: 1 << 20, max_message_bytes: 2 << 20 } },
    user: { id: 'me' },
    state: 'open',
    _takeId: () => 1,
    _register() {},
    _send() {},
    _pendingChanged() {},
  };
  const room = { name: 'bench', client, cursors: new Map(), _live: true, setCursor() {}, _forgetDoc() {}, _rejoin() {} };
  const doc = new TextDoc(room, 'doc');
  doc._onOpened({ type: 'opened', text, version: 0, epoch: 'bench', client: 'u2:me:x' });
  for (let i = 0; i < 4; i++) {
    room.cursors.set(`c${i}`, { connection: `c${i}`, user: { id: `u${i}` }, doc: 'doc', version: 0, cursor: { anchor: 0, head: 0 } });
  }
  return { doc, room };
}

/**
 * The mean time (µs) of `step` over `batch` calls, continuing its count
 * `from`, with the delivery of the events they queued (the SDK delivers an
 * event caused by a call once the call returns, in a microtask).
 */
async function round(step, batch, from) {
  const start = process.hrtime.bigint();
  for (let i = from; i < from + batch; i++) step(i);
  await null;
  return Number(process.hrtime.bigint() - start) / 1000 / batch;
}

/**
 * Medians over ROUNDS of the mean time of each case's step, on every text;
 * the texts take turns round by round (after a warm-up round each), so a
 * busy moment of the machine falls on all of them alike.
 */
async function medians(perText) {
  const out = perText.map(() => ({}));
  for (const name of Object.keys(perText[0])) {
    const times = perText.map(() => []);
    for (let r = 0; r <= ROUNDS; r++) {
      for (let t = 0; t < perText.length; t++) {
        const { step, batch = BATCH } = perText[t][name];
        const us = await round(step, batch, r * batch);
        if (r > 0) times[t].push(us);
      }
    }
    times.forEach((ts, t) => {
      ts.sort((a, b) => a - b);
      out[t][name] = ts[ts.length >> 1];
    });
  }
  return out;
}

/** The steps measured on `text`, by name. */
function cases(text) {
  const out = {};
  const measure = (step, batch) => ({ step, batch });
  const rand = prng(42);
  // Every edit is a 'q' put in at a place and taken out again by the next,
  // so the text, and the places picked from it beforehand, stay valid.
  const points = codePointLength(text);
  const anywhere = Array.from({ length: 4096 }, () => rand(points + 1));
  // Where people type: runs of edits near each other (a caret moving
  // through a paragraph), rather than anywhere.
  const typing = [];
  for (let caret = 0; typing.length < 4096; ) {
    if (typing.length % 64 === 0) caret = rand(points + 1);
    caret = Math.max(0, Math.min(points, caret + rand(7) - 2));
    typing.push(caret);
  }
  const remote = (places) => {
    const { doc } = openDoc(text);
    let version = 0;
    return measure((i) => {
      const at = places[(i >> 1) & 4095];
      const op = i % 2 === 0 ? (at > 0 ? [at, 'q'] : ['q']) : at > 0 ? [at, { d: 1 }] : [{ d: 1 }];
      version++;
      doc._onOp({ type: 'op', version, client: 'u5:other:y', seq: version, op });
    });
  };
  out['remote op'] = remote(anywhere);
  out['remote op, typing'] = remote(typing);
  {
    // Local edits (UTF-16 offsets, as an editor gives them), each
    // acknowledged before the next.
    const { doc } = openDoc(text);
    const offsets = anywhere.map((cp) => doc._rope.toUtf16(cp));
    out['local edit'] = measure((i) => {
      const at = offsets[(i >> 1) & 4095];
      if (i % 2 === 0) doc.insert(at, 'q');
      else doc.delete(at, 1);
      doc._onAck({ type: 'ack', seq: doc._inflight.seq, version: doc.version + 1 });
    });
  }
  {
    const { doc } = openDoc(text);
    const points = doc._rope.codePoints;
    const offsets = Array.from({ length: 256 }, () => doc._rope.toUtf16(rand(points + 1)));
    out['setSelection'] = measure((i) => doc.setSelection(offsets[i & 255], offsets[(i + 1) & 255]));
  }
  {
    const { doc, room } = openDoc(text);
    const points = doc._rope.codePoints;
    out['remoteSelections (4)'] = measure(() => {
      for (const c of room.cursors.values()) c.cursor = { anchor: rand(points + 1), head: rand(points + 1) };
      return doc.remoteSelections();
    });
  }
  {
    // The same on a plain string, as the SDK did before (fewer calls: they are slow).
    const batch = text.length > 100000 ? 20 : BATCH;
    let s = text;
    let points = codePointLength(s);
    out['string: apply op'] = measure((i) => {
      const at = rand(points + (i % 2 === 0 ? 1 : 0));
      const op = i % 2 === 0 ? (at > 0 ? [at, 'q'] : ['q']) : at > 0 ? [at, { d: 1 }] : [{ d: 1 }];
      s = applyOp(s, op).text;
      points += i % 2 === 0 ? 1 : -1;
    }, batch);
    const offsets = Array.from({ length: 256 }, () => toUtf16(text, rand(points + 1)));
    out['string: positions'] = measure((i) => toCodePoints(text, offsets[i & 255]) + toUtf16(text, rand(points + 1)), batch);
  }
  return out;
}

const large = prose(SIZE);
const labels = ['empty', `${(Buffer.byteLength(large) / 1048576).toFixed(2)} MB`];
const results = (await medians([cases(''), cases(large)])).map((m, i) => [labels[i], m]);

const names = Object.keys(results[0][1]);
const rows = [['median µs/op', ...results.map(([label]) => label), 'ratio']];
for (const name of names) {
  const [a, b] = results.map(([, m]) => m[name]);
  rows.push([name, a.toFixed(2), b.toFixed(2), `${(b / a).toFixed(2)}x`]);
}
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
console.log(`TextDoc costs (median of ${ROUNDS} rounds of ${BATCH} calls, 20 for the string functions on the large text; text of ${large.length} UTF-16 units, ${codePointLength(large)} code points)`);
for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
