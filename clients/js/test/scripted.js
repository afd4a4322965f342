// A scripted server: a real WebSocket server that answers the SDK with
// exactly the messages a test gives it. For what the server in this
// repository cannot be made to send on cue (fields of a newer protocol, the
// corrections a repair sends after a store went back), so that the SDK's
// side of the protocol is tested over a real socket all the same.

import { WebSocketServer } from 'ws';

const LIMITS = {
  max_message_bytes: 65536,
  messages_per_second: 100,
  rooms_per_connection: 50,
  members_per_room: 1000,
  cursor_updates_per_second: 30,
  max_op_bytes: 32768,
  max_document_bytes: 8388608,
  documents_per_connection: 50,
  max_value_bytes: 65536,
  values_per_room: 100,
};

/** A server that hands each connection to `script(peer)`; `peer.next(type)` waits for the client's next message of that type. */
export async function scriptedServer(script) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'chorus.v1' });
  await new Promise((r) => wss.once('listening', r));
  let n = 0;
  wss.on('connection', (socket) => {
    const inbox = [];
    const waiters = [];
    socket.on('message', (data) => {
      const msg = JSON.parse(String(data));
      const i = waiters.findIndex((w) => w.type === msg.type);
      if (i >= 0) waiters.splice(i, 1)[0].resolve(msg);
      else inbox.push(msg);
    });
    const peer = {
      number: ++n,
      send: (msg) => socket.send(JSON.stringify(msg)),
      next(type) {
        const i = inbox.findIndex((m) => m.type === type);
        if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
        return new Promise((resolve) => waiters.push({ type, resolve }));
      },
      drop: () => socket.terminate(),
    };
    script(peer).catch((err) => console.error('script failed:', err));
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/v1/ws`, close: () => wss.close() };
}

/** hello, welcome, join, joined: the start of every connection; `joined` adds fields to the reply. */
export async function handshake(peer, joined = {}) {
  await peer.next('hello');
  peer.send({ type: 'welcome', protocol: 1, server: 'chorus/scripted', connection: `c${peer.number}`, user: { id: 'ann', color: '#d22d9b' }, heartbeat_ms: 10000, presence_ttl_ms: 30000, limits: LIMITS });
  const join = await peer.next('join');
  peer.send({ type: 'joined', id: join.id, room: join.room, connection: `c${peer.number}`, members: [], count: 0, cursors: [], ...joined });
}
