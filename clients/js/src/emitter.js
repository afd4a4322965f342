// A small event emitter shared by Client, Room and TextDoc.
//
// No SDK event fires inside a call the application made into the SDK: an
// editor that calls `doc.replace()` from its own update handler must not be
// called back (with 'change', 'selections', ...) before that handler returns;
// CodeMirror, for one, refuses a nested update. Public methods run inside
// `outsideEvents()`, and whatever they emit is queued and delivered in a
// microtask, in order, right after the call returns. Events caused by the
// network (a message, a close, a timer) are delivered at once, unless earlier
// queued events still wait, so the order of events is always the order in
// which they happened.
//
// Listeners that throw do not break the SDK: the exception is rethrown
// asynchronously so it still shows up in the console or in Node's uncaught
// exception handling.

let depth = 0;
// Queued events from `head` on (taken from the front by index: a long queue,
// after thousands of calls in one turn, must not cost a shift of all the
// rest per event).
const queue = [];
let head = 0;
let flushing = false;

function flush() {
  flushing = false;
  // Listeners may emit more (into the queue): keep going until it is empty.
  while (head < queue.length) {
    const [emitter, event, args] = queue[head];
    queue[head++] = undefined;
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    }
    emitter._dispatch(event, args);
  }
}

/**
 * Runs `fn` (a public SDK call) so that the events it causes wait until it
 * has returned. Returns what `fn` returns.
 */
export function outsideEvents(fn) {
  depth++;
  try {
    return fn();
  } finally {
    depth--;
  }
}

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /** Subscribes to `event`; returns a function that unsubscribes. */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Subscribes for one call only; returns a function that unsubscribes. */
  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  listenerCount(event) {
    const set = this._listeners.get(event);
    return set ? set.size : 0;
  }

  emit(event, ...args) {
    if (depth > 0 || queue.length > 0) {
      queue.push([this, event, args]);
      if (!flushing) {
        flushing = true;
        queueMicrotask(flush);
      }
      return;
    }
    this._dispatch(event, args);
  }

  _dispatch(event, args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
