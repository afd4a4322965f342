// Remote cursors as the app sees them: each carries its sender's user as
// the member list has it (name, colour), kept current when the member's
// details change, and the bare user id while the sender is not a member yet.
// A scripted server sends the messages on cue.

import assert from 'node:assert/strict';
import { connect } from '../src/chorus.js';
import { test, TestSocket, track, waitFor } from './helpers.js';
import { handshake, scriptedServer } from './scripted.js';

test("a cursor carries its sender's user as the member list has it, kept current", async () => {
  const bob = { id: 'bob', name: 'Bob', color: '#2d9bd2' };
  const room = 'cursors/users';
  const server = await scriptedServer(async (peer) => {
    await handshake(peer, { members: [{ connection: 'c9', user: bob, state: null, joined_at: 1 }], count: 2 });
    const cursor = (connection, user, x) => peer.send({ type: 'cursor', room, connection, user, cursor: { x } });
    cursor('c9', 'bob', 1);
    cursor('c9', 'bob', 2);
    peer.send({ type: 'member_joined', room, member: { connection: 'c9', user: { ...bob, name: 'Robert' }, state: null, joined_at: 1 }, count: 2 });
    cursor('c9', 'bob', 3);
    // Not a member yet (its member_joined is still on its way).
    cursor('c10', 'carl', 4);
    peer.send({ type: 'member_joined', room, member: { connection: 'c10', user: { id: 'carl', name: 'Carl' }, state: null, joined_at: 2 }, count: 3 });
    cursor('c10', 'carl', 5);
  });
  try {
    const client = track(connect(server.url, { WebSocket: TestSocket }));
    const joined = client.join(room);
    const r = client.room(room);
    const seen = [];
    r.on('cursor', (c) => seen.push([c.connection, c.cursor.x, c.user.name ?? null, c.user.id]));
    await joined;
    await waitFor(() => seen.length === 5, 3000, 'five cursors');
    assert.deepEqual(seen, [
      ['c9', 1, 'Bob', 'bob'],
      ['c9', 2, 'Bob', 'bob'],
      ['c9', 3, 'Robert', 'bob'],
      ['c10', 4, null, 'carl'],
      ['c10', 5, 'Carl', 'carl'],
    ]);
    assert.equal(r.cursors.get('c9').user.name, 'Robert');
    client.close();
  } finally {
    server.close();
  }
});
