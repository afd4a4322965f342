// The server's limits, from the client's side: a large paste is cut into
// ops that fit and arrives whole; what can never fit is refused here, once;
// an op the server refuses is dropped and the text reloaded, never resent
// in a loop; and a submission the rate limiter dropped is sent again.

import assert from 'node:assert/strict';
import { closeAll, nextEvent, open, roomName, serverDoc, serverForThisFile, sleep, startServer, test, waitFor } from './helpers.js';

const server = serverForThisFile();

/** `bytes` of text mixing ASCII, accents, emoji, quotes and line breaks (JSON escapes and multi-byte UTF-8). */
function paste(bytes) {
  const pieces = ['Lorem ipsum dolor sit amet, ', 'naïve café ', '😀🎉👩‍💻 ', '"quoted" \\ back\\slash ', '\n', 'e\u0301 ', '\t'];
  let s = '';
  for (let i = 0; Buffer.byteLength(s) < bytes; i++) s += pieces[i % pieces.length];
  return s;
}

const submits = (client) => client._ws.sent.filter((m) => m.type === 'submit');

test('a 200 KB paste is sent as ops that fit the limits and arrives whole', async () => {
  const name = roomName('paste');
  const a = await open(server, 'ann');
  const b = await open(server, 'bob');
  const da = await (await a.join(name)).openDoc('d');
  const db = await (await b.join(name)).openDoc('d');
  const { max_op_bytes: maxOp, max_message_bytes: maxFrame } = a.session.limits;
  const text = paste(200 * 1024);
  const socket = a._ws;
  da.insert(0, 'before|after');
  da.insert(7, text);
  assert.equal(da.text, `before|${text}after`);
  await da.synced();
  assert.equal(a._ws, socket, 'the connection was never dropped');
  const doc = await serverDoc(server, name, 'd');
  assert.equal(doc.text, `before|${text}after`, 'the server has the whole paste');
  const sent = submits(a);
  assert.ok(sent.length >= Math.ceil(Buffer.byteLength(text) / maxOp), `${sent.length} submissions`);
  for (const m of sent) {
    assert.ok(Buffer.byteLength(JSON.stringify(m)) <= maxFrame, `a frame of ${Buffer.byteLength(JSON.stringify(m))} bytes`);
    const opBytes = m.op.reduce((n, c) => n + 8 + (typeof c === 'string' ? Buffer.byteLength(c) : 0), 0);
    assert.ok(opBytes <= maxOp, `an op of ${opBytes} bytes`);
  }
  assert.deepEqual(sent.map((m) => m.seq), sent.map((_, i) => i + 1), 'one submission per piece, none resent');
  await waitFor(() => db.text === doc.text, 5000, 'bob to get the paste');
  closeAll();
});

test('an edit past the document limit is refused here, once, and nothing is sent', async () => {
  const srv = await startServer({ args: ['--max-document-bytes', '50000'] });
  try {
    const a = await open(srv, 'ann');
    const doc = await (await a.join(roomName('full'))).openDoc('d');
    doc.insert(0, 'kept');
    await doc.synced();
    const errors = [];
    doc.on('error', (e) => errors.push(e.code));
    const changes = [];
    doc.on('change', (c) => changes.push(c));
    const before = submits(a).length;
    assert.throws(() => doc.insert(4, paste(60000)), { code: 'document_too_large' });
    assert.equal(doc.text, 'kept', 'nothing was applied');
    assert.equal(doc.pending, 0);
    await sleep(100);
    assert.deepEqual(errors, ['document_too_large'], 'one error event');
    assert.equal(changes.length, 0, 'no change event');
    assert.equal(submits(a).length, before, 'nothing was sent');
    // What fits still goes through.
    doc.insert(4, paste(40000));
    await doc.synced();
    assert.equal((await serverDoc(srv, doc.room.name, 'd')).text, doc.text);
  } finally {
    closeAll();
    await srv.stop();
  }
});

test('an op refused as op_too_large is dropped and the text reloaded, not resent', async () => {
  const name = roomName('refused');
  const a = await open(server, 'ann');
  const doc = await (await a.join(name)).openDoc('d');
  doc.insert(0, 'safe');
  await doc.synced();
  // Pretend the server allows large ops: the next edit goes out whole and
  // the server refuses it.
  a.session.limits = { ...a.session.limits, max_op_bytes: 10 ** 9 };
  const errors = [];
  doc.on('error', (e) => errors.push(e.code));
  const reset = nextEvent(doc, 'reset');
  const before = submits(a).length;
  doc.insert(4, 'x'.repeat(40000));
  const { reason, lostEdits } = await reset;
  assert.equal(reason, 'resync');
  assert.equal(lostEdits, 1);
  assert.equal(doc.text, 'safe', 'the refused edit is gone from the local text');
  assert.equal(doc.pending, 0);
  await doc.synced();
  await sleep(300);
  assert.deepEqual(errors, ['op_too_large'], 'told once');
  assert.equal(submits(a).length - before, 1, 'sent once, never again');
  assert.equal((await serverDoc(server, name, 'd')).text, 'safe');
  // The document carries on.
  doc.insert(4, '!');
  await doc.synced();
  assert.equal((await serverDoc(server, name, 'd')).text, 'safe!');
  closeAll();
});

test('a frame the server closes the connection for is not resent after reconnecting', async () => {
  const name = roomName('too-big');
  const a = await open(server, 'ann');
  const doc = await (await a.join(name)).openDoc('d');
  doc.insert(0, 'safe');
  await doc.synced();
  // Pretend the server allows huge frames and ops: the frame is over the
  // real message limit, so the server closes with 1009.
  a.session.limits = { ...a.session.limits, max_op_bytes: 10 ** 9, max_message_bytes: 10 ** 9 };
  const sockets = new Set([a._ws]);
  a.on('state', () => a._ws && sockets.add(a._ws));
  const reset = nextEvent(doc, 'reset', () => true, 10000);
  doc.insert(4, 'y'.repeat(70 * 1024));
  const { lostEdits } = await reset;
  assert.equal(lostEdits, 1);
  assert.equal(doc.text, 'safe');
  await sleep(500);
  const total = [...sockets].reduce((n, s) => n + s.sent.filter((m) => m.type === 'submit' && m.seq === 2).length, 0);
  assert.equal(total, 1, 'the oversized op went out once');
  assert.equal(a.state, 'open');
  assert.equal(sockets.size, 2, 'one reconnect, no loop');
  closeAll();
});

test('submissions the rate limiter dropped are sent again, so an op-by-op replay finishes', async () => {
  // 20 messages per second, bursts of 40: 90 ops one by one run into it.
  const srv = await startServer({ args: ['--messages-per-second', '20'] });
  try {
    const a = await open(srv, 'ann');
    const doc = await (await a.join(roomName('rate'))).openDoc('d');
    const limited = [];
    a.on('error', (e) => e.code === 'rate_limited' && limited.push(e));
    let expected = '';
    for (let i = 0; i < 90; i++) {
      const piece = String.fromCharCode(97 + (i % 26));
      doc.insert(doc.text.length, piece);
      expected += piece;
      // Each op waits for its ack, as a replay of a trace op by op does.
      await doc.synced();
    }
    assert.ok(limited.length > 0, 'the rate limiter dropped some of them');
    assert.equal((await serverDoc(srv, doc.room.name, 'd')).text, expected);
  } finally {
    closeAll();
    await srv.stop();
  }
});
