// A room this client has joined: its members and their presence, cursors,
// shared values and open text documents. The room survives reconnects: the
// client joins it again with the last presence state, reopens its documents
// from where they were and shows the last cursor again.

import { Emitter, outsideEvents } from './emitter.js';
import { ChorusError } from './errors.js';
import { TextDoc } from './textdoc.js';

const VALUE_KINDS = new Set(['register', 'g_counter', 'pn_counter', 'or_set', 'lww_map']);

/** Whether two states of a value (as JSON from the server) are the same. */
function sameValue(a, b) {
  return a.version === b.version && a.kind === b.kind && JSON.stringify(a.value) === JSON.stringify(b.value);
}

export class Room extends Emitter {
  /** @param {import('./chorus.js').Client} client */
  constructor(client, name, presence) {
    super();
    this.client = client;
    this.name = name;
    /** Members (connections), oldest join first: {connection, user, state, joined_at}. */
    this.members = [];
    /** Other connections' cursors by connection: {connection, user, cursor, doc?, version?}. */
    this.cursors = new Map();
    /** Shared values by name: {kind, version, value}. */
    this.values = new Map();
    /** @type {Map<string, TextDoc>} */
    this.docs = new Map();
    this._presence = presence === undefined ? null : presence;
    this._live = false;
    this._left = false;
    this._joinedOnce = false;
    this._joinId = null;
    this._queue = [];
    // Cursor throttling: the last message sent, when, and the latest waiting.
    this._cursorMsg = null;
    this._cursorSentAt = -Infinity;
    this._cursorWaiting = null;
    this._cursorTimer = null;
    this._joinPromise = new Promise((resolve, reject) => {
      this._joinResolve = resolve;
      this._joinReject = reject;
    });
    this._joinPromise.catch(() => {});
  }

  /** This connection's presence state in the room. */
  get presence() {
    return this._presence;
  }

  get left() {
    return this._left;
  }

  // ---- joining ----------------------------------------------------------

  /** Sends join on the current connection (first join, reconnect, expiry). */
  _rejoin() {
    if (this._left || this.client.state !== 'open') return;
    if (this._live === false && this._joinId !== null && this.client._requests.has(this._joinId)) return; // one at a time
    this._live = false;
    for (const doc of this.docs.values()) doc._disconnected();
    const client = this.client;
    const id = client._takeId();
    this._joinId = id;
    client._register(id, {
      onReply: (msg) => this._onJoined(msg, true),
      onError: (err) => this._onJoinError(err, id),
    });
    const msg = { type: 'join', id, room: this.name };
    if (this._presence !== null) msg.state = this._presence;
    client._send(msg);
  }

  _onJoinError(err, id) {
    if (id !== this._joinId || this._left) return;
    if (err.code === 'unavailable') {
      setTimeout(() => this._rejoin(), 500);
    } else if (err.code === 'already_joined') {
      // We are in the room after all (a join raced an expiry): carry on.
      this._onJoined({ members: this.members, cursors: [...this.cursors.values()], values: this._valueStates() }, true);
    } else if (!this._joinedOnce) {
      this._left = true;
      this.client._rooms.delete(this.name);
      this._joinReject(err);
    } else {
      this.emit('error', err);
    }
  }

  _valueStates() {
    return [...this.values].map(([name, v]) => ({ name, ...v }));
  }

  /** `joined`: the reply to our join, or an unsolicited resync. */
  _onJoined(msg, reply) {
    if (this._left) return;
    this._live = true;
    const self = this.client.connection;
    this.members = (msg.members || []).map((m) => ({ ...m }));
    const oldCursors = this.cursors;
    this.cursors = new Map();
    for (const c of msg.cursors || []) {
      if (c.connection === self) continue;
      this.cursors.set(c.connection, this._cursorState(c));
    }
    const oldValues = this.values;
    this.values = new Map();
    for (const v of msg.values || []) this.values.set(v.name, { kind: v.kind, version: v.version, value: v.value });

    this.emit('members', this.members);
    for (const [conn, c] of oldCursors) {
      if (!this.cursors.has(conn)) this.emit('cursor', { ...c, cursor: null });
    }
    for (const c of this.cursors.values()) this.emit('cursor', c);
    for (const [name, v] of this.values) {
      const old = oldValues.get(name);
      // A repair may correct a value at a version already seen (the store
      // went back and was written again): the state, not only the version,
      // tells whether the app must hear of it.
      if (!old || !sameValue(old, v)) this.emit('value', { name, ...v });
    }
    // A value the room no longer has (the server lost its store, say) is
    // gone here too: say so, or a page would keep showing it.
    for (const [name, old] of oldValues) {
      if (!this.values.has(name)) this.emit('value', { name, kind: old.kind, version: 0, value: undefined, removed: true });
    }

    if (reply) {
      if (!this._joinedOnce) {
        this._joinedOnce = true;
        this._joinResolve(this);
      }
      // Documents: reopen each from where it was. Cursor: show it again.
      for (const doc of this.docs.values()) doc._open(false);
      if (this._cursorMsg && this._cursorMsg.cursor !== null) this.client._send(this._cursorMsg);
      const queue = this._queue;
      this._queue = [];
      for (const q of queue) q.run();
    }
    for (const doc of this.docs.values()) doc._emitSelections();
  }

