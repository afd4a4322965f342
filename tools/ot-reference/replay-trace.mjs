#!/usr/bin/env node
// Benchmark baseline for Chorus's text OT type: replay a sequential editing
// trace through the reference implementation (npm `ot-text-unicode` 4.0.0).
//
//   node replay-trace.mjs PATH_TO_TRACE.json.gz [--runs K]
//
// Trace format (gzipped JSON, positions and lengths in Unicode code points):
//   {"startContent": "", "endContent": "...",
//    "txns": [{"time": "...", "patches": [[pos, delCount, insText], ...]}, ...]}
//
// Every patch is turned into an op before timing starts. Each run replays all
// ops with type.apply from startContent, checks the result against endContent
// (exit 1 on mismatch) and records the wall time of the replay alone. Prints
// one JSON line on stdout:
//   {"trace":"<file name>","ops":N,"runs_ms":[...],"median_ms":M}

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pkg from 'ot-text-unicode';

const { type } = pkg;

function usage(msg) {
  if (msg) process.stderr.write(`replay-trace.mjs: ${msg}\n`);
  process.stderr.write('usage: node replay-trace.mjs PATH_TO_TRACE.json.gz [--runs K]\n');
  process.exit(2);
}

let path = null;
let runs = 1;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--runs' || a.startsWith('--runs=')) {
    const v = a === '--runs' ? argv[++i] : a.slice('--runs='.length);
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) usage('--runs needs a positive integer');
    runs = Number(v);
  } else if (a === '-h' || a === '--help') {
    usage();
  } else if (a.startsWith('--')) {
    usage(`unknown option ${a}`);
  } else if (path === null) {
    path = a;
  } else {
    usage(`unexpected argument ${a}`);
  }
}
if (path === null) usage('no trace file given');

let raw = readFileSync(path);
if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
const trace = JSON.parse(raw.toString('utf8'));

if (!Array.isArray(trace.txns) || typeof trace.endContent !== 'string') {
  usage('not a trace: expected {startContent, endContent, txns: [...]}');
}
if (trace.kind !== undefined && trace.kind !== 'sequential') {
  usage(`only sequential traces can be replayed, this one is "${trace.kind}"`);
}
const startContent = trace.startContent ?? '';

// Convert every patch up front (not timed).
// [pos, delCount, insText] -> normalize([pos, {d: delCount}, insText]); normalize
// drops the zero retain / empty delete / empty insert parts and any trailing retain.
const ops = [];
for (const txn of trace.txns) {
  for (const patch of txn.patches) {
    const [pos, del, ins] = patch;
    const op = type.normalize([pos, { d: del }, ins]);
    type.checkOp(op);
    ops.push(op);
  }
}

process.stderr.write(`ot-reference replay: ${basename(path)}: ${ops.length} ops, ${runs} run(s)\n`);

const runsMs = [];
for (let r = 0; r < runs; r++) {
  let doc = startContent;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops.length; i++) {
    doc = type.apply(doc, ops[i]);
  }
  const t1 = process.hrtime.bigint();
  if (doc !== trace.endContent) {
    process.stderr.write(
      `replay-trace.mjs: run ${r + 1}: final document differs from endContent ` +
      `(got ${doc.length} UTF-16 units, expected ${trace.endContent.length})\n`,
    );
    process.exit(1);
  }
  const ms = Number(t1 - t0) / 1e6;
  runsMs.push(Math.round(ms * 1000) / 1000);
  process.stderr.write(`  run ${r + 1}/${runs}: ${ms.toFixed(1)} ms\n`);
}

const sorted = [...runsMs].sort((a, b) => a - b);
const mid = sorted.length >> 1;
const median = sorted.length % 2 ? sorted[mid] : Math.round(((sorted[mid - 1] + sorted[mid]) / 2) * 1000) / 1000;

process.stdout.write(JSON.stringify({
  trace: basename(path),
  ops: ops.length,
  runs_ms: runsMs,
  median_ms: median,
}) + '\n');
