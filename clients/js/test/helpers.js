// Test helpers: a real Chorus server per test file, a WebSocket class that
// tests can inspect and interfere with, and small waiting utilities.

import { spawn } from 'node:child_process';
import { after, before, test as nodeTest } from 'node:test';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connect } from '../src/chorus.js';

const here = dirname(fileURLToPath(import.meta.url));
const clients = new Set();
const servers = new Set();

// A failed assertion must not leave a server behind.
process.on('exit', () => {
  for (const child of servers) if (child.exitCode === null) child.kill('SIGKILL');
});

/** node:test's test() with a timeout, so a broken client fails instead of hanging. */
export function test(name, fn) {
  return nodeTest(name, { timeout: 20000 }, fn);
}

/** Connects like the SDK's connect() and remembers the client for closeAll(). */
export function track(client) {
  clients.add(client);
  return client;
}

/** Closes every client the tests made (call in after(): open clients keep Node alive). */
export function closeAll() {
  for (const c of clients) c.close();
  clients.clear();
}
export const CHORUS_BIN = process.env.CHORUS_BIN || resolve(here, '../../../target/debug/chorus');

/**
 * Starts `chorus serve --dev` on 127.0.0.1 (port 0 unless given) and waits
 * for /healthz. The server prints its bound address on stdout.
 */
/**
 * A server for the test file that calls this: started before its tests, and
 * stopped (with every client still open) after them. The object is filled in
 * once the server is up.
 */
export function serverForThisFile() {
  const server = {};
  before(async () => {
    Object.assign(server, await startServer());
  });
  after(async () => {
    closeAll();
    await server.stop?.();
  });
  return server;
}

export async function startServer({ port = 0, args = [] } = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHORUS_')) env[k] = v;
  env.CHORUS_LOG = process.env.CHORUS_TEST_LOG || 'warn';
  // In memory unless the test names a store: no test writes ./chorus-data.
  const store = args.some((a) => a === '--redis' || a === '--data') ? [] : ['--memory'];
  const child = spawn(CHORUS_BIN, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, ...store, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.CHORUS_TEST_LOG) process.stderr.write(d);
  });
  const [scheme, addr] = await new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start within 10 s:\n${stderr}`)), 10000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${CHORUS_BIN}: ${err.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${stderr}`));
    });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (https?):\/\/(\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePromise([m[1], m[2]]);
      }
    });
  });
  child.removeAllListeners('exit');
  const http = `${scheme}://${addr}`;
  // Over TLS the listening line is enough: the socket is bound before it is
  // printed, and fetch() would not trust a test's certificate.
  for (let i = 0; scheme === 'http'; i++) {
    try {
      const res = await fetch(`${http}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (i > 200) throw new Error('/healthz did not answer');
    await sleep(25);
  }
  const exited = new Promise((r) => child.once('exit', r));
  return {
    http,
    ws: `${scheme === 'https' ? 'wss' : 'ws'}://${addr}/v1/ws`,
    port: Number(addr.split(':').pop()),
    /** Stops the server abruptly (like a crash). */
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A `ws` WebSocket that records what it sends and can lose traffic on purpose. */
export class TestSocket extends WebSocket {
  static all = [];
  constructor(...args) {
    super(...args);
    this.sent = [];
    this.dropIncoming = false;
    this.blockOutgoing = false;
    TestSocket.all.push(this);
  }
  send(data, ...rest) {
    this.sent.push(JSON.parse(data));
    if (this.blockOutgoing) return;
    super.send(data, ...rest);
  }
  // Every incoming frame reaches its listeners (`onmessage` or the SDK's
  // 'message' listener alike) through this.
  emit(event, ...args) {
    if (event === 'message' && this.dropIncoming) return false;
    return super.emit(event, ...args);
  }
}

/** Connects a test client (dev mode) and waits for it to be open. */
export async function open(server, user, options = {}) {
  const client = track(connect(server.ws, { WebSocket: TestSocket, user, name: user.toUpperCase(), ...options }));
  await waitFor(() => client.state === 'open', 5000, `${user} to connect`);
  return client;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until it is truthy; fails with `label` after `timeout` ms. */
export async function waitFor(cond, timeout = 5000, label = 'a condition') {
  const until = Date.now() + timeout;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${label}`);
    await sleep(5);
  }
}

/** The next `event` from `emitter` that `pred` accepts. */
export function nextEvent(emitter, event, pred = () => true, timeout = 5000) {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${event}`));
    }, timeout);
    const off = emitter.on(event, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      off();
      resolvePromise(args[0]);
    });
  });
}

/** A document as the server has it (HTTP API, open in dev mode). */
export async function serverDoc(server, room, doc) {
  const res = await fetch(`${server.http}/v1/rooms/${encodeURIComponent(room)}/docs/${encodeURIComponent(doc)}`);
  if (!res.ok) throw new Error(`GET doc: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function serverValues(server, room) {
  const res = await fetch(`${server.http}/v1/rooms/${encodeURIComponent(room)}/values`);
  if (!res.ok) throw new Error(`GET values: ${res.status} ${await res.text()}`);
  return res.json();
}

export { prng, seeded } from './random.js';

/** Mirrors a document through its 'change' events, as an editor would. */
export function mirror(doc) {
  const m = { text: doc.text };
  doc.on('change', ({ ops }) => {
    for (const o of ops) {
      if (o.type === 'insert') m.text = m.text.slice(0, o.index) + o.text + m.text.slice(o.index);
      else m.text = m.text.slice(0, o.index) + m.text.slice(o.index + o.length);
    }
  });
  return m;
}

let counter = 0;
/** A room name unique to this run. */
export const roomName = (prefix) => `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