  /** Our presence expired (left with reason `expired`): join again. */
  _onExpired() {
    this._live = false;
    this._joinId = null;
    this._rejoin();
  }

  /** A fresh token no longer grants this room (left with reason `forbidden`). */
  _onForbidden() {
    const err = new ChorusError('forbidden', `the refreshed token no longer grants room ${this.name}`);
    outsideEvents(() => this._shutdown(err));
    this.emit('error', err);
  }

  _disconnected() {
    this._live = false;
    this._joinId = null;
    for (const doc of this.docs.values()) doc._disconnected();
  }

  /** Runs `fn` once the room is joined on the current connection. */
  _whenLive(fn) {
    return new Promise((resolve, reject) => {
      const run = () => {
        try {
          Promise.resolve(fn()).then(resolve, reject);
        } catch (err) {
          reject(err);
        }
      };
      if (this._left) reject(new ChorusError('not_joined', `room ${this.name} was left`));
      else if (this._live && this.client.state === 'open') run();
      else this._queue.push({ run, reject });
    });
  }

  // ---- members and presence ---------------------------------------------

  _userOf(connection) {
    const m = this.members.find((x) => x.connection === connection);
    return m ? m.user : null;
  }

  /**
   * A cursor message as the app sees it. `known` is the sender's previous
   * state, whose `user` is kept current (`_onMemberJoined`): taken from it
   * rather than looked up among the members, a scan for every cursor of a
   * busy room.
   */
  _cursorState(c, known) {
    const user = known ? known.user : this._userOf(c.connection) || { id: c.user };
    const state = { connection: c.connection, user, cursor: c.cursor };
    if (c.doc != null) state.doc = c.doc;
    if (c.version != null) state.version = c.version;
    return state;
  }

  _onMemberJoined(msg) {
    const m = { ...msg.member };
    const i = this.members.findIndex((x) => x.connection === m.connection);
    if (i >= 0) this.members[i] = m;
    else this.members.push(m);
    const c = this.cursors.get(m.connection);
    if (c) c.user = m.user;
    this.emit('members', this.members);
  }

  _onMemberLeft(msg) {
    const i = this.members.findIndex((x) => x.connection === msg.connection);
    if (i < 0) return; // unknown: a race with `joined`
    this.members.splice(i, 1);
    this.emit('members', this.members);
    const c = this.cursors.get(msg.connection);
    if (c) {
      this.cursors.delete(msg.connection);
      this.emit('cursor', { ...c, cursor: null });
      this._selectionsChanged(c.doc);
    }
  }

  _onPresence(msg) {
    const m = this.members.find((x) => x.connection === msg.connection);
    if (m) m.state = msg.state;
    this.emit('presence', { connection: msg.connection, user: m ? m.user : null, state: msg.state });
    this.emit('members', this.members);
  }

  /** Replaces this connection's presence state (the whole value; `null` clears it). */
  setPresence(state) {
    outsideEvents(() => this._setPresence(state));
  }

  _setPresence(state) {
    if (this._left) throw new ChorusError('not_joined', `room ${this.name} was left`);
    this._presence = state === undefined ? null : state;
    const self = this.client.connection;
    const m = this.members.find((x) => x.connection === self);
    if (m) {
      m.state = this._presence;
      this.emit('members', this.members);
    }
    // Sent now if joined; otherwise the next join carries it.
    if (this._live) this.client._send({ type: 'presence', room: this.name, state: this._presence });
  }

  // ---- cursors ----------------------------------------------------------

  /**
   * Moves this connection's cursor (`null` hides it). Throttled: the first
   * call goes at once, later ones at most one per `cursorThrottleMs`, the
   * latest always sent.
   */
  setCursor(cursor, options = {}) {
    if (this._left) throw new ChorusError('not_joined', `room ${this.name} was left`);
    if (cursor !== null && (typeof cursor !== 'object' || Array.isArray(cursor))) {
      throw new TypeError('a cursor must be an object or null');
    }
    const msg = { type: 'cursor', room: this.name, cursor };
    if (options.doc != null) msg.doc = options.doc;
    if (options.version != null) msg.version = options.version;
    const every = this.client.options.cursorThrottleMs;
    const now = Date.now();
    if (!this._cursorTimer && now - this._cursorSentAt >= every) {
      this._sendCursor(msg, now);
      return;
    }
    this._cursorWaiting = msg;
    if (!this._cursorTimer) {
      this._cursorTimer = setTimeout(() => this._flushCursor(), Math.max(0, every - (now - this._cursorSentAt)));
    }
  }

