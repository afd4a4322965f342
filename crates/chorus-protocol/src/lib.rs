//! The Chorus wire protocol: JSON text frames over one WebSocket per client.
//!
//! Every frame is one JSON object whose `"type"` names the message. A client
//! opens with `hello` (carrying [`PROTOCOL_VERSION`]); the server answers
//! `welcome`. Requests may carry a client-chosen `id`, echoed in the reply or
//! in the error they cause, so a client can match them. One connection can be
//! in many rooms; every room message names its room.
//!
//! Errors that reach a client carry a stable [`ErrorCode`] and a human
//! message; fatal ones are followed by a close frame with a [`close`] code.
//! docs/protocol.md documents every message with an example; the snapshot
//! tests below pin the exact JSON.

pub use chorus_core::crdt::{Change, ValueKind};
pub use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, UserInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use chorus_core::presence::Millis;

/// The protocol version a client must name in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket subprotocol a browser may ask for; a token may follow as a
/// second subprotocol `chorus.token.<JWT>`.
pub const SUBPROTOCOL: &str = "chorus.v1";
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "chorus.token.";

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on every connection.
    Hello {
        protocol: u32,
        /// Free-form client name and version, for logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// The client reads a text frame holding a JSON array of server
        /// messages as those messages, in order; the server may then send
        /// several in one frame.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        batch: bool,
    },
    /// Enter a room, optionally with initial presence state.
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Value>,
    },
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
    },
    /// Replace this connection's presence state in a room.
    Presence {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        state: Value,
    },
    /// Move (or, with `null`, hide) this connection's cursor in a room.
    Cursor {
        room: String,
        cursor: Value,
        /// The document the cursor is in, for text selections.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<String>,
        /// The document version the selection refers to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// A fresh token for this connection, sent before the current one
    /// expires; its permissions apply from then on. Answered with
    /// `authenticated`.
    Auth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        token: String,
    },
    /// Keeps this connection's presence alive; answered with `heartbeat`.
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// Open a text document in a joined room (created empty on first use).
    /// Answered with `opened`; every op after that version follows.
    OpenDoc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
        /// The submitter identity of this document's ops: stable across
        /// reconnects, so a resubmitted op is recognised. Defaults to the
        /// connection id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// Where a reconnecting client left off: it gets the ops after this
        /// instead of the whole text, when the log still reaches back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<DocPosition>,
        /// Keep this user's undo history of the document (see `undo`). It
        /// costs the server work for every op others commit, so clients
        /// that offer no undo leave it off.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        undo: bool,
    },
    /// Submit an op made against document version `base`.
    Submit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
        /// Increases with every new op of this client id; a resubmission
        /// repeats it.
        seq: u64,
        base: u64,
        /// An ot-text-unicode op (`[3, "hi", {"d": 2}]`) or a simple form
        /// (`{"insert": {"at": 3, "text": "hi"}}`, `{"delete": {"at": 3, "length": 2}}`).
        /// Kept as JSON here so a bad op gets its own error code.
        op: Value,
    },
    /// Stop receiving a document's ops.
    CloseDoc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
    },
    /// Change a shared value of a joined room, creating it as `kind` on
    /// first use. Answered with `value_updated`; everyone in the room
    /// (the sender too) gets the new `value`.
    UpdateValue {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        name: String,
        kind: ValueKind,
        change: Change,
    },
    /// Take back this user's latest step in an open document (their own
    /// edits only, whatever others typed since). Answered with `undo_result`;
    /// the op it commits reaches every reader as an `op`.
    Undo {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
    },
    /// Put back the step the user's latest undo took back.
    Redo {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
    },
}

/// A version of one incarnation of a document's log, with the digest of
/// the history up to it when the client knows it: a log that lost ops and
/// reused their version numbers for others is then told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPosition {
    pub epoch: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// Why `opened` carries the whole text although the client asked for the
