// The Chorus JavaScript SDK: one WebSocket per client, rooms with presence,
// cursors, shared values and OT text documents, and automatic reconnection
// that restores all of it.

import { Emitter, outsideEvents } from './emitter.js';
import { ChorusError } from './errors.js';
import { Room } from './room.js';
import { TextDoc } from './textdoc.js';
import { utf8Length } from './units.js';

export { ChorusError, Room, TextDoc };
export { applyChanges, diffText, toCodePoints, toUtf16 } from './units.js';
export { chorusChanges, editorChanges, lineMapping, normalizeLineBreaks } from './lines.js';

export const PROTOCOL_VERSION = 1;
const SDK_NAME = 'chorus-js/0.1.0';
const OPEN = 1; // WebSocket.OPEN
const HANDSHAKE_TIMEOUT_MS = 10000;

const DEFAULTS = {
  token: undefined,
  user: undefined,
  name: undefined,
  WebSocket: undefined,
  reconnect: true,
  reconnectBaseMs: 250,
  reconnectMaxMs: 10000,
  cursorThrottleMs: 50,
};

/** Close codes after which retrying unchanged cannot help. */
const FATAL_CLOSE = new Set([4001, 4002]);
/** The server's close code for a frame over `max_message_bytes`. */
const MESSAGE_TOO_BIG = 1009;
/** After `rate_limited`, how long to wait before resending what was dropped. */
const RATE_LIMIT_PAUSE_MS = 1000;

/** Connects to a Chorus server; returns the client at once (state 'connecting'). */
export function connect(url, options = {}) {
  return new Client(url, options);
}

function endpoint(url) {
  const u = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`not a WebSocket URL: ${url}`);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/v1/ws';
  return u;
}

