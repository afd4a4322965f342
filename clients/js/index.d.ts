// Type declarations for @chorus/client, the JavaScript SDK of Chorus.

/** Any JSON value (presence states, cursors, register values, ...). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectOptions {
  /** A JWT, or a function returning one (called before every connection attempt, and again before the token expires on an open connection, the fresh token sent as `auth`). Sent as the `chorus.token.<JWT>` subprotocol. */
  token?: string | (() => string | Promise<string>);
  /** Development mode only: the user id to claim (sent as `?user=`). */
  user?: string;
  /** Development mode only: the display name (sent as `?name=`). */
  name?: string;
  /** WebSocket constructor; defaults to `globalThis.WebSocket`. In Node 20 pass `ws`. */
  WebSocket?: new (url: string, protocols?: string | string[]) => any;
  /** Reconnect after a dropped connection (default true). */
  reconnect?: boolean;
  /** Backoff: full jitter over `min(reconnectMaxMs, reconnectBaseMs * 2^attempt)`. Defaults 250 and 10000. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** At most one cursor message per this many ms per room (default 50). */
  cursorThrottleMs?: number;
}

/** The user as the server knows it. */
export interface UserInfo {
  id: string;
  name?: string;
  avatar?: string;
  /** CSS colour, always present. */
  color: string;
}

export interface Limits {
  max_message_bytes: number;
  messages_per_second: number;
  rooms_per_connection: number;
  members_per_room: number;
  cursor_updates_per_second: number;
  max_op_bytes: number;
  max_document_bytes: number;
  documents_per_connection: number;
  max_value_bytes: number;
  values_per_room: number;
}

/** The server's `welcome` message (without `type`). */
export interface Welcome {
  protocol: number;
  server: string;
  connection: string;
  user: UserInfo;
  heartbeat_ms: number;
  presence_ttl_ms: number;
  /** When the token expires (ms since the epoch); with a token function the SDK sends a fresh one before then. */
  token_expires_at?: number;
  limits: Limits;
}

/** An error from the server (protocol error codes) or from the SDK (`disconnected`, `closed`, `not_open`, ...). */
export class ChorusError extends Error {
  constructor(code: string, message: string, details?: { id?: number; room?: string });
  readonly code: string;
  /** The request id the server echoed, if any. */
  readonly id?: number;
  /** The room the failed message named, if any. */
  readonly room?: string;
}

export interface StateChange {
  previous: ClientState;
  /** Close code and reason, when a connection ended. */
  code?: number;
  reason?: string;
}

export type Unsubscribe = () => void;

export class Client {
  readonly state: ClientState;
  /** The current connection's id (null while not connected); a new one after every reconnect. */
  readonly connection: string | null;
  readonly user: UserInfo | null;
  /** The current connection's welcome (limits, heartbeat interval, ...). */
  readonly session: Welcome | null;
  /** The WebSocket URL (a missing path becomes /v1/ws). */
  readonly url: string;
  readonly rooms: ReadonlyMap<string, Room>;

  /**
   * Changes waiting for the server: unacknowledged document edits and value
   * changes not yet stored (show "saving…" while above zero).
   */
  readonly pending: number;

  on(event: 'state', fn: (state: ClientState, change: StateChange) => void): Unsubscribe;
  on(event: 'error', fn: (error: ChorusError) => void): Unsubscribe;
  on(event: 'welcome', fn: (welcome: Welcome) => void): Unsubscribe;
  /** `pending` changed. */
  on(event: 'pending', fn: (pending: number) => void): Unsubscribe;
  once(event: 'state' | 'error' | 'welcome' | 'pending', fn: (...args: any[]) => void): Unsubscribe;
  off(event: string, fn: (...args: any[]) => void): void;

  /** Joins a room (or returns the already joined one); resolves once joined. */
  join(room: string, presence?: Json): Promise<Room>;
  /** A joined room. */
  room(name: string): Room | undefined;
  /** Closes the connection for good. */
  close(): void;
}

/** Connects at once and returns the client (state 'connecting'). */
export function connect(url: string, options?: ConnectOptions): Client;

export interface Member {
  connection: string;
  user: UserInfo;
  state: Json;
  /** Milliseconds since the epoch. */
  joined_at: number;
}

export interface PresenceEvent {
  connection: string;
  user: UserInfo | null;
  state: Json;
}

/** Another connection's cursor. */
export interface CursorState {
  connection: string;
  /** The member's user (just `{id}` if the member is not known yet). */
  user: UserInfo | { id: string };
  /** `null` in a 'cursor' event means hidden (the entry is then gone from `room.cursors`). */
  cursor: { [key: string]: Json } | null;
  doc?: string;
  version?: number;
}

export interface CursorOptions {
  /** The document the cursor is in (for text selections). */
  doc?: string;
  /** The document version the positions refer to. */
  version?: number;
}

