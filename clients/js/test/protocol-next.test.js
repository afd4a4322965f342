// Fields the server is gaining (docs/protocol.md, section 7): `opened.client`
// (the submitter id the server records this connection's ops under),
// `digest` on `opened`, `ack` and `op` (a fingerprint of the history at
// that version, sent back in `since`), `at` on ops, the `diverged` reset, and
// undo ops under the submitter `h<length>:<user id>`. The server in this repository does not send them yet, so a
// scripted server does: a real WebSocket server that answers the SDK with
// exactly the messages of the newer protocol. (Against today's server, the
// other test files show the SDK working without them.)

import assert from 'node:assert/strict';
import { connect } from '../src/chorus.js';
import { nextEvent, test, TestSocket, track, waitFor } from './helpers.js';
import { handshake, scriptedServer } from './scripted.js';

test('the SDK uses opened.client, digests and the diverged reset when the server sends them', async () => {
  const seen = {};
  const submitter = (clientId) => `u1:ann:${clientId}`;
  const server = await scriptedServer(async (peer) => {
    await handshake(peer);
    const open = await peer.next('open_doc');
    const base = { room: open.room, doc: open.doc };
    if (peer.number === 1) {
      seen.firstOpen = open;
      peer.send({ type: 'opened', id: open.id, ...base, epoch: 'e1', version: 3, text: 'abc', client: submitter(open.client), digest: 'd3' });
      // Our first op comes back as an `op` under the server's submitter id
      // (as if seen from another connection): that is its ack.
      const s1 = await peer.next('submit');
      seen.s1 = s1;
      peer.send({ type: 'op', ...base, version: 4, client: submitter(open.client), seq: s1.seq, op: s1.op, digest: 'd4', at: 1764000000000 });
      // Someone else's op.
      peer.send({ type: 'op', ...base, version: 5, client: 'u2:bob:js-77', seq: 9, op: ['Q'], digest: 'd5', at: 1764000000001 });
      const s2 = await peer.next('submit');
      seen.s2 = s2;
      peer.send({ type: 'ack', id: s2.id, ...base, seq: s2.seq, version: 6, digest: 'd6' });
      // An undo: its op comes from the user's history submitter, then the answer.
      const undo = await peer.next('undo');
      peer.send({ type: 'op', ...base, version: 7, client: 'h3:ann', seq: 1, op: [5, { d: 1 }], digest: 'd7', at: 1764000000002 });
      peer.send({ type: 'undo_result', id: undo.id, ...base, action: 'undo', done: true, version: 7 });
    } else if (peer.number === 2) {
      seen.secondOpen = open;
      // The catch-up holds an op under our submitter id with the seq of
      // the edit made offline: as far as the SDK can tell, an earlier
      // connection sent it and it was committed. That is its ack.
      peer.send({
        type: 'opened',
        id: open.id,
        ...base,
        epoch: 'e1',
        version: 8,
        client: submitter(open.client),
        digest: 'd8',
        ops: [{ version: 8, client: submitter(open.client), seq: 3, op: [5, '!'], at: 1764000000003, digest: 'd8' }],
      });
    } else {
      seen.thirdOpen = open;
      peer.send({ type: 'opened', id: open.id, ...base, epoch: 'e1', version: 2, text: 'restored', client: submitter(open.client), digest: 'x2', reset: 'diverged' });
    }
  });
  try {
    const client = track(connect(server.url, { WebSocket: TestSocket, reconnectBaseMs: 20, reconnectMaxMs: 50 }));
    const room = await client.join('r');
    const doc = await room.openDoc('d');
    assert.equal(doc.submitter, submitter(doc.clientId), 'the server names our submitter id');
    assert.equal(doc.digest, 'd3');
    doc.insert(3, 'X');
    await doc.synced();
    await waitFor(() => doc.version === 5, 2000, "bob's op");
    assert.equal(doc.text, 'QabcX', 'our op, seen as an op, counted as its ack (not applied twice)');
    assert.equal(doc.digest, 'd5');
    doc.insert(5, 'Y');
    await doc.synced();
    assert.equal(doc.version, 6);
    assert.equal(doc.digest, 'd6', 'an ack moves the digest');

    // Our undo comes back from the history submitter, marked as ours.
    const changes = [];
    doc.on('change', (c) => changes.push(c));
    assert.equal(await doc.undo(), true);
    assert.equal(doc.text, 'QabcX');
    assert.equal(changes.at(-1).undo, true, "the undo's op is marked");
    assert.equal(doc.digest, 'd7');

    // Offline: an edit is made, the connection is lost.
    const reopened = nextEvent(client, 'state', (s) => s === 'open');
    client._ws.terminate();
    doc.insert(5, '!');
    await reopened;
    await doc.synced();
    assert.deepEqual(seen.secondOpen.since, { epoch: 'e1', version: 7, digest: 'd7' }, 'the reopen carries the digest');
    assert.equal(seen.secondOpen.client, doc.clientId, 'open_doc still names our own id');
    assert.equal(doc.text, 'QabcX!', 'our op in the catch-up counted as its ack');
    assert.equal(doc.version, 8);
    assert.equal(doc.digest, 'd8');

    // The store lost history we had seen: the server says so.
    const reset = nextEvent(doc, 'reset');
    client._ws.terminate();
    const { reason, text } = await reset;
    assert.equal(reason, 'diverged');
    assert.equal(text, 'restored');
    assert.deepEqual(seen.thirdOpen.since, { epoch: 'e1', version: 8, digest: 'd8' });
    assert.equal(doc.text, 'restored');
    assert.equal(doc.digest, 'x2');
    client.close();
  } finally {
    server.close();
  }
});