/// ops since a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The log no longer reaches back to that version (it was trimmed
    /// behind a snapshot).
    Trimmed,
    /// The document's log is a different incarnation (the store lost it and
    /// it was created again); versions of the old one mean nothing here.
    Epoch,
    /// The version is ahead of the document.
    Ahead,
    /// The document's history up to that version is not the one the client
    /// saw: the store lost ops (restored from an older copy, say) and other
    /// ops took their versions.
    Diverged,
    /// The document was deleted; what follows is the new, empty document of
    /// that name (editing it creates it again).
    Deleted,
    /// A reason this client does not know (a newer server's): the text is
    /// still the document's, so the client takes it as any reset. Never sent.
    #[serde(other)]
    Other,
}

impl ClientMessage {
    /// The request id, if the message carries one.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientMessage::Join { id, .. }
            | ClientMessage::Leave { id, .. }
            | ClientMessage::Presence { id, .. }
            | ClientMessage::Heartbeat { id }
            | ClientMessage::Auth { id, .. }
            | ClientMessage::OpenDoc { id, .. }
            | ClientMessage::Submit { id, .. }
            | ClientMessage::CloseDoc { id, .. }
            | ClientMessage::UpdateValue { id, .. }
            | ClientMessage::Undo { id, .. }
            | ClientMessage::Redo { id, .. } => *id,
            ClientMessage::Hello { .. } | ClientMessage::Cursor { .. } => None,
        }
    }

    /// The room the message is about, if any.
    pub fn room(&self) -> Option<&str> {
        match self {
            ClientMessage::Join { room, .. }
            | ClientMessage::Leave { room, .. }
            | ClientMessage::Presence { room, .. }
            | ClientMessage::Cursor { room, .. }
            | ClientMessage::OpenDoc { room, .. }
            | ClientMessage::Submit { room, .. }
            | ClientMessage::CloseDoc { room, .. }
            | ClientMessage::UpdateValue { room, .. }
            | ClientMessage::Undo { room, .. }
            | ClientMessage::Redo { room, .. } => Some(room),
            ClientMessage::Hello { .. } | ClientMessage::Heartbeat { .. } | ClientMessage::Auth { .. } => None,
        }
    }
}

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The connection asked to leave.
    Left,
    /// The connection closed.
    Closed,
    /// No heartbeat within the presence TTL.
    Expired,
    /// A fresh token (`auth`) no longer grants the room.
    Forbidden,
    /// A reason this client does not know (a newer server's): the member is
    /// gone all the same. Never sent.
    #[serde(other)]
    Other,
}

/// A connection's cursor as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorState {
    pub connection: String,
    pub user: String,
    pub cursor: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Which way an `undo_result` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoAction {
    Undo,
    Redo,
}

/// A shared value as clients see it: its kind, how many changes it has
/// had, and its plain JSON form (a register's value, a counter's number, a
/// set's sorted elements, a map's object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueState {
    pub name: String,
    pub kind: ValueKind,
    pub version: u64,
    pub value: Value,
}

