import assert from 'node:assert/strict';
import { nextEvent, open, roomName, serverForThisFile, sleep, test, waitFor } from './helpers.js';

const server = serverForThisFile();

test('two clients see each other as members; leaving removes one', async () => {
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const name = roomName('members');
  const ra = await a.join(name, { page: 1 });
  assert.deepEqual(ra.members.map((m) => m.user.id), ['ann']);
  const seen = nextEvent(ra, 'members', (ms) => ms.length === 2);
  const rb = await b.join(name);
  await seen;
  assert.deepEqual(rb.members.map((m) => [m.user.id, m.user.name, m.state]), [
    ['ann', 'ANN', { page: 1 }],
    ['bob', 'BOB', null],
  ]);
  assert.equal(rb.members[0].connection, a.connection);
  assert.match(rb.members[0].user.color, /^#/);
  assert.equal(await b.join(name), rb, 'joining again gives the same room');

  const gone = nextEvent(ra, 'members', (ms) => ms.length === 1);
  await rb.leave();
  await gone;
  assert.deepEqual(ra.members.map((m) => m.user.id), ['ann']);
  assert.equal(b.rooms.has(name), false);
  a.close();
  b.close();
});

test('presence updates reach the others', async () => {
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const name = roomName('presence');
  const ra = await a.join(name, { typing: false });
  const rb = await b.join(name);
  const event = nextEvent(rb, 'presence');
  ra.setPresence({ typing: true });
  const p = await event;
  assert.equal(p.connection, a.connection);
  assert.equal(p.user.id, 'ann');
  assert.deepEqual(p.state, { typing: true });
  assert.deepEqual(rb.members.find((m) => m.connection === a.connection).state, { typing: true });
  assert.deepEqual(ra.members.find((m) => m.connection === a.connection).state, { typing: true }, 'own entry updated locally');
  a.close();
  b.close();
});

test('cursors are throttled on the client and the last one arrives', async () => {
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const name = roomName('cursors');
  const ra = await a.join(name);
  const rb = await b.join(name);
  const before = a._ws.sent.length;
  const started = Date.now();
  for (let i = 0; i < 100; i++) {
    ra.setCursor({ x: i, y: i / 100 });
    await sleep(1);
    if (i === 0) assert.equal(a._ws.sent.length, before + 1, 'the first cursor goes at once');
  }
  const elapsed = Date.now() - started;
  await sleep(80); // the waiting cursor goes out
  const frames = a._ws.sent.slice(before).filter((m) => m.type === 'cursor');
  console.log(`# ${frames.length} cursor frames for 100 calls in ${elapsed} ms`);
  assert.ok(elapsed < 400, `the burst took ${elapsed} ms`);
  assert.ok(frames.length <= Math.floor(elapsed / 50) + 2, `${frames.length} frames in ${elapsed} ms`);
  assert.ok(frames.length >= 2);
  assert.deepEqual(frames[0].cursor, { x: 0, y: 0 });
  assert.deepEqual(frames.at(-1).cursor, { x: 99, y: 0.99 }, 'the latest is always sent');
  await waitFor(() => rb.cursors.get(a.connection)?.cursor?.x === 99, 3000, 'the last cursor at bob');
  const c = rb.cursors.get(a.connection);
  assert.equal(c.user.id, 'ann');
  assert.equal(c.user.name, 'ANN');

  await sleep(60);
  const hidden = nextEvent(rb, 'cursor', (s) => s.cursor === null);
  ra.setCursor(null);
  await hidden;
  assert.equal(rb.cursors.has(a.connection), false);
  a.close();
  b.close();
});

test('a member that disconnects is removed with its cursor', async () => {
  const a = await open(server, 'ann', { reconnect: false });
  const b = await open(server, 'bob');
  const name = roomName('gone');
  const ra = await a.join(name);
  const rb = await b.join(name);
  ra.setCursor({ x: 1 });
  await waitFor(() => rb.cursors.has(a.connection), 3000, 'cursor');
  const conn = a.connection;
  a.close();
  await waitFor(() => rb.members.length === 1 && !rb.cursors.has(conn), 3000, 'member_left');
  b.close();
});
