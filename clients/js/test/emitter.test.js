// Events caused by SDK calls wait until the call returns and are delivered
// in order. Many calls in one turn (a script pasting character by character)
// queue many events: they must all arrive, in order, and an event emitted by
// a listener while the queue drains comes after everything queued before it.

import assert from 'node:assert/strict';
import { Emitter, outsideEvents } from '../src/emitter.js';
import { test } from './helpers.js';

test('a long queue of events from one turn is delivered whole and in order', async () => {
  const a = new Emitter();
  const b = new Emitter();
  const seen = [];
  a.on('n', (n) => {
    seen.push(`a${n}`);
    if (n === 0) b.emit('n', 'late'); // emitted while the queue drains
  });
  b.on('n', (n) => seen.push(`b${n}`));
  const count = 100000;
  for (let i = 0; i < count; i++) outsideEvents(() => (i % 2 === 0 ? a : b).emit('n', i));
  assert.equal(seen.length, 0, 'nothing is delivered inside the calls');
  await null;
  assert.equal(seen.length, count + 1);
  assert.equal(seen[0], 'a0');
  assert.equal(seen[1], 'b1');
  assert.equal(seen[count - 1], `b${count - 1}`);
  assert.equal(seen[count], 'blate', 'after everything queued before it');
  for (let i = 0; i < count; i++) assert.equal(seen[i], `${i % 2 === 0 ? 'a' : 'b'}${i}`);
  // The queue is empty again: a network event (outside any call) is delivered at once.
  a.emit('n', 'now');
  assert.equal(seen[count + 1], 'anow');
});

test('listeners: one subscription per function, and an emit calls the listeners it began with', () => {
  const e = new Emitter();
  const seen = [];
  const a = (x) => seen.push(`a${x}`);
  e.on('x', a);
  e.on('x', a); // the same function again: still one call per emit
  assert.equal(e.listenerCount('x'), 1);
  let offB = null;
  const c = (x) => seen.push(`c${x}`);
  const b = (x) => {
    seen.push(`b${x}`);
    offB(); // removes itself: later emits skip it
    e.off('x', c); // removes one still to be called in this emit: it is called this once
    e.on('x', (y) => seen.push(`d${y}`)); // added during the emit: called from the next one
  };
  offB = e.on('x', b);
  e.on('x', c);
  e.emit('x', 1);
  e.emit('x', 2);
  assert.deepEqual(seen, ['a1', 'b1', 'c1', 'a2', 'd2']);
  e.off('x', a);
  e.off('x', a); // twice: nothing to remove
  assert.equal(e.listenerCount('x'), 1);
  assert.equal(e.listenerCount('none'), 0);
});

test('a listener receives exactly the arguments emitted, at once or queued', async () => {
  const e = new Emitter();
  const seen = [];
  e.on('x', (...args) => seen.push(args));
  e.on('x', function () {
    seen.push(arguments.length);
  });
  const emitAll = () => {
    e.emit('x');
    e.emit('x', undefined);
    e.emit('x', 1, 2);
    e.emit('x', 1, 2, 3);
  };
  emitAll(); // delivered at once
  outsideEvents(emitAll); // queued, delivered after the call
  await null;
  const once = [[], 0, [undefined], 1, [1, 2], 2, [1, 2, 3], 3];
  assert.deepEqual(seen, once.concat(once));
});