export type ValueKind = 'register' | 'g_counter' | 'pn_counter' | 'or_set' | 'lww_map';

export type ValueChange =
  | { op: 'set'; value: Json }
  | { op: 'increment'; by: number }
  | { op: 'add'; element: string }
  | { op: 'remove'; element: string }
  | { op: 'map_set'; key: string; value: Json }
  | { op: 'map_delete'; key: string };

export interface ValueState {
  kind: ValueKind;
  /** The number of changes stored for this value. */
  version: number;
  /** A register's value, a counter's number, a set's sorted elements, a map's object. */
  value: Json;
}

export interface ValueEvent {
  name: string;
  kind: ValueKind;
  /** 0 when `removed`. */
  version: number;
  /** `undefined` when `removed`. */
  value: Json | undefined;
  /** True when the room no longer has the value (a resync found it gone: the server lost its store, say). */
  removed?: true;
}

export class Room {
  readonly client: Client;
  readonly name: string;
  /** Members (connections), oldest join first, this connection included. */
  readonly members: Member[];
  /** Other connections' visible cursors, by connection id. */
  readonly cursors: ReadonlyMap<string, CursorState>;
  /** Shared values by name. */
  readonly values: ReadonlyMap<string, ValueState>;
  /** Open documents by name. */
  readonly docs: ReadonlyMap<string, TextDoc>;
  /** This connection's presence state. */
  readonly presence: Json;
  readonly left: boolean;

  /** Any change to `members` (joins, leaves, presence states, resyncs). */
  on(event: 'members', fn: (members: Member[]) => void): Unsubscribe;
  /** Another member replaced its presence state. */
  on(event: 'presence', fn: (event: PresenceEvent) => void): Unsubscribe;
  /** Another connection's cursor moved, or was hidden (`cursor: null`). */
  on(event: 'cursor', fn: (cursor: CursorState) => void): Unsubscribe;
  /** A shared value's new state, or its removal (`removed: true`). */
  on(event: 'value', fn: (value: ValueEvent) => void): Unsubscribe;
  /** The room could not be joined again after a reconnect. */
  on(event: 'error', fn: (error: ChorusError) => void): Unsubscribe;
  once(event: string, fn: (...args: any[]) => void): Unsubscribe;
  off(event: string, fn: (...args: any[]) => void): void;

  /** Replaces this connection's presence state (the whole value). */
  setPresence(state: Json): void;
  /** Moves this connection's cursor (`null` hides it); throttled, the latest always sent. */
  setCursor(cursor: { [key: string]: Json } | null, options?: CursorOptions): void;
  /** Changes a shared value; resolves to the version stored. */
  updateValue(name: string, kind: ValueKind, change: ValueChange): Promise<number>;
  /** Opens a text document (or returns the open one). */
  openDoc(name: string): Promise<TextDoc>;
  /** Leaves the room; its documents close. */
  leave(): Promise<void>;
}

/** One edit in UTF-16 offsets; the edits of one change apply in order. */
export type TextEdit =
  | { type: 'insert'; index: number; text: string }
  | { type: 'delete'; index: number; length: number };

/**
 * A replacement of the UTF-16 range `from`..`to` of the text *before* the
 * change by `insert`. The replacements of one change are ascending and do
 * not overlap, so an editor applies them all as one transaction (in
 * CodeMirror: `view.dispatch({changes})`).
 */
export interface TextChange {
  from: number;
  to: number;
  insert: string;
}

export interface ChangeEvent {
  /** False for this client's own edits (already in the editor). */
  remote: boolean;
  /** The change as replacements, every position in the text before it. */
  changes: TextChange[];
  /** The same change as sequential steps, each relative to the text the steps before it left. */
  ops: TextEdit[];
  /** The document version after the change (for local edits: the last server version). */
  version: number;
  /** For remote changes: the submitter's client id (`<user>~history` for undo and redo). */
  client?: string;
  /** True when the server's text replaced the local one (see the 'reset' event); `changes` is the part that differs. */
  reset?: boolean;
  /** True for the op of an undo or redo this client asked for (an editor puts the caret there). */
  undo?: boolean;
}

export interface ResetEvent {
  /**
   * From the server: 'trimmed' (its log no longer reaches back), 'epoch'
   * (the document's log is a new incarnation), 'ahead' (this client was
   * ahead of the document), 'diverged' (the store lost ops this client had
   * seen); or 'resync' when the SDK reloaded the text itself (after an op
   * the server refused for good).
   */
  reason: string;
  /** Local edits dropped because they could not be placed in the new text. */
  lostEdits: number;
  text: string;
  version: number;
}

export interface RemoteSelection {
  connection: string;
  user: UserInfo | { id: string };
  /** UTF-16 offsets into the current local text. */
  anchor: number;
  head: number;
}

