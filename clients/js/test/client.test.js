import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import otText from 'ot-text-unicode';
import { connect, toCodePoints, toUtf16 } from '../src/chorus.js';
import { nextEvent, open, roomName, serverForThisFile, test, TestSocket, track, waitFor } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const server = serverForThisFile();

test('connect: state events, welcome, close', async () => {
  const client = track(connect(server.ws, { WebSocket: TestSocket, user: 'ann', name: 'Ann' }));
  assert.equal(client.state, 'connecting');
  const states = [];
  client.on('state', (s) => states.push(s));
  const welcome = await nextEvent(client, 'welcome');
  assert.equal(client.state, 'open');
  assert.deepEqual(states, ['open']);
  assert.equal(welcome.user.id, 'ann');
  assert.equal(welcome.user.name, 'Ann');
  assert.equal(client.connection, welcome.connection);
  assert.ok(welcome.heartbeat_ms > 0);
  // The handshake went out first and named the SDK.
  const hello = client._ws.sent[0];
  assert.equal(hello.type, 'hello');
  assert.equal(hello.protocol, 1);
  client.close();
  assert.equal(client.state, 'closed');
  assert.deepEqual(states, ['open'], 'no event fires inside the call');
  await Promise.resolve();
  assert.deepEqual(states, ['open', 'closed'], 'it fires right after');
  await assert.rejects(client.join('x'), { code: 'closed' });
});

test('an http:// URL without a path reaches /v1/ws', async () => {
  const client = track(connect(server.http, { WebSocket: TestSocket, user: 'url' }));
  await waitFor(() => client.state === 'open', 5000, 'open');
  client.close();
});

test('a bad request rejects and emits an error event', async () => {
  const client = await open(server, 'eve');
  const errors = [];
  client.on('error', (e) => errors.push(e));
  await assert.rejects(client.join('not a room!'), (err) => err.code === 'invalid_room');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'invalid_room');
  assert.equal(typeof errors[0].message, 'string');
  assert.equal(client.rooms.size, 0, 'a refused room is forgotten');

  const room = await client.join(roomName('err'));
  await room.updateValue('title', 'register', { op: 'set', value: 'a' });
  await assert.rejects(room.updateValue('title', 'g_counter', { op: 'increment', by: 1 }), { code: 'wrong_kind' });
  assert.equal(errors.at(-1).code, 'wrong_kind');
  assert.equal(errors.at(-1).room, room.name);
  assert.equal(client.state, 'open', 'the connection carries on');
  client.close();
});

test('UTF-16 and code point offsets convert both ways', () => {
  const s = 'a😭b🏳️‍🌈c';
  assert.equal(toCodePoints(s, 0), 0);
  assert.equal(toCodePoints(s, 1), 1);
  assert.equal(toCodePoints(s, 3), 2);
  assert.equal(toCodePoints(s, s.length), [...s].length);
  assert.throws(() => toCodePoints(s, 2), RangeError, 'inside a surrogate pair');
  assert.throws(() => toCodePoints(s, s.length + 1), RangeError);
  for (let cp = 0; cp <= [...s].length; cp++) assert.equal(toCodePoints(s, toUtf16(s, cp)), cp);
});

test('the vendored bundle is ot-text-unicode', async () => {
  const vendored = (await import('../vendor/ot-text-unicode.js')).default;
  const header = readFileSync(join(root, 'vendor/ot-text-unicode.js'), 'utf8').slice(0, 400);
  const pkg = JSON.parse(readFileSync(join(root, 'node_modules/ot-text-unicode/package.json'), 'utf8'));
  assert.match(header, new RegExp(`ot-text-unicode ${pkg.version.replace(/\./g, '\\.')} \\(${pkg.license} license`));
  const a = [2, 'x😀', { d: 1 }];
  const b = [1, { d: 2 }, 'y'];
  for (const side of ['left', 'right']) {
    assert.deepEqual(vendored.type.transform(a, b, side), otText.type.transform(a, b, side));
  }
  assert.equal(vendored.type.apply('ab😭cd', a), otText.type.apply('ab😭cd', a));
});

test('sources import each other by relative .js paths and only ot-text-unicode by name', () => {
  const dir = join(root, 'src');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      assert.ok(spec === 'ot-text-unicode' || (spec.startsWith('./') && spec.endsWith('.js')), `${file} imports ${spec}`);
    }
  }
});

test('the SDK runs on the vendored bundle, as a browser import map would load it', async () => {
  const { spawnSync } = await import('node:child_process');
  const { pathToFileURL } = await import('node:url');
  const vendor = pathToFileURL(join(root, 'vendor/ot-text-unicode.js')).href;
  const ot = pathToFileURL(join(root, 'src/ot.js')).href;
  const hooks = `export async function resolve(spec, ctx, next) {
    if (spec === 'ot-text-unicode') return { url: ${JSON.stringify(vendor)}, shortCircuit: true };
    return next(spec, ctx);
  }`;
  const script = `
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
    const { textType, applyOp } = await import(${JSON.stringify(ot)});
    const vendored = (await import(${JSON.stringify(vendor)})).default;
    if (textType !== vendored.type) throw new Error('the SDK did not load the vendored bundle');
    console.log(JSON.stringify(applyOp('a😀b', [2, 'x', { d: 1 }])));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    text: 'a😀x',
    changes: [{ from: 3, to: 4, insert: 'x' }],
    edits: [
      { type: 'insert', index: 3, text: 'x' },
      { type: 'delete', index: 4, length: 1 },
    ],
    bytes: 0,
  });
});
