import assert from 'node:assert/strict';
import { mirror, nextEvent, open, roomName, seeded, serverDoc, serverForThisFile, sleep, test, waitFor } from './helpers.js';

const server = serverForThisFile();

const PIECES = ['a', 'b', 'c', ' ', '😀', '😭', 'é', 'e\u0301', '🏳️‍🌈', '𝄞', '\n', 'ж'];

/** Moves a UTF-16 offset off the middle of a surrogate pair. */
function boundary(text, i) {
  const hi = text.charCodeAt(i - 1);
  const lo = text.charCodeAt(i);
  return i > 0 && hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff ? i - 1 : i;
}

function randomEdit(rand, doc) {
  const t = doc.text;
  if (t.length === 0 || rand() < 0.6) {
    let s = '';
    for (let n = 1 + rand.int(3); n > 0; n--) s += rand.pick(PIECES);
    doc.insert(boundary(t, rand.int(t.length + 1)), s);
  } else {
    const i = boundary(t, rand.int(t.length));
    let j = boundary(t, Math.min(t.length, i + 1 + rand.int(5)));
    if (j <= i) j = i + (t.codePointAt(i) > 0xffff ? 2 : 1);
    doc.delete(i, j - i);
  }
}

async function setup(prefix, users) {
  const name = roomName(prefix);
  const clients = [];
  const rooms = [];
  for (const u of users) {
    const c = await open(server, u);
    clients.push(c);
    rooms.push(await c.join(name));
  }
  return { name, clients, rooms, close: () => clients.forEach((c) => c.close()) };
}

test('one op in flight; later edits are composed into one submission', async () => {
  const { rooms, close } = await setup('inflight', ['ann']);
  const doc = await rooms[0].openDoc('d');
  const sock = rooms[0].client._ws;
  const submits = () => sock.sent.filter((m) => m.type === 'submit');
  doc.insert(0, 'a');
  doc.insert(1, 'b');
  doc.insert(2, 'c😀');
  assert.equal(doc.pending, 3);
  assert.equal(submits().length, 1);
  await doc.synced();
  assert.equal(doc.pending, 0);
  assert.deepEqual(submits().map((m) => [m.seq, m.base, m.op]), [
    [1, 0, ['a']],
    [2, 1, [1, 'bc😀']],
  ]);
  assert.equal(doc.version, 2);
  close();
});

test('two clients type concurrently (emoji, surrogate pairs) and converge on the server text', async () => {
  const rand = seeded('concurrent typing');
  const { name, rooms, close } = await setup('typing', ['ann', 'bob', 'cat']);
  const docs = await Promise.all(rooms.map((r) => r.openDoc('body')));
  const mirrors = docs.map(mirror);
  // Count remote ops that arrived while local edits were pending: the
  // transform paths the test is about.
  let crossed = 0;
  for (const d of docs.slice(0, 2)) d.on('change', (e) => e.remote && d.pending > 0 && crossed++);
  // `length` is the text's length after every change, local or remote.
  const lengths = [];
  for (const d of docs) d.on('change', () => d.length !== d.text.length && lengths.push([d.length, d.text.length]));
  const rounds = 120;
  await Promise.all(
    docs.slice(0, 2).map(async (doc) => {
      for (let i = 0; i < rounds; i++) {
        for (let n = 1 + rand.int(3); n > 0; n--) randomEdit(rand, doc);
        await sleep(rand.int(4));
      }
    }),
  );
  await Promise.all(docs.map((d) => d.synced()));
  await waitFor(
    () => {
      return docs.every((d) => d.version === docs[0].version && d.pending === 0) && docs.every((d) => d.text === docs[0].text);
    },
    10000,
    'the clients to converge',
  );
  const expected = await serverDoc(server, name, 'body');
  console.log(`# ${expected.version} ops, ${crossed} remote ops crossed pending local edits`);
  assert.ok(crossed > 0, 'the edits were concurrent');
  assert.equal(docs[0].version, expected.version);
  for (const [i, d] of docs.entries()) {
    assert.equal(d.text, expected.text, `client ${i} has the server's text`);
    assert.equal(mirrors[i].text, d.text, `client ${i}'s change events rebuild its text`);
  }
  assert.ok(expected.text.isWellFormed(), 'no surrogate pair was split');
  assert.ok(expected.version > rounds, `version ${expected.version}`);
  assert.deepEqual(lengths, [], 'doc.length is doc.text.length after every change');
  assert.ok(docs[0].length > 0 && docs[0].length === expected.text.length);
  close();
});

