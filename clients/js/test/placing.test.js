// Remote selections are tagged with the document version they were made at;
// the SDK moves them through the ops committed since, which it remembers
// (the last 2,048, in a ring: src/recent.js; the test asks for at least the
// last 1,000). Driven without a server: a TextDoc with a
// stand-in room and client, fed the server's op frames, against a string
// model of the text and of each selection moved op by op.

import assert from 'node:assert/strict';
import { applyOp, transformPosition } from '../src/ot.js';
import { TextDoc } from '../src/textdoc.js';
import { codePointLength, toUtf16 } from '../src/units.js';
import { seeded, test } from './helpers.js';

function openDoc(text) {
  const client = { session: null, user: { id: 'me' }, state: 'open', _takeId: () => 1, _register() {}, _send() {}, _pendingChanged() {} };
  const room = { name: 'r', client, cursors: new Map(), _live: true, setCursor() {}, _forgetDoc() {}, _rejoin() {} };
  const doc = new TextDoc(room, 'd');
  doc._onOpened({ type: 'opened', text, version: 0, epoch: 'e', client: 'u1:me:x' });
  return { doc, room };
}

test('selections made up to 1,000 ops back are placed through every op since, older ones are not shown', () => {
  const rand = seeded('placing old selections');
  let text = 'a😀b\r\nc';
  const { doc, room } = openDoc(text);
  // Where a caret made at each version should be now: moved through each op.
  const carets = [];
  for (let version = 1; version <= 3500; version++) {
    const points = codePointLength(text);
    const at = rand.int(points + 1);
    const op = rand.int(3) === 0 && at < points ? (at > 0 ? [at, { d: 1 }] : [{ d: 1 }]) : at > 0 ? [at, rand.pick(['q', '😀', '\r\n'])] : ['z'];
    carets.push({ version: version - 1, at: rand.int(points + 1) });
    for (const c of carets) c.now = transformPosition(op, c.now ?? c.at, false);
    doc._onOp({ type: 'op', version, client: 'u2:other:y', seq: version, op });
    text = applyOp(text, op).text;
  }
  assert.equal(doc.text, text);
  for (const back of [0, 1, 2, 999, 1000, 1001, 1499, 1500, 2000, 3000]) {
    const c = carets[carets.length - back];
    if (!c) continue;
    room.cursors.clear();
    room.cursors.set('c', { connection: 'c', user: { id: 'u2' }, doc: 'd', version: c.version, cursor: { anchor: c.at, head: c.at } });
    const shown = doc.remoteSelections();
    if (back <= 1000) {
      assert.equal(shown.length, 1, `a caret ${back} ops back is shown`);
      assert.equal(shown[0].anchor, toUtf16(text, c.now), `a caret ${back} ops back`);
    } else if (shown.length === 1) {
      // Kept for longer than it must be: then placed right all the same.
      assert.equal(shown[0].anchor, toUtf16(text, c.now), `a caret ${back} ops back`);
    }
  }
  // Far older than anything kept: not shown.
  room.cursors.set('c', { connection: 'c', user: { id: 'u2' }, doc: 'd', version: 0, cursor: { anchor: 0, head: 0 } });
  assert.equal(doc.remoteSelections().length, 0);
});