/// Limits the server enforces on this connection, told in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub messages_per_second: u32,
    pub rooms_per_connection: usize,
    pub members_per_room: usize,
    pub cursor_updates_per_second: u32,
    pub max_op_bytes: usize,
    pub max_document_bytes: usize,
    pub documents_per_connection: usize,
    pub max_value_bytes: usize,
    pub values_per_room: usize,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        server: String,
        connection: String,
        user: UserInfo,
        /// Send a heartbeat at least this often.
        heartbeat_ms: u64,
        /// Presence expires after this long without a heartbeat.
        presence_ttl_ms: u64,
        limits: Limits,
        /// When the connection's token expires (milliseconds since the
        /// epoch): send `auth` with a fresh token before then, or the
        /// connection is closed with 4001. Absent for tokens without `exp`
        /// and anonymous connections.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_expires_at: Option<u64>,
    },
    /// A fresh token was accepted: its permissions apply from now on.
    Authenticated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_expires_at: Option<u64>,
    },
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        connection: String,
        members: Vec<Member>,
        count: usize,
        cursors: Vec<CursorState>,
        /// The room's shared values (absent when it has none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        values: Vec<ValueState>,
    },
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        reason: LeaveReason,
    },
    MemberJoined {
        room: String,
        member: Member,
        count: usize,
    },
    MemberLeft {
        room: String,
        connection: String,
        user: String,
        reason: LeaveReason,
        count: usize,
    },
    Presence {
        room: String,
        connection: String,
        state: Value,
    },
    Cursor {
        room: String,
        #[serde(flatten)]
        cursor: CursorState,
    },
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        server_time: Millis,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// The server is going away; reconnect (to another node) after the delay.
    Shutdown {
        reason: String,
        reconnect_after_ms: u64,
    },
    /// A document is open: its state at `version`, either the whole `text`
    /// or, for a client that said where it left off, the `ops` since then.
    Opened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
        epoch: String,
        version: u64,
        /// The digest of the history at `version`.
        #[serde(default)]
        digest: Digest,
        /// The submitter id this connection's ops of the document carry in
        /// the log (the one it asked for, scoped by the server to its user):
        /// ops with this id are its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "entries_for_readers")]
        ops: Option<Vec<LogEntry>>,
        /// Set when the client asked for ops but gets the text: its local
        /// state is replaced and its unacknowledged edits are dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset: Option<ResetReason>,
    },
    /// The submitter's op was committed as `version` (or had been already,
    /// for a resubmission).
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
        seq: u64,
        version: u64,
        /// The digest of the history at `version`, when the server still
        /// holds it (a resubmission of an op trimmed from the log has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<Digest>,
    },
    /// Someone's op, committed as `version`, transformed to apply after
    /// version - 1.
    Op {
        room: String,
        doc: String,
        #[serde(flatten, serialize_with = "entry_for_readers")]
        entry: LogEntry,
    },
    DocClosed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
    },
    /// A shared value's new state (to everyone in the room).
    Value {
        room: String,
        #[serde(flatten)]
        value: ValueState,
    },
    /// The answer to `undo` or `redo`: `done` with the version of the op it
    /// committed, or not done (nothing to undo or redo; nothing changed).
    UndoResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        doc: String,
        action: UndoAction,
        done: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// The sender's `update_value` was stored as `version`.
    ValueUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: String,
        name: String,
        version: u64,
    },
}

impl ServerMessage {
    /// The JSON text of the message (serialized once, sent to many).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    pub fn error(id: Option<u64>, room: Option<&str>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { id, code, message: message.into(), room: room.map(str::to_owned) }
    }

    /// The JSON text of the `op` message of `entry` (as
    /// `ServerMessage::Op`'s [`to_json`](Self::to_json)), serialized from
    /// where its parts are: the commit path builds one for every op, and
    /// owned copies of the room's and document's names were made and freed
    /// for each.
    pub fn op_json(room: &str, doc: &str, entry: &LogEntry) -> String {
        let frame = OpFrame { kind: "op", room, doc, entry: ReaderEntry::from(entry) };
        serde_json::to_string(&frame).expect("server messages always serialize")
    }

    /// The JSON text of an `ack` (as `ServerMessage::Ack`'s
    /// [`to_json`](Self::to_json)), serialized from where its parts are:
    /// one goes out for every op committed.
    pub fn ack_json(id: Option<u64>, room: &str, doc: &str, seq: u64, version: u64, digest: Option<Digest>) -> String {
        let frame = AckFrame { kind: "ack", id, room, doc, seq, version, digest };
        serde_json::to_string(&frame).expect("server messages always serialize")
    }
}

/// `ServerMessage::Op` with borrowed parts (see [`ServerMessage::op_json`]).
#[derive(Serialize)]
struct OpFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    doc: &'a str,
    #[serde(flatten)]
    entry: ReaderEntry<'a>,
}

/// `ServerMessage::Ack` with borrowed parts (see [`ServerMessage::ack_json`]).
#[derive(Serialize)]
struct AckFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    room: &'a str,
    doc: &'a str,
    seq: u64,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
}

