import assert from 'node:assert/strict';
import { nextEvent, open, roomName, serverForThisFile, serverValues, test, TestSocket, track, waitFor } from './helpers.js';
import { connect } from '../src/chorus.js';
import { handshake, scriptedServer } from './scripted.js';

const server = serverForThisFile();

test('shared values converge for every kind', async () => {
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const name = roomName('values');
  const ra = await a.join(name);
  const rb = await b.join(name);
  const seen = [];
  rb.on('value', (v) => seen.push(v));

  // Concurrent increments all count.
  await Promise.all([
    ...Array.from({ length: 10 }, () => ra.updateValue('views', 'g_counter', { op: 'increment', by: 1 })),
    ...Array.from({ length: 10 }, () => rb.updateValue('views', 'g_counter', { op: 'increment', by: 2 })),
    ra.updateValue('score', 'pn_counter', { op: 'increment', by: -5 }),
    rb.updateValue('score', 'pn_counter', { op: 'increment', by: 3 }),
  ]);
  const version = await ra.updateValue('title', 'register', { op: 'set', value: { text: 'Q3 plan 😀' } });
  assert.equal(version, 1);
  await ra.updateValue('tags', 'or_set', { op: 'add', element: 'design' });
  await rb.updateValue('tags', 'or_set', { op: 'add', element: 'urgent' });
  await ra.updateValue('tags', 'or_set', { op: 'remove', element: 'design' });
  await rb.updateValue('settings', 'lww_map', { op: 'map_set', key: 'theme', value: 'dark' });
  await ra.updateValue('settings', 'lww_map', { op: 'map_set', key: 'font', value: 12 });
  await rb.updateValue('settings', 'lww_map', { op: 'map_delete', key: 'theme' });

  const expected = {
    views: { kind: 'g_counter', version: 20, value: 30 },
    score: { kind: 'pn_counter', version: 2, value: -2 },
    title: { kind: 'register', version: 1, value: { text: 'Q3 plan 😀' } },
    tags: { kind: 'or_set', version: 3, value: ['urgent'] },
    settings: { kind: 'lww_map', version: 3, value: { font: 12 } },
  };
  const snapshot = (room) => Object.fromEntries([...room.values].sort(([x], [y]) => (x < y ? -1 : 1)));
  await waitFor(() => JSON.stringify(snapshot(rb)) === JSON.stringify(snapshot(ra)) && ra.values.size === 5, 3000, 'values');
  for (const room of [ra, rb]) {
    for (const [k, v] of Object.entries(expected)) assert.deepEqual(room.values.get(k), v, `${k} at ${room.client.user.id}`);
  }
  const http = await serverValues(server, name);
  for (const v of http.values) assert.deepEqual(ra.values.get(v.name), { kind: v.kind, version: v.version, value: v.value });
  assert.equal(seen.filter((v) => v.name === 'views').at(-1).value, 30);

  // A joiner gets them all at once.
  const c = await open(server, 'cat');
  const rc = await c.join(name);
  assert.deepEqual(snapshot(rc), snapshot(ra));

  // Changes from the HTTP API arrive like any other.
  const event = nextEvent(rc, 'value', (v) => v.name === 'views');
  const res = await fetch(`${server.http}/v1/rooms/${encodeURIComponent(name)}/values/views`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'g_counter', change: { op: 'increment', by: 5 } }),
  });
  assert.equal(res.status, 200);
  assert.equal((await event).value, 35);
  for (const x of [a, b, c]) x.close();
});

test('value changes wait for the room to be joined and fail fast when not sendable', async () => {
  const a = await open(server, 'ann');
  const name = roomName('queued');
  const joining = a.join(name);
  const room = a.room(name);
  const pending = room.updateValue('n', 'pn_counter', { op: 'increment', by: 1 }); // before joined
  await joining;
  assert.equal(await pending, 1);
  await assert.rejects(room.updateValue('n', 'nonsense', { op: 'x' }), TypeError);
  await room.leave();
  await assert.rejects(room.updateValue('n', 'pn_counter', { op: 'increment', by: 1 }), { code: 'not_joined' });
  a.close();
});

// A node that finds the store holding another state of a value at a version
// its clients have seen (a store that went back and was written again) sends
// the room an unsolicited `joined` with it (docs/protocol.md, "Repairs"):
// clients accept a `value` only with a newer version. The app must hear of
// the change, not only find it in `room.values`.
test('a value corrected at the same version by a joined is announced', async () => {
  const title = (value) => ({ name: 'title', kind: 'register', version: 2, value });
  let sendCorrection;
  const server = await scriptedServer(async (peer) => {
    await handshake(peer, { values: [title('two')] });
    sendCorrection = () => peer.send({ type: 'joined', room: 'r', connection: `c${peer.number}`, members: [], count: 0, cursors: [], values: [title('three')] });
  });
  try {
    const client = track(connect(server.url, { WebSocket: TestSocket }));
    const room = await client.join('r');
    assert.deepEqual(room.values.get('title'), { kind: 'register', version: 2, value: 'two' });
    const seen = nextEvent(room, 'value');
    sendCorrection();
    const v = await seen;
    assert.deepEqual(v, { name: 'title', kind: 'register', version: 2, value: 'three' });
    assert.equal(room.values.get('title').value, 'three');
    client.close();
  } finally {
    server.close();
  }
});
