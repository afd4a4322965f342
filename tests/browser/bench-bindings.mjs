// What the editor bindings spend per change, in headless Chromium: a
// keystroke in the editor (local) and another's op (remote), in a CodeMirror
// editor and a <textarea>, on an empty text and on a large one (for
// CodeMirror also one with "\r\n" line breaks, which it maps). The bindings
// drive a TextDoc with a stand-in room and client (no server, nothing sent):
// the figures are the binding's work with the editor's and the SDK's, per
// change. See pages/bench-bindings.js.
//
//   node tests/browser/bench-bindings.mjs [--size 1048576] [--rounds 9] [--batch 200] [--editors codemirror,textarea] [--clients DIR]
//
// --clients bundles the packages from another checkout's clients/ folder
// (to compare two versions of the bindings). Not a test: a measurement.

import path from 'node:path';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { eventually, launchChromium, repo, servePages } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: String(1 << 20) },
    rounds: { type: 'string', default: '9' },
    batch: { type: 'string', default: '200' },
    editors: { type: 'string', default: 'codemirror,textarea' },
    clients: { type: 'string', default: path.join(repo, 'clients') },
  },
});
const clients = path.resolve(args.clients);
const nodeModules = path.join(here, 'node_modules');
const out = fs.mkdtempSync(path.join(repo, 'target/bench-bindings-'));
await build({
  entryPoints: [path.join(here, 'pages/bench-bindings.js')],
  outfile: path.join(out, 'bench-bindings.bundle.js'),
  bundle: true,
  format: 'esm',
  target: 'es2022',
  logLevel: 'warning',
  alias: {
    '@chorus/client': path.join(clients, 'js/src/chorus.js'),
    '@chorus/textarea': path.join(clients, 'textarea/src/index.js'),
    '@chorus/codemirror': path.join(clients, 'codemirror/src/index.js'),
    '@codemirror/state': path.join(nodeModules, '@codemirror/state'),
    '@codemirror/view': path.join(nodeModules, '@codemirror/view'),
  },
});
fs.copyFileSync(path.join(here, 'pages/bench-bindings.html'), path.join(out, 'bench-bindings.html'));
const pages = await servePages(out);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${pages.base}/bench-bindings.html`);
  await eventually('the bench page', () => page.evaluate(() => document.documentElement.dataset.ready === 'true'));
  const { size, rows } = await page.evaluate((o) => window.bench(o), { size: Number(args.size), rounds: Number(args.rounds), batch: Number(args.batch), editors: args.editors.split(',') });
  console.log(`binding costs, ${clients} (median of ${args.rounds} rounds of ${args.batch} changes; large text ${size} UTF-16 units)`);
  const columns = ['empty', 'large', 'large, CRLF'];
  console.log(['median µs/change'.padEnd(22), ...columns.map((c) => c.padStart(12))].join(''));
  for (const r of rows) {
    console.log([`${r.kind} ${r.what}`.padEnd(22), ...columns.map((c) => (r.medians[c] === undefined ? '' : r.medians[c].toFixed(1)).padStart(12))].join(''));
  }
} finally {
  await browser.close();
  pages.close();
  fs.rmSync(out, { recursive: true, force: true });
}
