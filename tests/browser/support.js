// Test support for the browser tests: a real `chorus serve` on a free port,
// a TCP relay that can cut a page off the network, Debian's Chromium, and
// the test pages (built with esbuild from their sources and the packages'
// own, served by a small static file server).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts `chorus serve --dev` ($CHORUS_BIN, or the debug build) on `port`
 * (a free one if not given) and waits until it is ready. `pause()` and
 * `resume()` freeze and thaw the process (its sockets stay open, nothing
 * is answered); `stop()` kills it.
 */
export async function startChorus({ port = null } = {}) {
  const bin = process.env.CHORUS_BIN || path.join(repo, 'target/debug/chorus');
  port = port ?? (await freePort());
  const child = spawn(bin, ['serve', '--dev', '--memory', '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, CHORUS_LOG: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${bin} did not become ready on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    base,
    port,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * A TCP relay in front of the server. `offline()` drops every connection
 * through it and refuses new ones until `online()`: to the page behind it,
 * the network is gone, exactly as when a laptop loses its Wi-Fi.
 */
export async function startRelay(targetPort) {
  const sockets = new Set();
  let up = true;
  const server = net.createServer((inbound) => {
    if (!up) {
      inbound.destroy();
      return;
    }
    const outbound = net.connect(targetPort, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${port}`,
    offline() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    online() {
      up = true;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** Debian's Chromium ($CHROMIUM, or /usr/bin/chromium), headless. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

const nodeModules = path.join(here, 'node_modules');
const clients = path.join(repo, 'clients');

/**
 * Bundles a test page's script with esbuild, the way an application would
 * build against the packages: `@chorus/*` from the packages' sources in this
 * repository, everything else (CodeMirror, React) from this folder's
 * node_modules, one copy each. Returns the bundle's path.
 */
export async function bundlePage(entry, outfile) {
  await build({
    entryPoints: [path.join(here, 'pages', entry)],
    outfile,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    logLevel: 'warning',
    alias: {
      '@chorus/client': path.join(clients, 'js/src/chorus.js'),
      '@chorus/textarea': path.join(clients, 'textarea/src/index.js'),
      '@chorus/codemirror': path.join(clients, 'codemirror/src/index.js'),
      '@chorus/react/codemirror': path.join(clients, 'react/src/codemirror.js'),
      '@chorus/react': path.join(clients, 'react/src/index.js'),
      // The packages' own node_modules hold copies for their Node tests: the
      // page must use one CodeMirror and one React.
      '@codemirror/state': path.join(nodeModules, '@codemirror/state'),
      '@codemirror/view': path.join(nodeModules, '@codemirror/view'),
      react: path.join(nodeModules, 'react'),
      'react-dom': path.join(nodeModules, 'react-dom'),
    },
  });
  return outfile;
}

/**
 * Builds test page `name` into target/browser-pages/: `pages/<name>.html`
 * and the bundle of `pages/<entry>` it loads as `<name>.bundle.js`. Returns
 * the folder, for servePages.
 */
export async function buildPage(name, entry) {
  const out = path.join(repo, 'target/browser-pages');
  fs.mkdirSync(out, { recursive: true });
  await bundlePage(entry, path.join(out, `${name}.bundle.js`));
  fs.copyFileSync(path.join(here, 'pages', `${name}.html`), path.join(out, `${name}.html`));
  return out;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };

/**
 * Serves the files of `dir` over HTTP on a free port (the test pages and
 * their bundles). Returns `{base, close}`.
 */
export async function servePages(dir) {
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    const file = path.join(dir, name);
    if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end(`no such file: ${name}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${port}`, close: () => server.close() };
}

// Seeded randomness, shared with the SDK's tests.
export { prng, seeded } from '../../clients/js/test/random.js';

/**
 * Polls `check` until it returns a truthy value, or fails after `ms` with
 * `what` and, if given, what `describe()` says about the state then.
 */
export async function eventually(what, check, ms = 10_000, describe = null) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const state = describe ? `; ${await describe()}` : '';
      throw new Error(`timed out waiting for ${what} (last: ${last})${state}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
