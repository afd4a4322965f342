// What the SDK itself spends on a document, on a near-empty text and on a
// 1 MB one: applying a remote op (as the room hands it over, and from the
// socket's JSON frame to the 'change' event a binding listens to), making a
// local edit (acknowledged at once, so nothing piles up), placing the local
// selection (UTF-16 offsets to code points) and reading the remote ones
// (code points to UTF-16 offsets). A TextDoc is driven directly, without a
// server or a socket, with a stand-in for its room and client that drops
// what it would send: the figures are the SDK's own work, nothing else's.
//
//   node bench/textdoc.js [--size UNITS] [--small UNITS] [--rounds N] [--runs N] [--batch N]
//
// Honest on both sides:
// - The near-empty text is not empty: it is a short paragraph (--small,
//   1000 UTF-16 units by default, a few leaves), and every operation works
//   at random places inside it, so it does the same kind of work as on the
//   large text (a lookup, a leaf edit, a conversion) rather than the
//   shortcuts an empty text allows (position 0, no lookup).
// - Edits do not cancel each other: every op puts a 'q' in at one place and
//   takes the one the previous op put in out at another, so the change an
//   edit notes for the sums above its leaf is always paid for by the next
//   lookup elsewhere. The text is always the original with one 'q' in it,
//   so the places picked beforehand stay valid.
// - Both texts live in one process and take turns round by round (small,
//   large, large, small, ...), so a busy moment of the machine falls on
//   both alike and the engine has compiled the code for both, as in an
//   application with documents of several sizes. Each run is a process of
//   its own.
//
// Prints, for every measure, the median over the runs of the median over
// the rounds of the mean time per operation on each text, and the median
// over the runs of the ratio large / small (each run's ratio of its two
// medians).

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from '../src/chorus.js';
import { TextDoc } from '../src/textdoc.js';
import { codePointLength } from '../src/units.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SIZE = option('--size', 1 << 20);
const SMALL = option('--small', 1000);
const ROUNDS = option('--rounds', 21);
const RUNS = option('--runs', 3);
const BATCH = option('--batch', 4000);
const WARM_MS = 300;
const PLACES = 4096;

/** A deterministic PRNG (mulberry32), so both texts see the same kind of positions. */
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
  // The frame handler hands each message of a frame to the client's router.
  client._onMessage = Client.prototype._onMessage;
  const doc = new TextDoc(room, 'doc');
  room.docs.set('doc', doc);
  doc._onOpened({ type: 'opened', text, version: 0, epoch: 'bench', client: 'u2:me:x' });
  for (let i = 0; i < 4; i++) {
    room.cursors.set(`c${i}`, { connection: `c${i}`, user: { id: `u${i}` }, doc: 'doc', version: 0, cursor: { anchor: 0, head: 0 } });
  }
  return { doc, room };
}

/**
 * The edits of step pairs over `places` (positions of the original text):
 * step 2i puts a 'q' in at place i, step 2i + 1 takes out the 'q' step
 * 2i - 2 put in (at place i - 1), so the text is the original with one 'q'
 * at the last place after every pair. Returns `at(i)`, the position (in the
 * current text) of step i's edit, for i counted from 0.
 */
function qWalk(places) {
  const n = places.length;
  const place = (j) => places[((j % n) + n) % n];
  return (i) => {
    const j = i >> 1;
    const now = place(j); // the new 'q', in the original's positions
    const old = place(j - 1); // the 'q' in the text before step 2j
    // Before step 2j the text is the original with a 'q' at `old`.
    const insertAt = now + (old < now ? 1 : 0);
    if (i % 2 === 0) return insertAt;
    return old + (insertAt <= old ? 1 : 0);
  };
}


