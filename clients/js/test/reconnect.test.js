import assert from 'node:assert/strict';
import { closeAll, nextEvent, open, roomName, serverDoc, serverForThisFile, sleep, startServer, test, TestSocket, waitFor } from './helpers.js';

const server = serverForThisFile();

async function pair(prefix) {
  const name = roomName(prefix);
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const ra = await a.join(name, { tab: 1 });
  const rb = await b.join(name);
  const da = await ra.openDoc('d');
  const db = await rb.openDoc('d');
  return { name, a, b, ra, rb, da, db };
}

test('an op committed but whose ack was lost is recognised in the catch-up, not applied twice', async () => {
  const { name, a, b, ra, rb, da, db } = await pair('ack-lost');
  const states = [];
  a.on('state', (s) => states.push(s));
  da.insert(0, 'one');
  await da.synced();
  a._ws.dropIncoming = true; // the server's replies are lost from now on
  da.insert(3, ' two😀');
  const sock = a._ws;
  // Wait until the server has committed it, then cut the connection.
  for (let i = 0; (await serverDoc(server, name, 'd')).text !== 'one two😀'; i++) {
    assert.ok(i < 200, 'the server never committed the op');
    await sleep(5);
  }
  assert.equal(da.pending, 1, 'the ack was lost');
  // Bob edits while ann is away, once he has ann's text: an insert at 0
  // into a text he has not received yet would rightly land after it.
  await waitFor(() => db.text === 'one two😀', 3000, "bob has ann's edits");
  db.insert(0, '> ');
  await db.synced();
  // The reconnect is held off a while (as a server's retry-after hint does),
  // so that ann is seen offline: with full jitter it may come within a few
  // milliseconds, before a busy test looks at the state.
  a._retryAfterMs = 500;
  sock.terminate();
  await waitFor(() => states.includes('reconnecting'), 2000, 'reconnecting');
  assert.equal(a.state, 'reconnecting', 'still offline');
  da.insert(da.text.length, ' three'); // typed while offline
  assert.equal(da.pending, 2);
  await waitFor(() => a.state === 'open', 5000, 'reopen');
  await da.synced();
  await waitFor(() => db.text === da.text && db.version === da.version, 3000, 'convergence');
  const doc = await serverDoc(server, name, 'd');
  assert.equal(doc.text, '> one two😀 three');
  assert.equal(da.text, doc.text);
  assert.deepEqual(states, ['reconnecting', 'open']);
  assert.notEqual(a._ws, sock, 'a new socket');
  // The reopen asked for the ops since where it was.
  const reopen = a._ws.sent.find((m) => m.type === 'open_doc');
  assert.equal(reopen.client, da.clientId);
  assert.ok(reopen.since && reopen.since.version >= 1);
  // The room was joined again with the presence state; bob sees ann's new connection.
  await waitFor(() => rb.members.some((m) => m.connection === a.connection), 3000, 'ann back in the room');
  assert.deepEqual(rb.members.find((m) => m.connection === a.connection).state, { tab: 1 });
  // The old connection's leave and the new one's join may reach bob in
  // either order.
  await waitFor(() => rb.members.length === 2 && ra.members.length === 2, 3000, 'one member each, the old connection gone');
  a.close();
  b.close();
});

test('an op that never reached the server is resubmitted once after reconnecting', async () => {
  const { name, a, b, da, db } = await pair('lost-submit');
  da.insert(0, 'abc');
  await da.synced();
  a._ws.blockOutgoing = true;
  da.insert(3, 'DEF');
  da.delete(0, 1);
  assert.equal(da.pending, 2);
  // Bob inserts at the very spot meanwhile: his op, committed first, stays first.
  await waitFor(() => db.text === 'abc', 3000, 'bob to see abc');
  db.insert(3, 'xyz');
  await db.synced();
  await waitFor(() => da.text === 'bcxyzDEF', 3000, 'ann to get xyz');
  assert.equal((await serverDoc(server, name, 'd')).text, 'abcxyz');
  a._ws.terminate();
  await waitFor(() => a.state === 'open' && da.pending === 0, 5000, 'resubmission');
  await waitFor(() => db.text === 'bcxyzDEF', 3000, 'bob');
  assert.equal((await serverDoc(server, name, 'd')).text, 'bcxyzDEF');
  assert.equal(da.text, 'bcxyzDEF');
  // Sequence numbers only grew; the resubmission repeated seq 2.
  const seqs = a._ws.sent.filter((m) => m.type === 'submit').map((m) => m.seq);
  assert.deepEqual(seqs, [2, 3]);
  a.close();
  b.close();
});

test('a resubmission racing its first submission is acknowledged once', async () => {
  const { name, a, b, da, db } = await pair('race');
  for (let round = 0; round < 5; round++) {
    da.insert(da.text.length, `${round}😀`);
    // Cut right after sending: the first submission may or may not be committed.
    a._ws.terminate();
    await waitFor(() => a.state === 'open', 5000, 'reopen');
    await da.synced();
  }
  await waitFor(() => db.text === da.text, 3000, 'bob');
  assert.equal((await serverDoc(server, name, 'd')).text, '0😀1😀2😀3😀4😀');
  a.close();
  b.close();
});