  _flushCursor() {
    this._cursorTimer = null;
    const msg = this._cursorWaiting;
    this._cursorWaiting = null;
    if (msg && !this._left) this._sendCursor(msg, Date.now());
  }

  _sendCursor(msg, now) {
    this._cursorMsg = msg;
    this._cursorSentAt = now;
    // While not joined, the cursor is remembered and sent after the join.
    if (this._live) this.client._send(msg);
  }

  _onCursor(msg) {
    if (msg.connection === this.client.connection) return;
    const old = this.cursors.get(msg.connection);
    const state = this._cursorState(msg, old);
    if (msg.cursor === null) this.cursors.delete(msg.connection);
    else this.cursors.set(msg.connection, state);
    this.emit('cursor', state);
    this._selectionsChanged(msg.doc);
    if (old && old.doc !== msg.doc) this._selectionsChanged(old.doc);
  }

  _selectionsChanged(docName) {
    if (docName == null) return;
    const doc = this.docs.get(docName);
    if (doc) doc._emitSelections();
  }

  // ---- values -----------------------------------------------------------

  _onValue(msg) {
    const known = this.values.get(msg.name);
    if (known && known.version >= msg.version) return;
    const v = { kind: msg.kind, version: msg.version, value: msg.value };
    this.values.set(msg.name, v);
    this.emit('value', { name: msg.name, ...v });
  }

  /**
   * Changes a shared value (created as `kind` on first use). Resolves to the
   * version stored. Not deduplicated: a change whose reply is lost to a
   * dropped connection is rejected with `disconnected` and not resent.
   */
  updateValue(name, kind, change) {
    return outsideEvents(() => this._updateValue(name, kind, change));
  }

  _updateValue(name, kind, change) {
    if (this._left) return Promise.reject(new ChorusError('not_joined', `room ${this.name} was left`));
    if (!VALUE_KINDS.has(kind)) return Promise.reject(new TypeError(`unknown value kind ${kind}`));
    if (!change || typeof change !== 'object' || typeof change.op !== 'string') {
      return Promise.reject(new TypeError('a change is an object with an op, e.g. {op: "set", value: 1}'));
    }
    // A change waiting to be stored counts as pending (an app shows
    // "saving…" until it is).
    const client = this.client;
    client._valuesInFlight++;
    client._pendingChanged();
    const done = () => {
      client._valuesInFlight--;
      client._pendingChanged();
    };
    const request = this._whenLive(() =>
      client._request({ type: 'update_value', room: this.name, name, kind, change }).then((reply) => reply.version),
    );
    request.then(done, done);
    return request;
  }

  // ---- documents --------------------------------------------------------

  /** Opens a shared text document of this room. */
  openDoc(name) {
    return outsideEvents(() => this._openDoc(name));
  }

  _openDoc(name) {
    if (this._left) return Promise.reject(new ChorusError('not_joined', `room ${this.name} was left`));
    const existing = this.docs.get(name);
    if (existing) return existing._openPromise;
    const doc = new TextDoc(this, name);
    this.docs.set(name, doc);
    if (this._live) doc._open(false);
    return doc._openPromise;
  }

  _forgetDoc(doc) {
    if (this.docs.get(doc.name) === doc) this.docs.delete(doc.name);
  }

  // ---- leaving ----------------------------------------------------------

  /** Leaves the room; its documents are closed. */
  async leave() {
    if (this._left) return;
    const live = this._live && this.client.state === 'open';
    outsideEvents(() => this._shutdown(new ChorusError('not_joined', `room ${this.name} was left`)));
    if (live) {
      try {
        await this.client._request({ type: 'leave', room: this.name }, { onDisconnect: 'resolve' });
      } catch (err) {
        if (err.code !== 'not_joined') throw err;
      }
    }
  }

  _shutdown(err) {
    this._left = true;
    this._live = false;
    if (this.client._rooms.get(this.name) === this) this.client._rooms.delete(this.name);
    if (this._cursorTimer) clearTimeout(this._cursorTimer);
    this._cursorTimer = null;
    if (!this._joinedOnce) this._joinReject(err);
    for (const doc of this.docs.values()) doc._shutdown(err);
    this.docs.clear();
    const queue = this._queue;
    this._queue = [];
    for (const q of queue) q.reject(err);
  }
}