/** The steps measured on `text`, by name. */
function cases(text, seed) {
  const out = {};
  const rand = prng(seed);
  const points = codePointLength(text);
  const anywhere = Array.from({ length: PLACES }, () => rand(points + 1));
  const opAt = (i, at) => {
    const c = i % 2 === 0 ? 'q' : { d: 1 };
    return at > 0 ? [at, c] : [c];
  };
  {
    // A remote op as the room hands it over.
    const { doc } = openDoc(text);
    const at = qWalk(anywhere);
    // The text starts with a 'q' at place -1, as qWalk assumes.
    doc._onOp({ type: 'op', version: 1, client: 'u5:other:y', seq: 1, op: opAt(0, anywhere[PLACES - 1]) });
    out['remote op'] = (i) => {
      const version = i + 2;
      doc._onOp({ type: 'op', version, client: 'u5:other:y', seq: version, op: opAt(i, at(i)) });
    };
  }
  {
    // The same ops as they reach a user: the server's frame (made
    // beforehand, as the socket hands it over) parsed, routed to the
    // document, applied, and the 'change' event delivered to a listener
    // that reads it.
    const { doc, room } = openDoc(text);
    const at = qWalk(anywhere);
    doc._onOp({ type: 'op', version: 1, client: 'u5:other:y', seq: 1, op: opAt(0, anywhere[PLACES - 1]) });
    const onFrame = Client.prototype._onFrame;
    const client = room.client;
    let seen = 0;
    doc.on('change', (e) => {
      seen += e.changes.length;
    });
    let frames = [];
    let first = 0;
    const step = (i) => onFrame.call(client, client._ws, frames[i - first]);
    step.prepare = (from, n) => {
      frames = new Array(n);
      first = from;
      for (let i = from; i < from + n; i++) {
        const version = i + 2;
        frames[i - from] = JSON.stringify({ type: 'op', room: 'bench', doc: 'doc', version, client: 'u5:other:y', seq: version, op: opAt(i, at(i)) });
      }
    };
    out['frame to event'] = step;
  }
  {
    // Local edits (UTF-16 offsets, as an editor gives them), each
    // acknowledged before the next.
    const { doc } = openDoc(text);
    const offsets = anywhere.map((cp) => doc._rope.toUtf16(cp));
    const at = qWalk(offsets);
    doc.insert(offsets[PLACES - 1], 'q');
    doc._onAck({ type: 'ack', seq: doc._inflight.seq, version: doc.version + 1 });
    out['local edit'] = (i) => {
      if (i % 2 === 0) doc.insert(at(i), 'q');
      else doc.delete(at(i), 1);
      doc._onAck({ type: 'ack', seq: doc._inflight.seq, version: doc.version + 1 });
    };
  }
  {
    // The local selection: two UTF-16 offsets to code points.
    const { doc } = openDoc(text);
    const offsets = anywhere.map((cp) => doc._rope.toUtf16(cp));
    out['setSelection'] = (i) => doc.setSelection(offsets[i & (PLACES - 1)], offsets[(i * 7 + 1) & (PLACES - 1)]);
  }
  {
    // Four remote selections: eight code points to UTF-16 offsets.
    const { doc, room } = openDoc(text);
    const cursors = [...room.cursors.values()];
    out['remoteSelections (4)'] = (i) => {
      for (let c = 0; c < 4; c++) {
        const k = (i * 8 + c * 2) & (PLACES - 1);
        cursors[c].cursor = { anchor: anywhere[k], head: anywhere[k + 1] };
      }
      return doc.remoteSelections();
    };
  }
  return out;
}

/** The mean time (µs) of `batch` calls of `step` from count `from`, with the delivery of the events they queued. */
async function round(step, batch, from) {
  if (step.prepare) step.prepare(from, batch);
  const start = process.hrtime.bigint();
  for (let i = from; i < from + batch; i++) step(i);
  await null;
  return Number(process.hrtime.bigint() - start) / 1000 / batch;
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];

/** One run: every measure on both texts, round by round in turns; the medians per text. */
async function child() {
  const texts = [prose(SMALL), prose(SIZE)];
  const byText = texts.map((t, k) => cases(t, 42 + k));
  const names = Object.keys(byText[0]);
  const out = {};
  for (const name of names) {
    const steps = byText.map((c) => c[name]);
    const from = [0, 0];
    for (const start = Date.now(); Date.now() - start < WARM_MS; ) {
      for (let t = 0; t < 2; t++) {
        await round(steps[t], BATCH, from[t]);
        from[t] += BATCH;
      }
    }
    const times = [[], []];
    for (let r = 0; r < ROUNDS; r++) {
      // small, large, large, small, ...: neither always goes first.
      for (const t of r % 2 === 0 ? [0, 1] : [1, 0]) {
        times[t].push(await round(steps[t], BATCH, from[t]));
        from[t] += BATCH;
      }
    }
    out[name] = times.map(median);
  }
  const label = (t) => (t.length >= 100000 ? `${(Buffer.byteLength(t) / 1048576).toFixed(2)} MB` : `${Buffer.byteLength(t)} B`);
  return { labels: texts.map(label), units: texts.map((t) => t.length), out };
}

if (args.includes('--child')) {
  process.stdout.write(JSON.stringify(await child()));
} else {
  const self = fileURLToPath(import.meta.url);
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    const out = execFileSync(process.execPath, [self, '--child', '--size', String(SIZE), '--small', String(SMALL), '--rounds', String(ROUNDS), '--batch', String(BATCH)], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    });
    runs.push(JSON.parse(out));
  }
  const [small, large] = runs[0].labels;
  const rows = [['median µs/op', small, large, `${large}/${small}`, 'per run']];
  for (const name of Object.keys(runs[0].out)) {
    const s = median(runs.map((x) => x.out[name][0]));
    const l = median(runs.map((x) => x.out[name][1]));
    const ratios = runs.map((x) => x.out[name][1] / x.out[name][0]);
    rows.push([name, s.toFixed(3), l.toFixed(3), `${median(ratios).toFixed(2)}x`, ratios.map((q) => q.toFixed(2)).join(' ')]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  console.log(
    `TextDoc costs: median of ${RUNS} runs, each the median of ${ROUNDS} rounds of ${BATCH} calls per text, texts taking turns (after ${WARM_MS} ms of them); ` +
      `texts of ${runs[0].units[0]} and ${runs[0].units[1]} UTF-16 units, edits and positions at random places`,
  );
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 || c === 4 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
}
