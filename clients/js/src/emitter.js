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

/**
 * Whether an event emitted now would wait in the queue (inside a call, or
 * behind earlier events): a listener added meanwhile still receives it.
 */
export function eventsWait() {
  return depth > 0 || queue.length > 0;
}

export class Emitter {
  constructor() {
    /**
     * Listeners by event, each list replaced (never changed) when one is
     * added or removed: an emit calls the list as it was, without copying
     * it, however listeners change meanwhile (a document emits for every op).
     * @type {Map<string, Function[]>}
     */
    this._listeners = new Map();
  }

  /** Subscribes to `event` (once, however often `fn` is given); returns a function that unsubscribes. */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    const list = this._listeners.get(event);
    if (!list) this._listeners.set(event, [fn]);
    else if (!list.includes(fn)) this._listeners.set(event, list.concat(fn));
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
    const list = this._listeners.get(event);
    if (!list || !list.includes(fn)) return;
    if (list.length === 1) this._listeners.delete(event);
    else this._listeners.set(event, list.filter((f) => f !== fn));
  }

  listenerCount(event) {
    const list = this._listeners.get(event);
    return list ? list.length : 0;
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
    const list = this._listeners.get(event);
    if (!list) return;
    for (let i = 0; i < list.length; i++) {
      const fn = list[i];
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
