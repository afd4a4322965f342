// Test support for the browser tests: a real `chorus serve` on a free port,
// a TCP relay that can cut a page off the network, and Debian's Chromium.

import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** Starts `chorus serve --dev` ($CHORUS_BIN, or the debug build) and waits until it is ready. */
export async function startChorus() {
  const bin = process.env.CHORUS_BIN || path.join(repo, 'target/debug/chorus');
  const port = await freePort();
  const child = spawn(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`], {
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
  return { base, port, stop: () => child.kill('SIGKILL') };
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
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
}

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
