// The hooks read the SDK's live state: a page rendered on the server (React's
// renderToString, which runs no effects) from a client joined to a real
// Chorus server shows its members, values, cursors and text. Updates as they
// happen are tested in Chromium (tests/browser/react.test.js), where effects
// run.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import WebSocket from 'ws';
import { connect } from '@chorus/client';
import { ChorusProvider, useClient, useConnectionState, useCursors, useMembers, usePending, useValue } from '../src/index.js';
import { startServer, waitFor } from '../../js/test/helpers.js';

let server;
const clients = [];
before(async () => {
  server = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

async function joined(user, room) {
  const client = connect(server.ws, { WebSocket, user, name: user.toUpperCase() });
  clients.push(client);
  return [client, await client.join(room)];
}

function Page({ room }) {
  const client = useClient();
  const members = useMembers(room);
  const cursors = useCursors(room);
  const title = useValue(room, 'title');
  const missing = useValue(room, 'nothing');
  return createElement(
    'main',
    null,
    createElement('h1', null, title),
    createElement('p', null, `${useConnectionState()} as ${client.user.id}, ${usePending()} pending`),
    createElement('ul', null, members.map((m) => createElement('li', { key: m.connection }, m.user.name))),
    createElement('p', null, `cursors: ${cursors.map((c) => c.user.id).join(',')}`),
    createElement('p', null, `missing: ${String(missing)}`),
  );
}

test('hooks render the room as the SDK has it', async () => {
  const name = `react-${process.pid}`;
  const [ann, room] = await joined('ann', name);
  const [, bobRoom] = await joined('bob', name);
  await bobRoom.updateValue('title', 'register', { op: 'set', value: 'Launch plan' });
  bobRoom.setCursor({ x: 1, y: 2 });
  await waitFor(() => room.values.has('title') && room.members.length === 2 && room.cursors.size === 1, 5000, 'the room state');
  const html = renderToString(createElement(ChorusProvider, { client: ann }, createElement(Page, { room })));
  assert.match(html, /<h1>Launch plan<\/h1>/);
  assert.match(html, /open as ann, 0 pending/);
  assert.match(html, /<li>ANN<\/li><li>BOB<\/li>/);
  assert.match(html, /cursors: bob/);
  assert.match(html, /missing: undefined/);
});

test('every entry point loads and exports what its types declare', async () => {
  const main = await import('../src/index.js');
  for (const name of ['ChorusProvider', 'useClient', 'useRoom', 'useDoc', 'useMembers', 'useCursors', 'useValue', 'useText', 'usePending', 'useConnectionState']) {
    assert.equal(typeof main[name], 'function', name);
  }
  const cm = await import('../src/codemirror.js');
  assert.equal(typeof cm.useCodeMirror, 'function');
});