/// Stable error codes. New codes may be added; existing ones never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// Valid JSON, but not a valid message (missing or mistyped fields).
    BadMessage,
    /// The message `type` is not one the server knows.
    UnknownType,
    /// Binary frames are not part of the protocol.
    BinaryFrame,
    /// The first message must be `hello`.
    HelloRequired,
    /// `hello` named a protocol version this server does not speak.
    UnsupportedProtocol,
    /// No valid token (missing, malformed, badly signed or expired).
    Unauthorized,
    /// The token does not allow this in this room.
    Forbidden,
    /// The room name is empty, too long or has characters outside the allowed set.
    InvalidRoom,
    /// The connection has not joined this room.
    NotJoined,
    AlreadyJoined,
    TooManyRooms,
    RoomFull,
    /// Over the per-connection message rate; the message was dropped.
    RateLimited,
    MessageTooLarge,
    /// The store behind the server is unreachable; retry later.
    Unavailable,
    Internal,
    /// The document name is empty, too long or has characters outside the allowed set.
    InvalidDocument,
    /// The document is not open on this connection; open it first.
    NotOpen,
    /// The connection has as many documents open as it may.
    TooManyDocuments,
    /// The op is malformed, or does not fit the document at its base version.
    InvalidOp,
    /// The op's base version is ahead of the document.
    FutureVersion,
    /// The op's base version is older than the log reaches; open the
    /// document again (a snapshot follows).
    VersionTrimmed,
    /// A sequence number older than this client's last committed op.
    StaleSeq,
    /// The op is over the configured op size limit.
    OpTooLarge,
    /// Committing the op would take the document over its size limit.
    DocumentTooLarge,
    /// A value's name is empty, too long or has control characters.
    InvalidValue,
    /// The value exists with another kind, or the change is for another kind.
    WrongKind,
    /// A counter would leave its range (u64 for `g_counter`, i64 for
    /// `pn_counter`), or a `g_counter` was asked to go down.
    ValueOverflow,
    /// The value's state would be over the size limit.
    ValueTooLarge,
    /// The room has as many values as it may.
    TooManyValues,
    /// This node holds as much room state in memory as it may (its
    /// `--max-state-bytes`): loading a document or room, or growing one, is
    /// refused until others unload. Retry later (or on another node).
    NodeFull,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BinaryFrame => "binary_frame",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidDocument => "invalid_document",
            ErrorCode::NotOpen => "not_open",
            ErrorCode::TooManyDocuments => "too_many_documents",
            ErrorCode::InvalidOp => "invalid_op",
            ErrorCode::FutureVersion => "future_version",
            ErrorCode::VersionTrimmed => "version_trimmed",
            ErrorCode::StaleSeq => "stale_seq",
            ErrorCode::OpTooLarge => "op_too_large",
            ErrorCode::DocumentTooLarge => "document_too_large",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::WrongKind => "wrong_kind",
            ErrorCode::ValueOverflow => "value_overflow",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::TooManyValues => "too_many_values",
            ErrorCode::NodeFull => "node_full",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes Chorus uses, with their meaning.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// A frame was larger than the server's message size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server hit an unexpected error.
    pub const INTERNAL: u16 = 1011;
    /// The server is restarting or shutting down: reconnect, to another node
    /// if there is one.
    pub const SERVICE_RESTART: u16 = 1012;
    /// No valid token, or the token expired without a fresh one (`auth`).
    pub const UNAUTHORIZED: u16 = 4001;
    /// The handshake failed: no `hello` first, or an unsupported version.
    pub const PROTOCOL: u16 = 4002;
    /// No message within the presence TTL.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// The client kept sending far over its message rate.
    pub const FLOOD: u16 = 4004;
    /// The client did not read its messages fast enough; reconnect and resync.
    pub const SLOW_CONSUMER: u16 = 4005;
}

