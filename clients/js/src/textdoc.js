// A shared text document as one client holds it: the local text (with this
// client's unacknowledged edits applied), the OT client state machine (one op
// in flight, later edits composed into a buffer, server ops transformed past
// both), and recovery after a dropped connection (reopen with `since`,
// recognise our own op in the catch-up as its ack, resubmit what is still in
// flight under the same seq).
//
// The server's limits (from `welcome`) shape what is sent: an edit that would
// take the document past `max_document_bytes` is refused here, at once, and
// never applied; anything else is sent in ops that fit `max_op_bytes` and
// `max_message_bytes`, so a large paste travels as several ops, one after
// the other, and arrives whole.

import { Emitter, eventsWait, outsideEvents } from './emitter.js';
import { ChorusError } from './errors.js';
import { compose, opFromChanges, splitOp, transform, transformPosition } from './ot.js';
import { RecentOps } from './recent.js';
import { Rope } from './rope.js';
import { diffText, isWellFormed, utf8Length } from './units.js';

/** First and longest pause before resubmitting after `unavailable`. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 2000;
/** Bytes of a submit frame besides its op, kept free when cutting ops to size. */
const FRAME_SLACK = 64;

function randomId() {
  const bytes = new Uint8Array(9);
  if (globalThis.crypto && typeof globalThis.crypto.getRandomValues === 'function') {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return 'js-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

class OutOfStep extends Error {}

export class TextDoc extends Emitter {
  /** @param {import('./room.js').Room} room */
  constructor(room, name) {
    super();
    this.room = room;
    this.name = name;
    /** The id sent in `open_doc` (kept across reconnects). */
    this.clientId = randomId();
    /**
     * The submitter id the server records this client's ops under, when the
     * server says (`opened.client`); until then, `clientId`. Our own ops are
     * recognised by it.
     */
    this.submitter = this.clientId;
    this.epoch = null;
    /** The fingerprint of the server's history at `version`, when the server sends one. */
    this.digest = null;
    /** The local text: a Rope, so an op or a position costs the same on any size of text. */
    this._rope = new Rope('');
    this._bytes = 0; // UTF-8 size of the text
    this._version = 0;
    this._nextSeq = 1;
    /** @type {{seq:number, base:number, op:any[], edits:number} | null} */
    this._inflight = null;
    /** @type {{op:any[], edits:number} | null} */
    this._buffer = null;
    this._lastAcked = 0;
    this._lastPending = 0;
    /** The last server ops, to place remote selections tagged with older versions. */
    this._recent = new RecentOps();
    this._live = false; // opened on the current connection
    this._opened = false; // opened at least once
    this._closed = false;
    this._openId = null;
    this._retryMs = RETRY_FIRST_MS;
    this._retryTimer = null;
    /** The limits `_opBudget` was worked out for. */
    this._budgetFor = null;
    this._opBudget = null;
    /** Reopen without `since` (dropping what is pending): our op cannot be sent as it is. */
    this._dropPending = false;
    /** Undo and redo requests waiting for their answer. */
    this._historyRequests = 0;
    /** Local selection (code points) waiting for our edits to be acknowledged. */
    this._pendingSelection = null;
    this._syncWaiters = [];
    this._liveWaiters = [];
    this.resets = 0;
    this.lostEdits = 0;
    this._openPromise = new Promise((resolve, reject) => {
      this._openResolve = resolve;
      this._openReject = reject;
    });
    this._openPromise.catch(() => {});
  }

  get client() {
    return this.room.client;
  }

  /** The local text, with this client's pending edits applied. */
  get text() {
    return this._rope.toString();
  }

  /**
   * The local text's length in UTF-16 code units, the unit of every position
   * the SDK takes and gives (`insert`, `change`, `setSelection`,
   * `remoteSelections`): `doc.length === doc.text.length`, without building
   * the text.
   */
  get length() {
    return this._rope.length;
  }

  /** The last server version applied. */
  get version() {
    return this._version;
  }

  /** Local edits not yet acknowledged by the server. */
  get pending() {
    return (this._inflight ? this._inflight.edits : 0) + (this._buffer ? this._buffer.edits : 0);
  }

  get closed() {
    return this._closed;
  }

  // ---- local edits -------------------------------------------------------

  /** Inserts `text` at UTF-16 offset `index`. */
  insert(index, text) {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    this.change([{ from: index, to: index, insert: text }]);
  }

  /** Deletes `length` UTF-16 code units at UTF-16 offset `index`. */
  delete(index, length) {
    this.replace(index, length, '');
  }

  /** Replaces `length` UTF-16 code units at `index` with `text` (one op). */
  replace(index, length, text = '') {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`invalid length ${length}`);
    this.change([{ from: index, to: index + length, insert: text }]);
  }

  /**
   * Applies several replacements as one edit: `changes` are `{from, to,
   * insert}`, ascending and not overlapping, every position a UTF-16 offset
   * in the current text (what CodeMirror's `iterChanges` gives). Throws a
   * RangeError for a bad range, and a ChorusError (`document_too_large`),
   * after an 'error' event, when the result would not fit the server's
   * document limit; nothing is changed then.
   */
  change(changes) {
    return outsideEvents(() => {
      this._checkOpen();
      for (const c of changes) {
        if (typeof c.insert === 'string' && !isWellFormed(c.insert)) throw new RangeError('text contains a lone surrogate');
      }
      const op = opFromChanges(this._rope, changes);
      if (op.length > 0) this._local(op);
    });
  }

  _limits() {
    const session = this.client.session;
    return (session && session.limits) || null;
  }

  _local(op) {
    const limits = this._limits();
    if (limits) {
      // Measured before anything changes: a refused edit leaves the text as it was.
      const bytes = this._rope.bytesChange(op);
      if (this._bytes + bytes > limits.max_document_bytes && bytes > 0) {
        const err = new ChorusError(
          'document_too_large',
          `the edit would make document ${this.name} ${this._bytes + bytes} bytes; the server's limit is ${limits.max_document_bytes}`,
        );
        this.emit('error', err);
        throw err;
      }
    }
    const applied = this._rope.apply(op);
    this._bytes += applied.bytes;
    if (this._pendingSelection) this._pendingSelection = this._moveSelection(this._pendingSelection, op, true);
    this._buffer = this._buffer ? { op: compose(this._buffer.op, op), edits: this._buffer.edits + 1 } : { op, edits: 1 };
    if (!this._inflight) this._promote();
    this.emit('change', { remote: false, changes: applied.changes, ops: applied.edits, version: this._version });
    this._pendingChanged();
    this._emitSelections();
  }

  /**
   * Moves the buffer into flight (nothing is in flight): whole if it fits
   * the server's limits, else its first part that does, the rest staying
   * buffered for the next turn.
   */
  _promote() {
    const b = this._buffer;
    if (!b || this._inflight) return;
    let op = b.op;
    let rest = null;
    const limits = this._limits();
    if (limits) {
      const split = splitOp(op, this._budget(limits));
      if (split === null) {
        // Not one code point fits (absurdly small limits): refuse it here
        // rather than send what the server must refuse.
        const err = new ChorusError('op_too_large', `an edit of document ${this.name} cannot be cut to fit the server's limits`);
        this.emit('error', err);
        this._reopen(true);
        return;
      }
      op = split.first;
      rest = split.rest;
    }
    // The buffered edits count as pending until their last part is in.
    this._inflight = { seq: this._nextSeq++, base: this._version, op, edits: rest ? 0 : b.edits };
    this._buffer = rest ? { op: rest, edits: b.edits } : null;
    this._sendInflight();
  }

  /** What one submitted op may take under `limits` (worked out once per set of limits). */
  _budget(limits) {
    if (this._budgetFor !== limits) {
      const envelope = JSON.stringify({
        type: 'submit',
        id: 2 ** 40,
        room: this.room.name,
        doc: this.name,
        seq: 2 ** 40,
        base: 2 ** 40,
        op: [],
      });
      this._budgetFor = limits;
      this._opBudget = { op: limits.max_op_bytes, json: limits.max_message_bytes - utf8Length(envelope) - FRAME_SLACK };
    }
    return this._opBudget;
  }

  _sendInflight() {
    const s = this._inflight;
    if (!s || !this._live || this._closed) return;
    const client = this.client;
    const id = client._takeId();
    client._register(id, {
      onError: (err) => this._onSubmitError(err, s.seq),
    });
    s.sentAt = Date.now();
    client._send({ type: 'submit', id, room: this.room.name, doc: this.name, seq: s.seq, base: s.base, op: s.op });
  }

  _onSubmitError(err, seq) {
    if (!this._inflight || this._inflight.seq !== seq || this._closed) return;
    switch (err.code) {
      case 'unavailable':
        // The server could not commit; resubmit after a pause (the server
        // acknowledges the seq once, whatever happened to the first try).
        this._scheduleResubmit();
        return;
      case 'not_open':
      case 'version_trimmed':
        this._reopen(false);
        return;
      case 'not_joined':
        this.room._rejoin();
        return;
      default:
        // The op can never be committed (invalid, too large, not allowed):
        // take the server's text and drop what is pending, once; resending
        // it would only be refused again.
        this.emit('error', err);
        this._reopen(true);
    }
  }

  _scheduleResubmit() {
    if (this._retryTimer) return;
    const delay = this._retryMs;
    this._retryMs = Math.min(this._retryMs * 2, RETRY_MAX_MS);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._sendInflight();
    }, delay);
  }

  /** Emits 'pending' when the number of unacknowledged edits changed. */
  _pendingChanged() {
    const n = this.pending;
    if (n === this._lastPending) return;
    this._lastPending = n;
    this.emit('pending', n);
    this.client._pendingChanged();
  }

  // ---- opening and recovery ---------------------------------------------

  /** Sends open_doc: with `since` when we have a state, unless `full`. */
  _open(full = false) {
    if (this._closed || !this.room._live) return;
    const client = this.client;
    const id = client._takeId();
    this._openId = id;
    this._live = false;
    const msg = { type: 'open_doc', id, room: this.room.name, doc: this.name, client: this.clientId, undo: true };
    if (!full && !this._dropPending && this._opened && this.epoch !== null) {
      msg.since = { epoch: this.epoch, version: this._version };
      if (this.digest) msg.since.digest = this.digest;
    }
    client._register(id, {
      onError: (err) => this._onOpenError(err, id),
    });
    client._send(msg);
  }

  _reopen(full) {
    this._live = false;
    if (full) this._dropPending = true;
    this._open(full);
  }

  _onOpenError(err, id) {
    if (id !== this._openId || this._closed) return;
    if (!this._opened) {
      this._openReject(err);
      this.room._forgetDoc(this);
      this._closed = true;
      return;
    }
    if (err.code === 'not_joined') this.room._rejoin();
    else if (err.code === 'unavailable') setTimeout(() => this._open(false), 500);
    else this.emit('error', err);
  }

  _onOpened(msg) {
    if (this._closed) return;
    if (msg.id != null && msg.id !== this._openId) return; // an older request's reply
    if (typeof msg.client === 'string' && msg.client !== '') this.submitter = msg.client;
    if (typeof msg.text === 'string') {
      const old = this._rope.toString();
      const hadState = this._opened;
      const lost = this.pending;
      this.epoch = msg.epoch;
      this.digest = msg.digest || null;
      this._rope = new Rope(msg.text);
      this._bytes = utf8Length(msg.text);
      this._version = msg.version;
      this._inflight = null;
      this._buffer = null;
      this._recent.clear();
      this._pendingSelection = null;
      this._dropPending = false;
      if (hadState) {
        this.resets++;
        this.lostEdits += lost;
        // Only the part that differs is replaced, so carets elsewhere stay put.
        const diff = diffText(old, msg.text);
        if (diff) {
          const ops = [];
          if (diff.to > diff.from) ops.push({ type: 'delete', index: diff.from, length: diff.to - diff.from });
          if (diff.insert) ops.push({ type: 'insert', index: diff.from, text: diff.insert });
          this.emit('change', { remote: true, reset: true, changes: [diff], ops, version: this._version });
        }
        this.emit('reset', { reason: msg.reset || 'resync', lostEdits: lost, text: msg.text, version: this._version });
      }
    } else {
      if (msg.epoch !== this.epoch) {
        // At version 0 nothing of ours was acknowledged, and every
        // incarnation starts from the empty text our pending edits were made
        // on: they carry on in the new one. Past 0, our versions name ops of
        // the old one.
        if (this._version !== 0) return this._reopen(true);
        this.epoch = msg.epoch;
      }
      try {
        for (const entry of msg.ops || []) this._committed(entry);
      } catch (err) {
        return this._reopen(!(err instanceof OutOfStep));
      }
      if (this._version < msg.version) return this._reopen(true);
      if (msg.digest) this.digest = msg.digest;
    }
    this._live = true;
    this._retryMs = RETRY_FIRST_MS;
    if (!this._opened) {
      this._opened = true;
      this._openResolve(this);
    }
    // Resubmit what is still in flight (same seq; acknowledged once), or
    // start on what was typed meanwhile.
    if (this._inflight) this._sendInflight();
    else this._promote();
    this._afterProgress();
    const waiters = this._liveWaiters;
    this._liveWaiters = [];
    for (const w of waiters) w.resolve();
    this._emitSelections();
  }

  _onAck(msg) {
    if (!this._opened || this._closed) return;
    try {
      this._ack(msg.seq, msg.version, msg.digest);
    } catch (err) {
      if (this._live) this._reopen(false);
    }
  }

  _onOp(msg) {
    if (!this._opened || this._closed) return;
    if (msg.version <= this._version) return;
    if (msg.version > this._version + 1) {
      // A gap: ask for what we missed (ignored while a reopen is pending).
      if (this._live) this._reopen(false);
      return;
    }
    try {
      this._committed(msg);
    } catch (err) {
      this._reopen(!(err instanceof OutOfStep));
    }
  }

  /** An op the server committed: ours (an ack) or someone else's. */
  _committed(entry) {
    if (entry.version <= this._version) return;
    if (entry.client === this.submitter) {
      this._ack(entry.seq, entry.version, entry.digest);
      return;
    }
    if (entry.version !== this._version + 1) {
      throw new OutOfStep(`expected version ${this._version + 1} next, got ${entry.version}`);
    }
    const op = entry.op;
    // Transform past our pending edits (pure: they change only once the op
    // has been applied, which may throw).
    const inflight = this._inflight;
    const buffer = this._buffer;
    let theirs = op;
    let mine = null;
    let buffered = null;
    if (inflight) {
      mine = transform(inflight.op, theirs, 'right');
      theirs = transform(theirs, inflight.op, 'left');
    }
    if (buffer) {
      buffered = transform(buffer.op, theirs, 'right');
      theirs = transform(theirs, buffer.op, 'left');
    }
    // What changed, in UTF-16 terms, only for someone to hear it: most
    // documents under load have no 'change' listener (a server-side client,
    // a bot), and describing each op was most of the garbage an op made.
    const describe = this.listenerCount('change') > 0 || eventsWait();
    const applied = this._rope.apply(theirs, describe); // throws, changing nothing, if it does not fit
    this._bytes += applied.bytes;
    if (inflight) {
      inflight.op = mine;
      inflight.base = entry.version;
    }
    if (buffer) buffer.op = buffered;
    this._version = entry.version;
    this.digest = entry.digest || null;
    this._recent.push(entry.version, op);
    if (this._pendingSelection) this._pendingSelection = this._moveSelection(this._pendingSelection, theirs, false);
    if (describe) {
      const change = { remote: true, changes: applied.changes, ops: applied.edits, version: entry.version, client: entry.client };
      // Our own undo or redo comes back as an op of the user's history
      // submitter, like anyone's; mark it so an editor can put the caret there.
      if (this._historyRequests > 0 && this._isOwnHistory(entry.client)) change.undo = true;
      this.emit('change', change);
    }
    this._emitSelections();
  }

  /**
   * Whether `submitter` is this user's undo history: `<user id>~history`,
   * or `h<length of the user id in UTF-8>:<user id>` on servers that keep
   * every submitter in a namespace of its own.
   */
  _isOwnHistory(submitter) {
    const user = this.client.user && this.client.user.id;
    if (typeof user !== 'string' || typeof submitter !== 'string') return false;
    return submitter === `${user}~history` || submitter === `h${utf8Length(user)}:${user}`;
  }

  _ack(seq, version, digest) {
    const s = this._inflight;
    if (s && s.seq === seq) {
      if (version !== this._version + 1) throw new OutOfStep(`ack of version ${version} at version ${this._version}`);
      this._recent.push(version, s.op);
      this._version = version;
      this.digest = digest || null;
      this._lastAcked = seq;
      this._retryMs = RETRY_FIRST_MS;
      this._inflight = null;
      this._promote();
      this._afterProgress();
      return;
    }
    // A second acknowledgement of an op (resubmitted while the first
    // submission was still being committed).
    if (seq <= this._lastAcked) return;
    throw new OutOfStep(`acknowledgement of op ${seq}, which is not in flight`);
  }

  /** Called when pending edits may have reached zero. */
  _afterProgress() {
    this._pendingChanged();
    if (this.pending !== 0) return;
    this._flushSelection();
    const waiters = this._syncWaiters;
    this._syncWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Resolves when every local edit is acknowledged (now, if none is pending). */
  synced() {
    if (this._closed) return Promise.reject(new ChorusError('closed', 'the document is closed'));
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this._syncWaiters.push({ resolve, reject }));
  }

  _whenLive() {
    if (this._closed) return Promise.reject(new ChorusError('closed', 'the document is closed'));
    if (this._live && this.client.state === 'open') return Promise.resolve();
    return new Promise((resolve, reject) => this._liveWaiters.push({ resolve, reject }));
  }

  /** Connection lost: everything waits for the reopen. */
  _disconnected() {
    this._live = false;
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  // ---- undo / redo ------------------------------------------------------

  /** Takes back this user's latest step; resolves to whether anything changed. */
  undo() {
    return this._historyRequest('undo');
  }

  /** Puts back what this user's latest undo took back. */
  redo() {
    return this._historyRequest('redo');
  }

  async _historyRequest(type) {
    this._checkOpen();
    this._historyRequests++;
    try {
      // The server's history holds committed edits only.
      await this.synced();
      await this._whenLive();
      const reply = await this.client._request({ type, room: this.room.name, doc: this.name });
      return reply.done === true;
    } finally {
      this._historyRequests--;
    }
  }

  // ---- selections -------------------------------------------------------

  /**
   * Shows this connection's selection (UTF-16 offsets of the local text) to
   * the room; `null` hides it. Sent in code points tagged with the document
   * version once no local edit is pending.
   */
  setSelection(anchor, head = anchor) {
    outsideEvents(() => {
      this._checkOpen();
      if (anchor === null) {
        this._pendingSelection = null;
        this.room.setCursor(null);
        return;
      }
      const a = this._rope.toCodePoints(anchor);
      const h = head === anchor ? a : this._rope.toCodePoints(head);
      this._pendingSelection = { anchor: a, head: h };
      this._flushSelection();
    });
  }

  _flushSelection() {
    const s = this._pendingSelection;
    if (!s || this.pending !== 0 || this._closed) return;
    this._pendingSelection = null;
    this.room.setCursor({ anchor: s.anchor, head: s.head }, { doc: this.name, version: this._version });
  }

  _moveSelection(s, op, own) {
    return { anchor: transformPosition(op, s.anchor, own), head: transformPosition(op, s.head, own) };
  }

  /** A remote selection made at server `version` placed in the local text (code points). */
  _place(version, anchor, head) {
    if (version > this._version) return null; // ahead of us: shown once we catch up
    let a = anchor;
    let h = head;
    if (version < this._version) {
      const recent = this._recent;
      if (recent.last !== this._version || !recent.keepsAfter(version)) return null; // older than what we remember
      a = recent.moveFrom(version, a);
      h = head === anchor ? a : recent.moveFrom(version, h);
    }
    for (const pending of [this._inflight, this._buffer]) {
      if (!pending) continue;
      a = transformPosition(pending.op, a, false);
      h = transformPosition(pending.op, h, false);
    }
    return { anchor: a, head: h };
  }

  /**
   * Other connections' selections in this document, as UTF-16 offsets of the
   * current local text.
   */
  remoteSelections() {
    const out = [];
    const rope = this._rope;
    const length = rope.codePoints;
    for (const c of this.room.cursors.values()) {
      if (c.doc !== this.name || !c.cursor || typeof c.cursor !== 'object') continue;
      const { anchor, head } = c.cursor;
      if (!Number.isInteger(anchor) || !Number.isInteger(head) || anchor < 0 || head < 0) continue;
      const placed = this._place(Number.isInteger(c.version) ? c.version : this._version, anchor, head);
      if (!placed) continue;
      const a = rope.toUtf16(Math.min(placed.anchor, length));
      // A caret (most selections) is one lookup.
      const h = placed.head === placed.anchor ? a : rope.toUtf16(Math.min(placed.head, length));
      out.push({ connection: c.connection, user: c.user, anchor: a, head: h });
    }
    return out;
  }

  _emitSelections() {
    if (this.listenerCount('selections') > 0) this.emit('selections', this.remoteSelections());
  }

  // ---- closing ----------------------------------------------------------

  /** Stops receiving this document's ops and forgets it. */
  async close() {
    if (this._closed) return;
    const live = this._live && this.client.state === 'open';
    outsideEvents(() => {
      this._shutdown(new ChorusError('closed', 'the document is closed'));
      this.room._forgetDoc(this);
    });
    if (live) {
      try {
        await this.client._request({ type: 'close_doc', room: this.room.name, doc: this.name }, { onDisconnect: 'resolve' });
      } catch (err) {
        if (err.code !== 'not_open' && err.code !== 'not_joined') throw err;
      }
    }
  }

  /** Marks the document closed and fails whatever waits on it. */
  _shutdown(err) {
    this._closed = true;
    this._live = false;
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (!this._opened) this._openReject(err);
    for (const w of this._syncWaiters.concat(this._liveWaiters)) w.reject(err);
    this._syncWaiters = [];
    this._liveWaiters = [];
    const hadPending = this._lastPending !== 0;
    this._inflight = null;
    this._buffer = null;
    this._lastPending = 0;
    if (hadPending) this.client._pendingChanged();
  }

  _checkOpen() {
    if (this._closed) throw new ChorusError('closed', `document ${this.name} is closed`);
    if (!this._opened) throw new ChorusError('not_open', `document ${this.name} is not open yet`);
  }
}
