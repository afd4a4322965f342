// The SDK over wss:// against a real `chorus serve --tls-cert --tls-key`,
// with a self-signed certificate made for the test. Node's `ws` is told to
// trust it through its constructor options (a subclass passed as
// options.WebSocket), as an app with a private CA would do.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import WebSocket from 'ws';
import { connect } from '../src/chorus.js';
import { closeAll, nextEvent, roomName, startServer, test, track, waitFor } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'chorus-tls-'));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  '-keyout', key, '-out', cert,
], { stdio: 'ignore' });
const ca = readFileSync(cert);

/** `ws` trusting the test's certificate. */
class TrustingSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { ca });
  }
}

let server;
before(async () => {
  server = await startServer({ args: ['--tls-cert', cert, '--tls-key', key] });
});
after(async () => {
  closeAll();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('two clients edit a document over wss://', async () => {
  assert.match(server.ws, /^wss:\/\//);
  const [a, b] = ['ann', 'bob'].map((user) => track(connect(server.ws, { WebSocket: TrustingSocket, user })));
  await waitFor(() => a.state === 'open' && b.state === 'open', 5000, 'both to connect over TLS');
  const name = roomName('tls');
  const ra = await a.join(name);
  const rb = await b.join(name);
  const da = await ra.openDoc('d');
  const db = await rb.openDoc('d');
  const seen = nextEvent(db, 'change', () => db.text === 'secret');
  da.insert(0, 'secret');
  await seen;
  assert.equal(db.text, 'secret');
});

test('a client that does not trust the certificate does not get in', async () => {
  const errors = [];
  const c = track(connect(server.ws, { WebSocket, user: 'eve', reconnect: false }));
  c.on('error', (e) => errors.push(e));
  await waitFor(() => c.state !== 'connecting', 5000, 'the attempt to end');
  assert.notEqual(c.state, 'open');
  c.close();
});