/// An op entry as clients receive it (in `op` and `opened`): the log entry
/// without its commit time, which only the server's undo histories use.
/// Every op goes to every reader of its document, so each byte of it is
/// paid once per reader.
#[derive(Serialize)]
struct ReaderEntry<'a> {
    version: u64,
    client: &'a str,
    seq: u64,
    op: &'a chorus_core::text::TextOp,
    digest: Digest,
}

impl<'a> From<&'a LogEntry> for ReaderEntry<'a> {
    fn from(e: &'a LogEntry) -> Self {
        ReaderEntry { version: e.version, client: &e.client, seq: e.seq, op: &e.op, digest: e.digest }
    }
}

fn entry_for_readers<S: serde::Serializer>(entry: &LogEntry, s: S) -> Result<S::Ok, S::Error> {
    ReaderEntry::from(entry).serialize(s)
}

fn entries_for_readers<S: serde::Serializer>(entries: &Option<Vec<LogEntry>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    // Only called when present (`skip_serializing_if`).
    let entries = entries.as_deref().unwrap_or_default();
    let mut seq = s.serialize_seq(Some(entries.len()))?;
    for e in entries {
        seq.serialize_element(&ReaderEntry::from(e))?;
    }
    seq.end()
}

/// A client frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

/// Decodes one client text frame, classifying what is wrong with it.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        let message = e.to_string();
        // Only an unknown `type` is an unknown message; an unknown variant
        // inside a known message (a value kind, say) is a bad message.
        let unknown_type = || {
            let frame: Value = serde_json::from_str(text).ok()?;
            let kind = frame.get("type")?.as_str()?;
            Some(message.starts_with(&format!("unknown variant `{kind}`")))
        };
        let code = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ErrorCode::BadJson,
            Category::Data if unknown_type() == Some(true) => ErrorCode::UnknownType,
            Category::Data => ErrorCode::BadMessage,
        };
        let message = match code {
            ErrorCode::BadJson => format!("the frame is not valid JSON ({message})"),
            ErrorCode::UnknownType => format!("unknown message type ({message})"),
            _ => format!("invalid message ({message})"),
        };
        DecodeError { code, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(conn: &str, user: &str) -> Member {
        Member {
            connection: conn.into(),
            user: UserInfo::new(user, Some("Ann".into()), None, None),
            state: json!({"page": 3}),
            joined_at: 1_764_000_000_000,
        }
    }

    #[test]
    fn client_messages_wire_format() {
        let msgs = vec![
            ClientMessage::Hello { protocol: 1, client: Some("chorus-js/0.1".into()), batch: false },
            ClientMessage::Hello { protocol: 1, client: Some("chorus-js/0.1".into()), batch: true },
            ClientMessage::Join { id: Some(1), room: "team-42/plan".into(), state: Some(json!({"typing": false})) },
            ClientMessage::Leave { id: None, room: "team-42/plan".into() },
            ClientMessage::Presence { id: Some(2), room: "team-42/plan".into(), state: json!({"page": 3}) },
            ClientMessage::Cursor { room: "team-42/plan".into(), cursor: json!({"anchor": 3, "head": 7}), doc: Some("body".into()), version: Some(12) },
            ClientMessage::Cursor { room: "team-42/plan".into(), cursor: json!({"x": 0.4, "y": 0.25}), doc: None, version: None },
            ClientMessage::Heartbeat { id: None },
            ClientMessage::Auth { id: Some(12), token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into() },
            ClientMessage::OpenDoc { id: Some(5), room: "team-42/plan".into(), doc: "body".into(), client: Some("k7".into()), since: None, undo: true },
            ClientMessage::OpenDoc {
                id: Some(6),
                room: "team-42/plan".into(),
                doc: "body".into(),
                client: Some("k7".into()),
                since: Some(DocPosition { epoch: "9f2c".into(), version: 12, digest: Digest::from_hex("5d1c0a9e77b3f210") }),
                undo: false,
            },
            ClientMessage::Submit { id: None, room: "team-42/plan".into(), doc: "body".into(), seq: 3, base: 12, op: json!([5, "hi", {"d": 2}]) },
            ClientMessage::Submit { id: Some(7), room: "team-42/plan".into(), doc: "body".into(), seq: 4, base: 13, op: json!({"insert": {"at": 0, "text": "😭"}}) },
            ClientMessage::CloseDoc { id: Some(8), room: "team-42/plan".into(), doc: "body".into() },
            ClientMessage::UpdateValue { id: Some(9), room: "team-42/plan".into(), name: "title".into(), kind: ValueKind::Register, change: Change::Set { value: json!("Q3 plan") } },
            ClientMessage::UpdateValue { id: None, room: "team-42/plan".into(), name: "views".into(), kind: ValueKind::GCounter, change: Change::Increment { by: 1 } },
            ClientMessage::UpdateValue { id: None, room: "team-42/plan".into(), name: "tags".into(), kind: ValueKind::OrSet, change: Change::Remove { element: "urgent".into() } },
            ClientMessage::Undo { id: Some(10), room: "team-42/plan".into(), doc: "body".into() },
            ClientMessage::Redo { id: Some(11), room: "team-42/plan".into(), doc: "body".into() },
            ClientMessage::UpdateValue {
                id: None,
                room: "team-42/plan".into(),
                name: "settings".into(),
                kind: ValueKind::LwwMap,
                change: Change::MapSet { key: "theme".into(), value: json!("dark") },
            },
        ];
        let lines: Vec<String> = msgs.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
        insta::assert_snapshot!(lines.join("\n"));
        for (m, line) in msgs.iter().zip(&lines) {
            assert_eq!(&decode_client(line).unwrap(), m);
        }
    }

    /// An entry as clients read it: without its commit time.
    fn entry(version: u64, client: &str, seq: u64, op: Value) -> LogEntry {
        let previous = Digest::from_hex("0123456789abcdef").unwrap();
        LogEntry::new(version, client, seq, serde_json::from_value(op).unwrap(), 0, previous)
    }

    #[test]
    fn readers_get_entries_without_commit_times() {
        let mut e = entry(16, "u3:bob:k2", 9, json!([2, "x"]));
        e.at = 1_764_000_000_016;
        let op = ServerMessage::Op { room: "r".into(), doc: "d".into(), entry: e.clone() };
        let opened = ServerMessage::Opened {
            id: None,
            room: "r".into(),
            doc: "d".into(),
            epoch: "e".into(),
            version: 16,
            digest: e.digest,
            client: None,
            text: None,
            ops: Some(vec![e.clone()]),
            reset: None,
        };
        for msg in [op, opened] {
            let json = msg.to_json();
            assert!(!json.contains("\"at\""), "{json}");
            assert!(json.contains(&format!(r#""digest":"{}""#, e.digest)), "{json}");
        }
    }

    /// The op and ack frames of the commit path, built from borrowed
    /// parts, are the messages' own JSON.
    #[test]
    fn borrowed_frames_are_the_messages() {
        let e = entry(16, "u3:bob:k\"2", 9, json!([2, "x\u{1F600}", {"d": 3}]));
        let op = ServerMessage::Op { room: "r/\"1".into(), doc: "d".into(), entry: e.clone() };
        assert_eq!(ServerMessage::op_json("r/\"1", "d", &e), op.to_json());
        for (id, digest) in [(None, None), (Some(7), Some(e.digest))] {
            let ack = ServerMessage::Ack { id, room: "r".into(), doc: "d\n".into(), seq: 9, version: 16, digest };
            assert_eq!(ServerMessage::ack_json(id, "r", "d\n", 9, 16, digest), ack.to_json());
        }
    }

    #[test]
    fn server_messages_wire_format() {
        let limits = Limits {
            max_message_bytes: 65_536,
            messages_per_second: 100,
            rooms_per_connection: 50,
            members_per_room: 1_000,
            cursor_updates_per_second: 30,
            max_op_bytes: 32_768,
            max_document_bytes: 8_388_608,
            documents_per_connection: 50,
            max_value_bytes: 65_536,
            values_per_room: 100,
        };
        let cursor = CursorState {
            connection: "c2".into(),
            user: "bob".into(),
            cursor: json!({"anchor": 3, "head": 7}),
            doc: Some("body".into()),
            version: Some(12),
        };
        let msgs = vec![
            ServerMessage::Welcome {
                protocol: 1,
                server: "chorus/0.1.0".into(),
                connection: "c1".into(),
                user: UserInfo::new("ann", Some("Ann".into()), Some("https://example.com/ann.png".into()), None),
                heartbeat_ms: 10_000,
                presence_ttl_ms: 30_000,
                limits,
                token_expires_at: Some(1_764_003_600_000),
            },
            ServerMessage::Authenticated { id: Some(12), token_expires_at: Some(1_764_007_200_000) },
            ServerMessage::Joined {
                id: Some(1),
                room: "team-42/plan".into(),
                connection: "c1".into(),
                members: vec![member("c1", "ann")],
                count: 1,
                cursors: vec![cursor.clone()],
                values: vec![ValueState { name: "title".into(), kind: ValueKind::Register, version: 3, value: json!("Q3 plan") }],
            },
            ServerMessage::Left { id: Some(3), room: "team-42/plan".into(), reason: LeaveReason::Left },
            ServerMessage::MemberJoined { room: "team-42/plan".into(), member: member("c2", "bob"), count: 2 },
            ServerMessage::MemberLeft { room: "team-42/plan".into(), connection: "c2".into(), user: "bob".into(), reason: LeaveReason::Expired, count: 1 },
            ServerMessage::Presence { room: "team-42/plan".into(), connection: "c2".into(), state: json!({"typing": true}) },
            ServerMessage::Cursor { room: "team-42/plan".into(), cursor },
            ServerMessage::Heartbeat { id: None, server_time: 1_764_000_000_123 },
            ServerMessage::error(Some(4), Some("team-42/plan"), ErrorCode::Forbidden, "your token does not allow presence in room team-42/plan"),
            ServerMessage::Shutdown { reason: "server shutting down".into(), reconnect_after_ms: 1_000 },
            ServerMessage::Opened {
                id: Some(5),
                room: "team-42/plan".into(),
                doc: "body".into(),
                epoch: "9f2c".into(),
                version: 12,
                digest: Digest::from_hex("5d1c0a9e77b3f210").unwrap(),
                client: Some("u3:ann:k7".into()),
                text: Some("hello 😭".into()),
                ops: None,
                reset: None,
            },
            ServerMessage::Opened {
                id: Some(6),
                room: "team-42/plan".into(),
                doc: "body".into(),
                epoch: "9f2c".into(),
                version: 14,
                digest: Digest::from_hex("77e0c2d1a4b59f08").unwrap(),
                client: Some("u3:ann:k7".into()),
                text: None,
                ops: Some(vec![entry(13, "u3:bob:k2", 8, json!([5, "!"])), entry(14, "u3:ann:k7", 3, json!([{"d": "h"}]))]),
                reset: None,
            },
            ServerMessage::Opened {
                id: Some(6),
                room: "team-42/plan".into(),
                doc: "body".into(),
                epoch: "a001".into(),
                version: 40_000,
                digest: Digest::from_hex("0c9d8e7f6a5b4c3d").unwrap(),
                client: Some("u3:ann:k7".into()),
                text: Some("…".into()),
                ops: None,
                reset: Some(ResetReason::Trimmed),
            },
            ServerMessage::Opened {
                id: None,
                room: "team-42/plan".into(),
                doc: "body".into(),
                epoch: "a001".into(),
                version: 9,
                digest: Digest::from_hex("1f2e3d4c5b6a7988").unwrap(),
                client: Some("u3:ann:k7".into()),
                text: Some("…".into()),
                ops: None,
                reset: Some(ResetReason::Diverged),
            },
            ServerMessage::Ack {
                id: None,
                room: "team-42/plan".into(),
                doc: "body".into(),
                seq: 3,
                version: 15,
                digest: Digest::from_hex("9a8b7c6d5e4f3021"),
            },
            ServerMessage::Op { room: "team-42/plan".into(), doc: "body".into(), entry: entry(16, "u3:bob:k2", 9, json!([2, "x"])) },
            ServerMessage::DocClosed { id: Some(8), room: "team-42/plan".into(), doc: "body".into() },
            ServerMessage::Value {
                room: "team-42/plan".into(),
                value: ValueState { name: "tags".into(), kind: ValueKind::OrSet, version: 7, value: json!(["design", "urgent"]) },
            },
            ServerMessage::ValueUpdated { id: Some(9), room: "team-42/plan".into(), name: "tags".into(), version: 7 },
            ServerMessage::UndoResult { id: Some(10), room: "team-42/plan".into(), doc: "body".into(), action: UndoAction::Undo, done: true, version: Some(17) },
            ServerMessage::UndoResult { id: Some(11), room: "team-42/plan".into(), doc: "body".into(), action: UndoAction::Redo, done: false, version: None },
        ];
        let lines: Vec<String> = msgs.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
        insta::assert_snapshot!(lines.join("\n"));
        for (m, line) in msgs.iter().zip(&lines) {
            assert_eq!(&serde_json::from_str::<ServerMessage>(line).unwrap(), m);
        }
    }

    #[test]
    fn bad_frames_are_classified() {
        let cases = [
            ("{not json", ErrorCode::BadJson),
            ("", ErrorCode::BadJson),
            (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
            (r#"{"type":"join"}"#, ErrorCode::BadMessage),
            (r#"{"type":"join","room":5}"#, ErrorCode::BadMessage),
            (r#"{"type":"join","room":"r","extra":1}"#, ErrorCode::BadMessage),
            (r#"[1,2]"#, ErrorCode::BadMessage),
            (r#"{"room":"r"}"#, ErrorCode::BadMessage),
            (r#"{"type":"update_value","room":"r","name":"n","kind":"vector","change":{"op":"set","value":1}}"#, ErrorCode::BadMessage),
            (r#"{"type":"update_value","room":"r","name":"n","kind":"register","change":{"op":"swap"}}"#, ErrorCode::BadMessage),
        ];
        for (frame, code) in cases {
            let err = decode_client(frame).unwrap_err();
            assert_eq!(err.code, code, "{frame}: {}", err.message);
        }
    }

    #[test]
    fn reasons_a_newer_server_adds_still_decode() {
        // During a rolling upgrade an older client meets reasons added after
        // it was built; failing to decode `opened` would leave it waiting.
        let opened = r#"{"type":"opened","id":1,"room":"r","doc":"d","epoch":"e1","version":3,"text":"abc","reset":"archived"}"#;
        match serde_json::from_str::<ServerMessage>(opened).expect("decodes") {
            ServerMessage::Opened { reset, .. } => assert_eq!(reset, Some(ResetReason::Other)),
            other => panic!("not opened: {other:?}"),
        }
        let left = r#"{"type":"member_left","room":"r","connection":"c","user":"u","reason":"evicted","count":0}"#;
        match serde_json::from_str::<ServerMessage>(left).expect("decodes") {
            ServerMessage::MemberLeft { reason, .. } => assert_eq!(reason, LeaveReason::Other),
            other => panic!("not member_left: {other:?}"),
        }
        assert_eq!(serde_json::from_str::<ResetReason>(r#""deleted""#).unwrap(), ResetReason::Deleted);
    }

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in [ErrorCode::BadJson, ErrorCode::RoomFull, ErrorCode::HelloRequired, ErrorCode::Unavailable, ErrorCode::VersionTrimmed, ErrorCode::DocumentTooLarge, ErrorCode::WrongKind, ErrorCode::ValueOverflow] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }
}