export class TextDoc {
  readonly room: Room;
  readonly name: string;
  /** The id sent in `open_doc` (stable across reconnects). */
  readonly clientId: string;
  /** The submitter id the server records this client's ops under (`opened.client`), or `clientId` when the server does not say. */
  readonly submitter: string;
  readonly epoch: string | null;
  /** The server's fingerprint of the document's history at `version`, when it sends one; sent back on reopening. */
  readonly digest: string | null;
  /** The local text, with pending edits applied (built on the first read after a change). */
  readonly text: string;
  /** The local text's length in UTF-16 code units (the unit of every position here): `text.length`, without building the text. */
  readonly length: number;
  /** The last server version applied. */
  readonly version: number;
  /** Local edits not yet acknowledged. */
  readonly pending: number;
  readonly closed: boolean;
  /** Times the server replaced the whole text, and the local edits that dropped. */
  readonly resets: number;
  readonly lostEdits: number;

  on(event: 'change', fn: (change: ChangeEvent) => void): Unsubscribe;
  on(event: 'selections', fn: (selections: RemoteSelection[]) => void): Unsubscribe;
  on(event: 'reset', fn: (reset: ResetEvent) => void): Unsubscribe;
  /** `pending` changed. */
  on(event: 'pending', fn: (pending: number) => void): Unsubscribe;
  /**
   * An edit was refused: here, before anything was sent (`document_too_large`:
   * it was not applied), or by the server for good (the document then
   * resets to the server's text).
   */
  on(event: 'error', fn: (error: ChorusError) => void): Unsubscribe;
  once(event: string, fn: (...args: any[]) => void): Unsubscribe;
  off(event: string, fn: (...args: any[]) => void): void;

  /**
   * Inserts at a UTF-16 offset. Throws RangeError inside a surrogate pair or
   * out of range, and a ChorusError `document_too_large` (nothing applied)
   * when the result would be over the server's document limit.
   */
  insert(index: number, text: string): void;
  /** Deletes `length` UTF-16 code units at `index`. */
  delete(index: number, length: number): void;
  /** Deletes and inserts at `index` as one edit. */
  replace(index: number, length: number, text?: string): void;
  /**
   * Several replacements as one edit; positions are UTF-16 offsets of the
   * current text, ascending, not overlapping. Throws a RangeError for a bad
   * range and a ChorusError `document_too_large` (nothing applied) when the
   * result would be over the server's document limit.
   */
  change(changes: TextChange[]): void;
  /** This connection's selection (UTF-16 offsets); `null` hides it. */
  setSelection(anchor: number | null, head?: number): void;
  /** Other connections' selections in this document, in UTF-16 offsets of the local text. */
  remoteSelections(): RemoteSelection[];
  /** Takes back this user's latest step (own edits only); resolves to whether anything changed. */
  undo(): Promise<boolean>;
  /** Puts back what the latest undo took back. */
  redo(): Promise<boolean>;
  /** Resolves when no local edit is pending. */
  synced(): Promise<void>;
  /** Stops receiving the document. */
  close(): Promise<void>;
}

/** The code point offset of a UTF-16 offset (throws inside a surrogate pair). */
export function toCodePoints(text: string, index: number): number;
/** The UTF-16 offset of a code point offset (clamped to the text). */
export function toUtf16(text: string, codePoints: number): number;
/** `text` with `changes` (ascending, offsets in `text`) applied: what a change event does to the text. */
export function applyChanges(text: string, changes: TextChange[]): string;
/** The one replacement turning `before` into `after` (common prefix and suffix kept); null when equal. */
export function diffText(before: string, after: string): TextChange | null;

/**
 * The position mapping between a Chorus text and an editor that reads every
 * line break ("\r\n", "\r", "\n") as one position (CodeMirror, a textarea).
 */
export interface LineMapping {
  /** True when positions are the same on both sides (no "\r\n" in the text). */
  identity: boolean;
  /** The offsets of the "\r" of every "\r\n" pair. */
  pairs: number[];
  /** The editor position of a UTF-16 offset of the text. */
  toEditor(offset: number): number;
  /** The UTF-16 offset of the text of an editor position. */
  toChorus(position: number): number;
  /** What a new line break is in this text: "\r\n" when it already has them, else "\n". */
  lineBreak: string;
}

export function lineMapping(text: string): LineMapping;
/** `text` with every line break as one "\n", as editors hold it. */
export function normalizeLineBreaks(text: string): string;
/** Editor changes for changes of the document `text` (widened so no "\r\n" pair is split). */
export function editorChanges(text: string, changes: TextChange[], mapping?: LineMapping): TextChange[];
/** Document changes for editor changes (`lines`: the inserted lines) of the editor showing `text`. */
export function chorusChanges(text: string, changes: { from: number; to: number; lines: string[] }[], mapping?: LineMapping): TextChange[];

export const PROTOCOL_VERSION: 1;

declare const _default: { connect: typeof connect };
export default _default;
