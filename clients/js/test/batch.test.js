// Array frames: the SDK asks for them in `hello` and handles each element of
// one exactly as if it had come in its own frame.

import assert from 'node:assert/strict';
import { nextEvent, open, roomName, seeded, serverDoc, serverForThisFile, sleep, test, TestSocket, waitFor } from './helpers.js';

const server = serverForThisFile();

/** A TestSocket that counts the array frames it receives. */
class CountingSocket extends TestSocket {
  static arrays = 0;
  static frames = 0;
  emit(event, ...args) {
    if (event === 'message' && !args[1]) {
      CountingSocket.frames++;
      if (args[0][0] === 0x5b) CountingSocket.arrays++; // '['
    }
    return super.emit(event, ...args);
  }
}

test('the hello asks for array frames', async () => {
  const client = await open(server, 'ann');
  assert.equal(client._ws.sent[0].type, 'hello');
  assert.equal(client._ws.sent[0].batch, true);
  client.close();
});

test('an array frame is dispatched element by element, in order; malformed elements are skipped', async () => {
  const name = roomName('array');
  const client = await open(server, 'ann');
  const room = await client.join(name);
  const seen = [];
  room.on('presence', (p) => seen.push(['presence', p.connection, p.user && p.user.id, p.state]));
  room.on('members', (ms) => seen.push(['members', ms.map((m) => m.connection).sort()]));
  const me = client.connection;
  const zed = { connection: 'zed-1', user: { id: 'zed', color: '#000000' }, state: null, joined_at: 1 };
  const frame = [
    { type: 'member_joined', room: name, member: zed },
    { type: 'presence', room: name, connection: 'zed-1', state: 1 },
    'not a message',
    { no: 'type' },
    null,
    [{ type: 'presence', room: name, connection: 'zed-1', state: 'nested' }],
    { type: 'presence', room: name, connection: 'zed-1', state: 2 },
    { type: 'member_left', room: name, connection: 'zed-1' },
  ];
  client._ws.emit('message', Buffer.from(JSON.stringify(frame)), false);
  assert.deepEqual(seen, [
    ['members', [me, 'zed-1'].sort()],
    ['presence', 'zed-1', 'zed', 1],
    ['members', [me, 'zed-1'].sort()],
    ['presence', 'zed-1', 'zed', 2],
    ['members', [me, 'zed-1'].sort()],
    ['members', [me]],
  ]);
  // The connection carries on: a real reply still arrives.
  const bob = await open(server, 'bob');
  const joined = nextEvent(room, 'members', (ms) => ms.length === 2);
  await bob.join(name);
  await joined;
  client.close();
  bob.close();
});

test('clients that asked for array frames converge under many concurrent ops', async () => {
  const rand = seeded('array frames, concurrent typing');
  const name = roomName('array-typing');
  const clients = [];
  for (const u of ['ann', 'bob', 'cat', 'dan', 'eve', 'fay']) clients.push(await open(server, u, { WebSocket: CountingSocket }));
  const rooms = await Promise.all(clients.map((c) => c.join(name)));
  const docs = await Promise.all(rooms.map((r) => r.openDoc('body')));
  const writers = docs.slice(0, 4);
  await Promise.all(
    writers.map(async (doc) => {
      for (let i = 0; i < 100; i++) {
        for (let n = 1 + rand.int(4); n > 0; n--) {
          const t = doc.text;
          if (t.length === 0 || rand() < 0.7) doc.insert(rand.int(t.length + 1), rand.pick(['a', 'b', 'c', ' ', 'é', 'ж']));
          else doc.delete(rand.int(t.length), 1);
        }
        if (rand() < 0.5) await sleep(rand.int(3));
      }
    }),
  );
  await Promise.all(docs.map((d) => d.synced()));
  await waitFor(
    () => docs.every((d) => d.pending === 0 && d.version === docs[0].version && d.text === docs[0].text),
    10000,
    'the clients to converge',
  );
  const expected = await serverDoc(server, name, 'body');
  console.log(`# ${expected.version} ops; ${CountingSocket.arrays} of ${CountingSocket.frames} frames were arrays`);
  assert.ok(expected.version > 100, `version ${expected.version}`);
  for (const [i, d] of docs.entries()) {
    assert.equal(d.version, expected.version, `client ${i}'s version`);
    assert.equal(d.text, expected.text, `client ${i} has the server's text`);
  }
  for (const c of clients) c.close();
});
