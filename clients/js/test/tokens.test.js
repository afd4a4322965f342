// Tokens expire on open connections: the server closes a connection at its
// token's `exp` unless the client sends `auth` with a fresh one. With a token
// function the SDK asks for a fresh token before each expiry and sends it.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before } from 'node:test';
import { connect } from '../src/chorus.js';
import { closeAll, nextEvent, roomName, sleep, startServer, test, TestSocket, track } from './helpers.js';

const SECRET = 'js-token-secret';
let server;
before(async () => {
  server = await startServer({ args: ['--jwt-secret', SECRET] });
});
after(async () => {
  closeAll();
  await server.stop();
});

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 token for `sub` that expires in `seconds`. */
function sign(sub, seconds) {
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub, exp: Math.floor(Date.now() / 1000) + seconds, rooms: { '*': ['read', 'write', 'presence'] } });
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

test('a token function is asked again before expiry and the connection stays open', async () => {
  let minted = 0;
  const client = track(connect(server.ws, { WebSocket: TestSocket, token: () => (minted++, sign('ann', 3)) }));
  const welcome = await nextEvent(client, 'welcome');
  assert.ok(welcome.token_expires_at > Date.now(), 'welcome tells the expiry');
  const room = await client.join(roomName());
  const connection = client.connection;
  // Two expiries pass.
  await sleep(7000);
  assert.equal(client.state, 'open');
  assert.equal(client.connection, connection, 'the same connection, never closed');
  assert.ok(minted >= 3, `the token function was called again (${minted} times)`);
  const auths = client._ws.sent.filter((m) => m.type === 'auth');
  assert.ok(auths.length >= 2, 'fresh tokens went out as auth');
  await room.updateValue('n', 'g_counter', { op: 'increment', by: 1 });
  client.close();
});

test('a fixed token that expires closes the connection with 4001', async () => {
  const client = track(connect(server.ws, { WebSocket: TestSocket, token: sign('bob', 2) }));
  await nextEvent(client, 'welcome');
  const [state, detail] = await new Promise((resolve) => client.on('state', (s, d) => s === 'closed' && resolve([s, d])));
  assert.equal(state, 'closed');
  assert.equal(detail.code, 4001);
});
