// What the SDK itself spends on a document, on an empty text, on a short one
// and on a 1 MB one: applying a remote op (as the room hands it over, and
// from the socket's JSON frame to the 'change' event a binding listens to),
// making a local edit (acknowledged at once, so nothing piles up), placing
// the local selection and reading the remote ones. A TextDoc is driven
// directly, without a server or a socket, with a stand-in for its room and
// client that drops what it would send: the figures are the SDK's own work,
// nothing else's. For comparison, the same op and positions on a plain
// string with the string functions (what the SDK did before it held its
// text as a Rope).
//
//   node bench/textdoc.js [--size BYTES] [--small BYTES] [--rounds N] [--runs N]
//
// Every text is measured in a process of its own (the texts take turns, run
// by run, so a busy moment of the machine falls on all of them alike): the
// garbage a large text leaves, and the code the engine compiled for it, do
// not land in the empty text's figures. Prints, for every measure, the
// median over the runs of the median over the rounds of the mean time per
// operation, and the ratio of the large text to the empty one and to the
// short one. On the empty text every position is 0, which the rope answers
// without a lookup; the short text (one leaf) has real positions.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from '../src/chorus.js';
import { TextDoc } from '../src/textdoc.js';
import { applyOp } from '../src/ot.js';
import { codePointLength, toCodePoints, toUtf16 } from '../src/units.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SIZE = option('--size', 1 << 20);
const SMALL = option('--small', 1000);
const ROUNDS = option('--rounds', 15);
const RUNS = option('--runs', 3);
const BATCH = option('--batch', 10000);
const WARM_MS = 300;

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
  const room = { name: 'bench', client, cursors: new Map(), docs: new Map(), _live: true, setCursor() {}, _forgetDoc() {}, _rejoin() {} };
  // What the client's frame handler reads: the socket and the rooms.
  client._ws = {};
  client._rooms = new Map([['bench', room]]);
  const doc = new TextDoc(room, 'doc');
  room.docs.set('doc', doc);
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
async function round(step, batch, from, prepare) {
  if (prepare) prepare(from, batch);
  const start = process.hrtime.bigint();
  for (let i = from; i < from + batch; i++) step(i);
  await null;
  return Number(process.hrtime.bigint() - start) / 1000 / batch;
}

/**
 * The median over ROUNDS of the mean time of each case's step, after
 * calling it for WARM_MS first (so the engine has compiled it with what it
 * learned, as in an application that has been running).
 */
async function medians(byName) {
  const out = {};
  for (const [name, { step, batch = BATCH, prepare }] of Object.entries(byName)) {
    let from = 0;
    for (const start = Date.now(); Date.now() - start < WARM_MS; from += batch) await round(step, batch, from, prepare);
    const times = [];
    for (let r = 0; r < ROUNDS; r++, from += batch) times.push(await round(step, batch, from, prepare));
    times.sort((a, b) => a - b);
    out[name] = times[times.length >> 1];
  }
  return out;
}

/** The steps measured on `text`, by name. */
function cases(text) {
  const out = {};
  const measure = (step, batch, prepare) => ({ step, batch, prepare });
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
  // The same ops as they reach a user: the server's frame (made beforehand,
  // as the socket hands it over) parsed, routed to the document, applied,
  // and the 'change' event delivered to a listener that reads it.
  const frames = (places) => {
    const { doc, room } = openDoc(text);
    const onFrame = Client.prototype._onFrame;
    const client = room.client;
    let seen = 0;
    doc.on('change', (e) => {
      seen += e.changes.length;
    });
    let batch = [];
    let first = 0;
    return measure(
      (i) => onFrame.call(client, client._ws, batch[i - first]),
      BATCH,
      (from, n) => {
        batch = new Array(n);
        first = from;
        for (let i = from; i < from + n; i++) {
          const at = places[(i >> 1) & 4095];
          const op = i % 2 === 0 ? (at > 0 ? [at, 'q'] : ['q']) : at > 0 ? [at, { d: 1 }] : [{ d: 1 }];
          const version = i + 1;
          batch[i - from] = JSON.stringify({ type: 'op', room: 'bench', doc: 'doc', version, client: 'u5:other:y', seq: version, op });
        }
      },
    );
  };
  out['remote frame to event'] = frames(anywhere);
  out['remote frame, typing'] = frames(typing);
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

/** The medians of every case on a text of `units` (a process of its own). */
async function child(units) {
  const text = units === 0 ? '' : prose(units);
  const m = await medians(cases(text));
  return { label: units === 0 ? 'empty' : text.length >= 100000 ? `${(Buffer.byteLength(text) / 1048576).toFixed(2)} MB` : `${Buffer.byteLength(text)} B`, m, units: text.length, points: codePointLength(text) };
}

const at = args.indexOf('--child');
if (at >= 0) {
  process.stdout.write(JSON.stringify(await child(Number(args[at + 1]))));
} else {
  const sizes = [0, SMALL, SIZE];
  const runs = sizes.map(() => []);
  const self = fileURLToPath(import.meta.url);
  for (let r = 0; r < RUNS; r++) {
    sizes.forEach((units, t) => {
      const out = execFileSync(process.execPath, [self, '--child', String(units), '--rounds', String(ROUNDS), '--batch', String(BATCH)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      runs[t].push(JSON.parse(out));
    });
  }
  const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  const names = Object.keys(runs[0][0].m);
  const labels = runs.map((rs) => rs[0].label);
  const rows = [['median µs/op', ...labels, `${labels[2]}/${labels[0]}`, `${labels[2]}/${labels[1]}`]];
  for (const name of names) {
    const [e, sm, l] = runs.map((rs) => median(rs.map((x) => x.m[name])));
    rows.push([name, e.toFixed(2), sm.toFixed(2), l.toFixed(2), `${(l / e).toFixed(2)}x`, `${(l / sm).toFixed(2)}x`]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const big = runs[2][0];
  console.log(`TextDoc costs (median of ${RUNS} runs, each the median of ${ROUNDS} rounds of ${BATCH} calls after ${WARM_MS} ms of them, 20 for the string functions on the large text; large text of ${big.units} UTF-16 units, ${big.points} code points)`);
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
}
