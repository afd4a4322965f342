// The SDK's events as an editor binding relies on them: none fires inside a
// call the application made (an editor that edits from its own update
// handler is never called back mid-update); a change carries replacements
// an editor applies as one transaction; `pending` says when something waits
// for the server ("saving…"); a resync that finds a value gone says so.

import assert from 'node:assert/strict';
import { applyChanges } from '../src/chorus.js';
import { closeAll, open, roomName, seeded, serverDoc, serverForThisFile, sleep, startServer, test, waitFor } from './helpers.js';

const server = serverForThisFile();

test('no event fires inside a call into the SDK; all of them fire right after, in order', async () => {
  const name = roomName('events');
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const ra = await a.join(name);
  const rb = await b.join(name);
  const da = await ra.openDoc('d');
  const db = await rb.openDoc('d');
  db.insert(0, 'hello');
  await db.synced();
  await waitFor(() => da.text === 'hello', 3000, 'ann to get hello');
  db.setSelection(1, 3);
  await waitFor(() => da.remoteSelections().length === 1, 3000, "bob's selection");

  let inside = false;
  const seen = [];
  const record = (what) => () => {
    assert.equal(inside, false, `${what} fired inside the caller's call`);
    seen.push(what);
  };
  da.on('change', record('change'));
  da.on('selections', record('selections'));
  da.on('pending', record('pending'));
  a.on('pending', record('client pending'));
  ra.on('members', record('members'));

  inside = true;
  da.insert(0, '> ');
  da.replace(2, 5, 'HELLO');
  da.setSelection(0, 2);
  ra.setPresence({ typing: true });
  inside = false;
  assert.deepEqual(seen, [], 'nothing during the calls');
  await Promise.resolve();
  assert.deepEqual(seen, ['change', 'pending', 'client pending', 'selections', 'change', 'pending', 'client pending', 'selections', 'members']);
  await da.synced();
  assert.equal((await serverDoc(server, name, 'd')).text, '> HELLO');
  closeAll();
});

test('a remote change applies as one set of replacements of the text before it', async () => {
  const rand = seeded('replacements');
  const name = roomName('changes');
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const da = await (await a.join(name)).openDoc('d');
  const db = await (await b.join(name)).openDoc('d');
  // A copy that only ever applies whole changes, as CodeMirror does (local
  // changes carry them too).
  let editor = da.text;
  let multi = 0;
  da.on('change', (e) => {
    for (let i = 1; i < e.changes.length; i++) assert.ok(e.changes[i].from > e.changes[i - 1].to, 'ascending, not touching');
    if (e.remote && e.changes.length > 1) multi++;
    editor = applyChanges(editor, e.changes);
  });
  const pieces = ['a', 'é', '😀', ' ', '\n', 'x'];
  for (let round = 0; round < 40; round++) {
    // Several replacements in one op: a multi-cursor edit.
    const t = db.text;
    const spots = [...new Set([rand.int(t.length + 1), rand.int(t.length + 1), rand.int(t.length + 1)])].sort((x, y) => x - y);
    const changes = [];
    let last = -1;
    for (const at of spots) {
      let from = at;
      if (from > 0 && t.charCodeAt(from - 1) >= 0xd800 && t.charCodeAt(from - 1) <= 0xdbff) from--;
      if (from <= last) continue;
      let to = Math.min(t.length, from + rand.int(3));
      if (to > from && t.charCodeAt(to - 1) >= 0xd800 && t.charCodeAt(to - 1) <= 0xdbff) to++;
      changes.push({ from, to, insert: rand.pick(pieces) + rand.pick(pieces) });
      last = to;
    }
    db.change(changes);
    if (round % 4 === 0) await db.synced();
    // Ann types too, so the remote ops are transformed past hers.
    if (rand() < 0.5) da.insert(rand() < 0.5 ? 0 : da.text.length, 'A');
    await sleep(rand.int(5));
  }
  await db.synced();
  await da.synced();
  await waitFor(() => da.text === db.text && da.version === db.version, 5000, 'convergence');
  assert.equal(editor, da.text, 'whole changes rebuild the text');
  assert.ok(multi > 0, 'some changes had several replacements');
  closeAll();
});

test('pending says when edits and value changes wait for the server', async () => {
  const name = roomName('pending');
  const a = await open(server, 'ann');
  const room = await a.join(name);
  const doc = await room.openDoc('d');
  const docCounts = [];
  const clientCounts = [];
  doc.on('pending', (n) => docCounts.push(n));
  a.on('pending', (n) => clientCounts.push(n));
  doc.insert(0, 'a');
  doc.insert(1, 'b');
  assert.equal(doc.pending, 2);
  assert.equal(a.pending, 2);
  await doc.synced();
  await sleep(20);
  assert.deepEqual(docCounts, [1, 2, 1, 0], 'one ack at a time');
  const version = room.updateValue('title', 'register', { op: 'set', value: 'x' });
  assert.equal(a.pending, 1, 'a value change waits too');
  await version;
  await sleep(20);
  assert.equal(a.pending, 0);
  assert.deepEqual(clientCounts, [1, 2, 1, 0, 1, 0]);
  closeAll();
});

test('edits stay pending while the server cannot store them', async () => {
  const srv = await startServer();
  try {
    const a = await open(srv, 'ann', { reconnectBaseMs: 50 });
    const doc = await (await a.join(roomName('outage'))).openDoc('d');
    a._ws.blockOutgoing = true; // the server never hears of it
    doc.insert(0, 'typed');
    await sleep(300);
    assert.equal(a.state, 'open', 'the connection looks fine');
    assert.equal(a.pending, 1, 'but the edit is not saved');
    a._ws.terminate();
    await doc.synced();
    assert.equal(a.pending, 0);
  } finally {
    closeAll();
    await srv.stop();
  }
});

test('a resync that finds a value gone reports it removed', async () => {
  let srv = await startServer();
  const port = srv.port;
  try {
    const a = await open(srv, 'ann', { reconnectBaseMs: 50 });
    const room = await a.join(roomName('gone'));
    await room.updateValue('title', 'register', { op: 'set', value: 'Launch plan' });
    const events = [];
    room.on('value', (v) => events.push(v));
    await srv.kill();
    srv = await startServer({ port });
    await waitFor(() => events.length > 0, 10000, 'the value event');
    assert.deepEqual(events, [{ name: 'title', kind: 'register', version: 0, value: undefined, removed: true }]);
    assert.equal(room.values.has('title'), false);
  } finally {
    closeAll();
    await srv.stop();
  }
});