export class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.url = endpoint(url).toString();
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket: pass options.WebSocket (in Node: the `ws` package)');
    }
    this._WebSocket = WS;
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'connecting';
    /** This connection's id (changes with every reconnect). */
    this.connection = null;
    /** The user as the server knows it. */
    this.user = null;
    /** The `welcome` message of the current connection. */
    this.session = null;
    /** @type {Map<string, Room>} */
    this._rooms = new Map();
    this._requests = new Map();
    this._nextId = 1;
    this._ws = null;
    /** Takes the current socket's message listener off it (Node's `ws`), or null. */
    this._detach = null;
    this._welcomed = false;
    this._everOpen = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._handshakeTimer = null;
    this._heartbeatTimer = null;
    this._heartbeatId = null;
    this._retryAfterMs = 0;
    this._rateTimer = null;
    this._valuesInFlight = 0;
    this._lastPending = 0;
    this._connect();
  }

  /** Joined rooms by name. */
  get rooms() {
    return this._rooms;
  }

  /**
   * Changes waiting for the server: unacknowledged document edits and value
   * changes not yet stored. While it is above zero, something the user did
   * is not saved yet ("saving…"); 'pending' fires when it changes.
   */
  get pending() {
    let n = this._valuesInFlight;
    for (const room of this._rooms.values()) for (const doc of room.docs.values()) n += doc.pending;
    return n;
  }

  _pendingChanged() {
    const n = this.pending;
    if (n === this._lastPending) return;
    this._lastPending = n;
    this.emit('pending', n);
  }

  _setState(state, detail) {
    if (this.state === state) return;
    const prev = this.state;
    this.state = state;
    this.emit('state', state, { previous: prev, ...detail });
  }

  // ---- connection -------------------------------------------------------

  async _connect() {
    let token = this.options.token;
    try {
      if (typeof token === 'function') token = await token();
    } catch (err) {
      this.emit('error', new ChorusError('unauthorized', `could not get a token: ${err && err.message}`));
      this._scheduleReconnect();
      return;
    }
    if (this.state === 'closed') return;
    const u = new URL(this.url);
    if (this.options.user != null) u.searchParams.set('user', this.options.user);
    if (this.options.name != null) u.searchParams.set('name', this.options.name);
    const protocols = ['chorus.v1'];
    if (token) protocols.push('chorus.token.' + token);
    let ws;
    try {
      ws = new this._WebSocket(u.toString(), protocols);
    } catch (err) {
      this.emit('error', new ChorusError('connect_failed', String(err && err.message)));
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      // `batch`: several server messages may come in one frame, as an array.
      ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, client: SDK_NAME, batch: true }));
    };
    if (typeof ws.on === 'function' && typeof ws.off === 'function') {
      // Node's `ws` hands a frame to its own 'message' listeners as it is;
      // `onmessage` would wrap each one in a MessageEvent first, and a
      // document under load receives a frame for every op anyone commits.
      const onMessage = (data, isBinary) => this._onFrame(ws, isBinary ? data : data.toString());
      ws.on('message', onMessage);
      this._detach = () => ws.off('message', onMessage);
    } else {
      ws.onmessage = (ev) => this._onFrame(ws, ev.data);
      this._detach = null;
    }
    ws.onclose = (ev) => this._onSocketClosed(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows
    this._handshakeTimer = setTimeout(() => {
      if (ws === this._ws && !this._welcomed) this._drop('no welcome from the server');
    }, HANDSHAKE_TIMEOUT_MS);
  }

  /** Takes the client's listeners off `ws`: nothing it still delivers reaches the client. */
  _unhook(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this._detach) this._detach();
  }

  /** Abandons the current socket at once, as if the network had failed. */
  _drop(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._unhook(ws);
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(1000, reason);
    } catch {
      // already closed
    }
    this._onSocketClosed(ws, 1006, reason);
  }

  _onSocketClosed(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._welcomed = false;
    clearTimeout(this._handshakeTimer);
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._rateTimer);
    clearTimeout(this._tokenTimer);
    this._heartbeatTimer = this._rateTimer = this._tokenTimer = null;
    this._heartbeatId = null;
    this.connection = null;
    if (code === MESSAGE_TOO_BIG) {
      // A frame of ours was over the limit (the SDK keeps its frames within
      // the limit it was told, so the limit must have changed). Resending
      // the op in flight would only close the connection again: drop what is
      // pending and take the server's text on reopening.
      for (const room of this._rooms.values()) {
        for (const doc of room.docs.values()) if (doc._inflight) doc._dropPending = true;
      }
    }
    for (const room of this._rooms.values()) room._disconnected();
    const requests = [...this._requests.values()];
    this._requests.clear();
    for (const r of requests) if (r.onDisconnect) r.onDisconnect();
    if (this.state === 'closed') return;
    const fatal = FATAL_CLOSE.has(code) && !(code === 4001 && typeof this.options.token === 'function');
    if (!this.options.reconnect || fatal) {
      this._close(new ChorusError('closed', `the connection closed (${code}${reason ? ': ' + reason : ''})`), { code, reason });
      return;
    }
    this._setState(this._everOpen ? 'reconnecting' : 'connecting', { code, reason });
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this.state === 'closed' || this._reconnectTimer) return;
    const { reconnectBaseMs: base, reconnectMaxMs: max } = this.options;
    const cap = Math.min(max, base * 2 ** Math.min(this._attempt, 30));
    let delay = Math.random() * cap; // full jitter
    if (this._retryAfterMs) delay = Math.max(delay, this._retryAfterMs);
    this._retryAfterMs = 0;
    this._attempt++;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._connect();
    }, delay);
  }

  /** Closes the connection for good; rooms and documents stop. */
  close() {
    outsideEvents(() => this._closeForGood());
  }

  _closeForGood() {
    if (this.state === 'closed') return;
    const ws = this._ws;
    this._close(new ChorusError('closed', 'the client was closed'), { code: 1000, reason: 'closed by the client' });
    if (ws) {
      this._unhook(ws);
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
      // A server that never answers the close frame must not keep the
      // socket (and a Node process) alive: cut it after a second.
      if (typeof ws.terminate === 'function') {
        const timer = setTimeout(() => {
          try {
            ws.terminate();
          } catch {
            // already gone
          }
        }, 1000);
        if (typeof timer.unref === 'function') timer.unref();
      }
    }
  }

  _close(err, detail) {
    this._setState('closed', detail);
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._handshakeTimer);
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._rateTimer);
    clearTimeout(this._tokenTimer);
    this._reconnectTimer = this._heartbeatTimer = this._rateTimer = this._tokenTimer = null;
    this._ws = null;
    const requests = [...this._requests.values()];
    this._requests.clear();
    for (const r of requests) if (r.onDisconnect) r.onDisconnect();
    for (const room of [...this._rooms.values()]) room._shutdown(err);
    this._rooms.clear();
  }

  // ---- sending and requests ---------------------------------------------

  _takeId() {
    return this._nextId++;
  }

  /**
   * Sends a message if the connection is open; returns whether it went. A
   * frame over the server's `max_message_bytes` is never sent (the server
   * would close the connection): it is refused here with a
   * `message_too_large` error instead, which the request, if any, rejects with.
   */
  _send(msg) {
    const ws = this._ws;
    if (!ws || !this._welcomed || ws.readyState !== OPEN) return false;
    const frame = JSON.stringify(msg);
    const limit = this.session && this.session.limits && this.session.limits.max_message_bytes;
    // A UTF-16 unit is at most 3 bytes of UTF-8: most frames need no count.
    if (limit && frame.length * 3 > limit && utf8Length(frame) > limit) {
      const err = new ChorusError('message_too_large', `a ${msg.type} message of ${utf8Length(frame)} bytes is over the server's limit of ${limit}; it was not sent`, {
        id: msg.id,
        room: msg.room,
      });
      const r = this._take(msg.id);
      if (r && r.onError) r.onError(err);
      this.emit('error', err);
      return true; // answered (with the error): nothing to wait for
    }
    ws.send(frame);
    return true;
  }

  _register(id, handlers) {
    this._requests.set(id, handlers);
  }

  /**
   * Sends a request with an id and resolves with its reply. Rejected with
   * the server's error, or with `disconnected` if the connection drops
   * first (`onDisconnect: 'resolve'` resolves instead).
   */
  _request(msg, { onDisconnect = 'reject' } = {}) {
    return new Promise((resolve, reject) => {
      const id = this._takeId();
      this._register(id, {
        onReply: resolve,
        onError: reject,
        onDisconnect: () =>
          onDisconnect === 'resolve'
            ? resolve(null)
            : reject(new ChorusError('disconnected', `the connection dropped before the reply to ${msg.type}`)),
      });
      if (!this._send({ ...msg, id })) {
        this._requests.delete(id);
        if (onDisconnect === 'resolve') resolve(null);
        else reject(new ChorusError('disconnected', `not connected: ${msg.type} was not sent`));
      }
    });
  }

  _take(id) {
    if (id == null) return undefined;
    const r = this._requests.get(id);
    if (r) this._requests.delete(id);
    return r;
  }

  // ---- receiving --------------------------------------------------------

  _onFrame(ws, data) {
    if (ws !== this._ws) return;
    let msg;
    try {
      msg = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    if (!Array.isArray(msg)) return this._onMessage(msg);
    // An array frame: its messages, in order, each as if it came alone. One
    // of them may end this socket's turn (a reconnect): the rest are then
    // dropped, as later frames would be.
    for (let i = 0; i < msg.length && ws === this._ws; i++) this._onMessage(msg[i]);
  }

  _onMessage(msg) {
    if (!msg) return;
    const type = msg.type;
    // Nearly every message of a busy room is one of these three: tested
    // before the rest, each with one lookup of its room.
    if (type === 'op') {
      const room = this._rooms.get(msg.room);
      const doc = room && room.docs.get(msg.doc);
      return doc && doc._onOp(msg);
    }
    if (type === 'cursor') {
      const room = this._rooms.get(msg.room);
      return room && room._onCursor(msg);
    }
    if (type === 'ack') {
      this._take(msg.id);
      const room = this._rooms.get(msg.room);
      const doc = room && room.docs.get(msg.doc);
      return doc && doc._onAck(msg);
    }
    if (typeof type !== 'string') return;
    const room = msg.room != null ? this._rooms.get(msg.room) : undefined;
    switch (type) {
      case 'welcome':
        return this._onWelcome(msg);
      case 'joined': {
        if (msg.id != null) {
          const r = this._take(msg.id);
          if (r && r.onReply) r.onReply(msg);
        } else if (room) {
          room._onJoined(msg, false);
        }
        return;
      }
      case 'left': {
        if (msg.id != null) {
          const r = this._take(msg.id);
          if (r && r.onReply) r.onReply(msg);
        } else if (room && msg.reason === 'expired') {
          room._onExpired();
        } else if (room && msg.reason === 'forbidden') {
          room._onForbidden();
        }
        return;
      }
      case 'member_joined':
        return room && room._onMemberJoined(msg);
      case 'member_left':
        return room && room._onMemberLeft(msg);
      case 'presence':
        return room && room._onPresence(msg);
      case 'value':
        return room && room._onValue(msg);
      case 'opened': {
        this._take(msg.id);
        const doc = room && room.docs.get(msg.doc);
        return doc && doc._onOpened(msg);
      }
      case 'heartbeat':
        if (msg.id != null && msg.id === this._heartbeatId) this._heartbeatId = null;
        return;
      case 'authenticated':
        this._take(msg.id);
        this.session = { ...this.session, token_expires_at: msg.token_expires_at };
        this._scheduleTokenRefresh(msg.token_expires_at);
        return;
      case 'error':
        return this._onError(msg);
      case 'shutdown':
        this._retryAfterMs = Number(msg.reconnect_after_ms) || 0;
        return;
      default: {
        // doc_closed, value_updated, undo_result and any later reply type.
        const r = this._take(msg.id);
        if (r && r.onReply) r.onReply(msg);
      }
    }
  }

  _onWelcome(msg) {
    clearTimeout(this._handshakeTimer);
    this._welcomed = true;
    this._attempt = 0;
    this.connection = msg.connection;
    this.user = msg.user;
    const { type, ...session } = msg;
    this.session = session;
    this._everOpen = true;
    this._setState('open');
    this.emit('welcome', session);
    const every = Number(msg.heartbeat_ms);
    if (every > 0) this._heartbeatTimer = setInterval(() => this._heartbeat(), every);
    this._scheduleTokenRefresh(msg.token_expires_at);
    for (const room of this._rooms.values()) room._rejoin();
  }

  /**
   * A token expires on an open connection too: with a token function, ask it
   * again halfway through the token's remaining life (at most a minute
   * before `expiresAt`) and send the fresh token as `auth`. The server's
   * `authenticated` schedules the next refresh; without one (the function
   * failed, the token was refused) the next try comes a few seconds later.
   */
  _scheduleTokenRefresh(expiresAt) {
    clearTimeout(this._tokenTimer);
    this._tokenTimer = null;
    if (expiresAt == null || typeof this.options.token !== 'function') return;
    const left = Math.max(0, Number(expiresAt) - Date.now());
    const delay = left - Math.min(left / 2, 60000);
    const ws = this._ws;
    this._tokenTimer = setTimeout(async () => {
      this._tokenTimer = null;
      let token;
      try {
        token = await this.options.token();
      } catch (err) {
        this.emit('error', new ChorusError('unauthorized', `could not get a fresh token: ${err && err.message}`));
      }
      if (ws !== this._ws || this.state !== 'open') return;
      if (token) this._send({ type: 'auth', id: this._takeId(), token });
      if (!this._tokenTimer && left > 0) {
        this._tokenTimer = setTimeout(() => this._scheduleTokenRefresh(expiresAt), Math.min(5000, left / 4));
      }
    }, delay);
    if (typeof this._tokenTimer.unref === 'function') this._tokenTimer.unref();
  }

  /** Keeps presence alive; a heartbeat unanswered for a whole interval means the link is dead. */
  _heartbeat() {
    if (this._heartbeatId !== null) {
      this._drop('no answer to a heartbeat');
      return;
    }
    const id = this._takeId();
    this._heartbeatId = id;
    this._send({ type: 'heartbeat', id });
  }

  _onError(msg) {
    const err = new ChorusError(msg.code, msg.message, { id: msg.id, room: msg.room });
    const r = this._take(msg.id);
    if (r && r.onError) r.onError(err);
    if (msg.code === 'rate_limited') this._afterRateLimit();
    this.emit('error', err);
  }

  /**
   * A message was dropped unanswered: resend, after a pause, what would
   * otherwise wait forever (ops in flight, the latest cursor). The server
   * says `rate_limited` at most once a second, so a resent op that is
   * dropped again may go unmentioned: while ops are in flight, keep looking
   * every second and resend each one that has waited that long (the server
   * acknowledges a seq once, however often it arrives).
   */
  _afterRateLimit() {
    if (this._rateTimer) return;
    let first = true;
    const tick = () => {
      this._rateTimer = null;
      let waiting = false;
      for (const room of this._rooms.values()) {
        if (!room._live) continue;
        for (const doc of room.docs.values()) {
          if (!doc._inflight) continue;
          waiting = true;
          if (Date.now() - (doc._inflight.sentAt || 0) >= RATE_LIMIT_PAUSE_MS) doc._sendInflight();
        }
        if (first && room._cursorMsg) this._send(room._cursorMsg);
      }
      first = false;
      if (waiting && this.state === 'open') this._rateTimer = setTimeout(tick, RATE_LIMIT_PAUSE_MS);
    };
    this._rateTimer = setTimeout(tick, RATE_LIMIT_PAUSE_MS);
  }

  // ---- rooms --------------------------------------------------------------

  /** Joins a room (with an optional presence state); resolves once joined. */
  join(name, presence) {
    return outsideEvents(() => this._join(name, presence));
  }

  _join(name, presence) {
    if (this.state === 'closed') return Promise.reject(new ChorusError('closed', 'the client is closed'));
    let room = this._rooms.get(name);
    if (!room) {
      room = new Room(this, name, presence);
      this._rooms.set(name, room);
      if (this.state === 'open') room._rejoin();
    }
    return room._joinPromise;
  }

  /** A joined room, if any. */
  room(name) {
    return this._rooms.get(name);
  }
}

export default { connect };
