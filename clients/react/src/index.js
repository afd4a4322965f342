// @chorus/react: React hooks on the Chorus JavaScript SDK.
//
//   <ChorusProvider url="ws://localhost:8787/v1/ws" options={{ user: 'ann' }}>
//     <App />
//   </ChorusProvider>
//
//   const room = useRoom('team-42/plan');
//   const members = useMembers(room);
//   const title = useValue(room, 'title');
//
// Each hook reads one part of the SDK's state through
// useSyncExternalStore with a snapshot that changes only when that part
// does: a component using `useValue(room, 'title')` re-renders when the title
// changes, not when someone moves a cursor or another value changes. Rooms
// and documents are shared by every component that names them and left or
// closed when the last of them unmounts (after a moment, so React's strict
// mode remounting does not leave and join again).
//
// Plain ES modules with React.createElement, so it runs without a build step.

import { connect } from '@chorus/client';
import { createContext, createElement, useContext, useEffect, useState, useSyncExternalStore } from 'react';

const ClientContext = createContext(null);

/**
 * Gives its children a Chorus client: the one passed as `client` (kept open
 * when the provider unmounts), or one it connects to `url` with `options`
 * (closed when it unmounts).
 */
export function ChorusProvider({ client = null, url, options, children }) {
  const [own, setOwn] = useState(null);
  useEffect(() => {
    if (client) return undefined;
    if (!url) throw new Error('ChorusProvider needs a client or a url');
    const c = connect(url, options);
    setOwn(c);
    return () => {
      setOwn(null);
      c.close();
    };
    // `options` is read when connecting; a new object each render must not reconnect.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, url]);
  return createElement(ClientContext.Provider, { value: client || own }, children);
}

/** The provider's client (null while a provider with a `url` is connecting). */
export function useClient() {
  return useContext(ClientContext);
}

// ---- shared rooms and documents -------------------------------------------

/** How long a room or document nobody uses stays joined or open. */
const RELEASE_DELAY_MS = 200;

/**
 * Reference counts over anything opened by key: `acquire` opens on first
 * use (or cancels a pending release), `release` closes after the last user
 * has gone for RELEASE_DELAY_MS.
 */
class Shared {
  constructor() {
    this.entries = new Map();
  }

  acquire(key, open) {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { count: 0, value: open(), timer: null };
      this.entries.set(key, entry);
    }
    clearTimeout(entry.timer);
    entry.timer = null;
    entry.count++;
    return entry.value;
  }

  release(key, close) {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.count--;
    if (entry.count > 0) return;
    entry.timer = setTimeout(() => {
      if (this.entries.get(key) !== entry || entry.count > 0) return;
      this.entries.delete(key);
      close(entry.value);
    }, RELEASE_DELAY_MS);
  }
}

const roomsOf = new WeakMap(); // client -> Shared of room promises
const docsOf = new WeakMap(); // room -> Shared of document promises

function sharedFor(map, owner) {
  let shared = map.get(owner);
  if (!shared) map.set(owner, (shared = new Shared()));
  return shared;
}

/**
 * The value `open()` resolves to, shared with every component that names
 * (owner, name), opened on first use and closed with `close(value)` when
 * the last of them unmounts; null until it resolves (or if it failed).
 */
function useShared(owner, table, name, open, close) {
  const [value, setValue] = useState(null);
  useEffect(() => {
    if (!owner || !name) return undefined;
    let live = true;
    const shared = sharedFor(table, owner);
    const opening = shared.acquire(name, () => {
      const p = open();
      p.catch(() => {}); // the error reaches the client's 'error' event
      return p;
    });
    opening.then(
      (v) => live && setValue(v),
      () => live && setValue(null),
    );
    return () => {
      live = false;
      setValue(null);
      shared.release(name, (p) => p.then(close).catch(() => {}));
    };
    // `open` and `close` are made anew each render; owner and name say what they open.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [owner, name]);
  return value;
}

/**
 * Joins room `name` (with an optional first presence state; change it with
 * `room.setPresence`) for as long as the component is mounted. Returns the
 * Room once joined, null until then (and if the join failed: see the
 * client's 'error' event).
 */
export function useRoom(name, presence) {
  const client = useClient();
  return useShared(client, roomsOf, name, () => client.join(name, presence), (room) => room.leave());
}

/**
 * Opens text document `name` of `room` for as long as the component is
 * mounted. Returns the TextDoc once open, null until then.
 */
export function useDoc(room, name) {
  return useShared(room, docsOf, name, () => room.openDoc(name), (doc) => doc.close());
}

// ---- snapshots ------------------------------------------------------------

/**
 * A store for useSyncExternalStore over one SDK event: `read()` makes the
 * snapshot, which is remade only when `event` fires on `source` and
 * `changed(previous, next)` says it differs (by default: always). One SDK
 * listener serves every component subscribed to the store.
 */
function eventStore(source, event, read, changed = () => true) {
  let snapshot = read();
  const listeners = new Set();
  let off = null;
  const refresh = () => {
    const next = read();
    if (!changed(snapshot, next)) return;
    snapshot = next;
    for (const notify of [...listeners]) notify();
  };
  return {
    subscribe(notify) {
      if (listeners.size === 0) {
        refresh(); // what happened while nobody listened
        off = source.on(event, refresh);
      }
      listeners.add(notify);
      return () => {
        listeners.delete(notify);
        if (listeners.size === 0 && off) {
          off();
          off = null;
        }
      };
    },
    get: () => snapshot,
  };
}

const EMPTY = Object.freeze([]);
const noStore = { subscribe: () => () => {}, get: () => undefined };

/** Memoises one store per (source, key) so every render sees the same one. */
const stores = new WeakMap();
function storeFor(source, key, make) {
  if (!source) return noStore;
  let byKey = stores.get(source);
  if (!byKey) stores.set(source, (byKey = new Map()));
  let store = byKey.get(key);
  if (!store) byKey.set(key, (store = make()));
  return store;
}

function useStore(store, fallback) {
  const value = useSyncExternalStore(store.subscribe, store.get, store.get);
  return value === undefined ? fallback : value;
}

/** The room's members (connections), oldest join first; re-renders when they change. */
export function useMembers(room) {
  const store = storeFor(room, 'members', () => eventStore(room, 'members', () => Object.freeze([...room.members])));
  return useStore(store, EMPTY);
}

/** The other connections' cursors; re-renders when one moves, appears or goes. */
export function useCursors(room) {
  const store = storeFor(room, 'cursors', () => eventStore(room, 'cursor', () => Object.freeze([...room.cursors.values()])));
  return useStore(store, EMPTY);
}

/**
 * A shared value's plain value (undefined while the room has none);
 * re-renders only when that value changes. Change it with
 * `room.updateValue(name, kind, change)`.
 */
export function useValue(room, name) {
  const store = storeFor(room, `value:${name}`, () =>
    eventStore(
      room,
      'value',
      () => room.values.get(name),
      (previous, next) => previous !== next,
    ),
  );
  const state = useStore(store, undefined);
  return state ? state.value : undefined;
}

/**
 * The text of document `name` of `room` and the TextDoc (null until open):
 * `const [text, doc] = useText(room, 'notes')`. Re-renders on every change
 * of the text, local or remote; edit it through the doc (`doc.change`, or
 * bind an editor).
 */
export function useText(room, name) {
  const doc = useDoc(room, name);
  const store = storeFor(doc, 'text', () => eventStore(doc, 'change', () => doc.text, (a, b) => a !== b));
  const text = useStore(store, '');
  return [text, doc];
}

/**
 * How many changes wait for the server (unacknowledged edits, value changes
 * not stored yet), for a "saving…" indicator; re-renders when it changes.
 */
export function usePending() {
  const client = useClient();
  const store = storeFor(client, 'pending', () => eventStore(client, 'pending', () => client.pending, (a, b) => a !== b));
  return useStore(store, 0);
}

/** The client's connection state ('connecting', 'open', 'reconnecting', 'closed'). */
export function useConnectionState() {
  const client = useClient();
  const store = storeFor(client, 'state', () => eventStore(client, 'state', () => client.state, (a, b) => a !== b));
  return useStore(store, 'connecting');
}