test('a restarted server (new epoch) resets the document and drops pending edits', async () => {
  let srv = await startServer();
  const port = srv.port;
  try {
    const name = roomName('reset');
    const a = await open(srv, 'ann');
    const down = await open(srv, 'dan', { reconnect: false });
    const ra = await a.join(name);
    await down.join(name);
    const da = await ra.openDoc('d');
    da.insert(0, 'before');
    await da.synced();
    await ra.updateValue('title', 'register', { op: 'set', value: 'x' });
    const downStates = [];
    down.on('state', (s) => downStates.push(s));

    a._ws.blockOutgoing = true;
    da.insert(6, ' lost');
    const resetEvent = nextEvent(da, 'reset');
    const changes = [];
    da.on('change', (c) => changes.push(c));
    await srv.kill();
    srv = await startServer({ port });
    const reset = await resetEvent;
    assert.equal(reset.reason, 'epoch');
    assert.equal(reset.lostEdits, 1);
    assert.equal(da.text, '');
    assert.equal(da.pending, 0);
    assert.equal(da.resets, 1);
    assert.equal(changes.at(-1).reset, true);
    assert.deepEqual(changes.at(-1).ops, [{ type: 'delete', index: 0, length: 'before lost'.length }]);
    assert.equal(ra.values.size, 0, 'the new server has no values');

    // The document works again, under the same client id with growing seqs.
    da.insert(0, 'after');
    await da.synced();
    assert.equal((await serverDoc(srv, name, 'd')).text, 'after');
    assert.deepEqual(downStates, ['closed'], 'without reconnect, a dropped client closes');
    a.close();
  } finally {
    await srv.stop();
  }
});

/** A TestSocket that, while `held`, cannot reach the server (port 1 refuses). */
class HeldSocket extends TestSocket {
  static held = false;
  constructor(url, ...rest) {
    super(HeldSocket.held ? 'ws://127.0.0.1:1/v1/ws' : url, ...rest);
  }
}

test('edits made offline at version 0 carry on when the unedited document is opened again in a new epoch', async () => {
  const name = roomName('v0-epoch');
  const a = await open(server, 'ann', { WebSocket: HeldSocket, reconnectBaseMs: 20, reconnectMaxMs: 100 });
  const da = await (await a.join(name)).openDoc('d');
  const oldEpoch = da.epoch;
  assert.equal(da.version, 0);
  HeldSocket.held = true;
  a._ws.terminate();
  await waitFor(() => a.state === 'reconnecting', 2000, 'reconnecting');
  da.insert(0, 'hé');
  da.insert(2, 'llo 😀');
  assert.equal(da.pending, 2);
  // Nobody reads the unedited document now: it is discarded, and the next
  // reader opens a new incarnation of it (a reader that came too early
  // leaves, and the one after it gets the new one).
  let b;
  let db;
  for (let i = 0; ; i++) {
    assert.ok(i < 100, 'the unedited document was never discarded');
    b = await open(server, 'bob');
    db = await (await b.join(name)).openDoc('d');
    if (db.epoch !== oldEpoch) break;
    b.close();
    await sleep(20);
  }
  db.insert(0, 'bob ');
  await db.synced();
  HeldSocket.held = false;
  await waitFor(() => a.state === 'open', 5000, 'ann back');
  await da.synced();
  await waitFor(() => db.text === da.text, 3000, 'convergence');
  const doc = await serverDoc(server, name, 'd');
  assert.equal(da.text, doc.text);
  assert.ok(doc.text.includes('héllo 😀') && doc.text.includes('bob '), doc.text);
  assert.equal(da.epoch, db.epoch, 'ann took the new epoch');
  assert.deepEqual([da.resets, da.lostEdits], [0, 0], 'no reset, nothing lost');
  const reopen = a._ws.sent.find((m) => m.type === 'open_doc');
  assert.deepEqual([reopen.since.epoch, reopen.since.version], [oldEpoch, 0], 'it came back from version 0 of the old epoch');
  a.close();
  b.close();
});

test('a link that stops answering heartbeats is dropped and replaced', async () => {
  const srv = await startServer({ args: ['--presence-ttl-ms', '600'] }); // heartbeats every 200 ms
  try {
    const a = await open(srv, 'ann');
    assert.equal(a.session.heartbeat_ms, 200);
    const room = await a.join(roomName('dead'), { here: true });
    const doc = await room.openDoc('d');
    const sock = a._ws;
    sock.dropIncoming = true; // the server's frames no longer arrive
    doc.insert(0, 'typed into a dead link');
    await waitFor(() => a._ws && a._ws !== sock && a.state === 'open', 3000, 'a new connection');
    await doc.synced();
    assert.equal((await serverDoc(srv, room.name, 'd')).text, 'typed into a dead link');
    sock.terminate();
  } finally {
    closeAll();
    await srv.stop();
  }
});