test('remote selections follow remote and local edits, in UTF-16 offsets', async () => {
  const { rooms, close } = await setup('selections', ['ann', 'bob']);
  const [ra, rb] = rooms;
  const a = await ra.openDoc('sel');
  a.insert(0, 'hello world');
  await a.synced();
  const b = await rb.openDoc('sel');
  assert.equal(b.text, 'hello world');

  const event = nextEvent(a, 'selections', (s) => s.length === 1);
  b.setSelection(6, 11);
  const [sel] = await event;
  assert.equal(sel.connection, rb.client.connection);
  assert.equal(sel.user.id, 'bob');
  assert.deepEqual([sel.anchor, sel.head], [6, 11]);

  // A local edit not yet acknowledged moves it (two UTF-16 units for 😀).
  a.insert(0, '😀 ');
  assert.equal(a.pending, 1);
  let [s] = a.remoteSelections();
  assert.deepEqual([s.anchor, s.head], [9, 14]);
  assert.equal(a.text.slice(s.anchor, s.head), 'world');
  await a.synced();
  [s] = a.remoteSelections();
  assert.deepEqual([s.anchor, s.head], [9, 14]);

  // Bob types before his own selection without sending it again: the
  // selection (tagged with an older version) moves through the ops.
  await waitFor(() => b.text === '😀 hello world', 3000, 'bob to get the emoji');
  b.insert(0, 'XY');
  await b.synced();
  await waitFor(() => a.text === 'XY😀 hello world', 3000, 'ann to get XY');
  [s] = a.remoteSelections();
  assert.equal(a.text.slice(s.anchor, s.head), 'world');

  // A selection over an emoji travels in code points and comes back in UTF-16.
  const sent = rb.client._ws.sent;
  b.setSelection(2, 4);
  await waitFor(() => a.remoteSelections()[0]?.anchor === 2, 3000, 'the new selection');
  [s] = a.remoteSelections();
  assert.equal(a.text.slice(s.anchor, s.head), '😀');
  await waitFor(() => sent.filter((m) => m.type === 'cursor').length > 0, 1000, 'cursor frame');
  const frame = sent.filter((m) => m.type === 'cursor').at(-1);
  assert.deepEqual(frame.cursor, { anchor: 2, head: 3 });
  assert.equal(frame.doc, 'sel');
  assert.equal(frame.version, b.version);

  // A selection set while an edit is pending waits for the ack.
  await sleep(60);
  const before = sent.length;
  b.insert(b.text.length, '!');
  b.setSelection(0, 1);
  assert.equal(sent.slice(before).filter((m) => m.type === 'cursor').length, 0, 'not sent while pending');
  await b.synced();
  await waitFor(() => sent.slice(before).some((m) => m.type === 'cursor'), 1000, 'cursor after ack');
  const late = sent.slice(before).find((m) => m.type === 'cursor');
  assert.equal(late.version, b.version);
  close();
});

test('undo and redo take back only the user\'s own edits', async () => {
  const { name, rooms, close } = await setup('undo', ['ann', 'bob', 'cat']);
  const [a, b, c] = await Promise.all(rooms.map((r) => r.openDoc('u')));
  a.insert(0, 'Hello');
  await a.synced();
  await waitFor(() => b.text === 'Hello', 3000, 'bob to see Hello');
  b.insert(5, ' world');
  await b.synced();
  await waitFor(() => a.text === 'Hello world', 3000, 'ann to see world');

  const changes = [];
  a.on('change', (c) => changes.push(c));
  b.on('change', (c) => changes.push({ ...c, bob: true }));
  assert.equal(await a.undo(), true);
  assert.equal(a.text, ' world', 'the text is updated when undo resolves');
  assert.equal(changes.find((c) => !c.bob).undo, true, "ann's undo is marked on ann's side");
  await waitFor(() => changes.some((c) => c.bob), 3000, 'bob to see it');
  assert.equal(changes.find((c) => c.bob).undo, undefined, 'not on bob\'s');
  await waitFor(() => b.text === ' world', 3000, 'bob to see the undo');
  assert.equal(await a.redo(), true);
  assert.equal(a.text, 'Hello world');
  assert.equal(await b.undo(), true);
  await waitFor(() => a.text === 'Hello' && c.text === 'Hello', 3000, 'bob\'s undo everywhere');
  assert.equal(await c.undo(), false, 'cat has nothing to undo');
  assert.equal(await c.redo(), false);

  // Undo waits for pending edits to be acknowledged, then takes them back.
  // ('>> ' is in flight and 'x' buffered when undo is called.)
  a.insert(0, '>> ');
  a.insert(3, 'x');
  assert.equal(await a.undo(), true);
  assert.equal(a.text, 'Hello');
  await waitFor(() => b.text === 'Hello' && c.text === 'Hello', 3000, 'convergence');
  assert.equal((await serverDoc(server, name, 'u')).text, 'Hello');
  close();
});

test('closing a document stops its updates', async () => {
  const { rooms, close } = await setup('close', ['ann', 'bob']);
  const [a, b] = await Promise.all(rooms.map((r) => r.openDoc('c')));
  await a.close();
  assert.throws(() => a.insert(0, 'x'), { code: 'closed' });
  b.insert(0, 'x');
  await b.synced();
  await sleep(50);
  assert.equal(a.text, '');
  assert.equal(rooms[0].docs.has('c'), false);
  const again = await rooms[0].openDoc('c');
  assert.notEqual(again, a);
  assert.equal(again.text, 'x');
  close();
});
