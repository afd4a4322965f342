//! Chorus's pure core: everything that decides what a document or a room
//! becomes, with no IO and no async, so it can be tested exhaustively and run
//! the same on the server, in the Rust client and in simulations.
//!
//! - [`text`]: the text OT type (ops, transform, compose, invert, cursors).
//! - [`crdt`]: room values that merge by law (registers, counters, sets, maps)
//!   and the hybrid logical clock that orders their writes.
//! - [`client`]: the client side of OT: one op in flight, the rest buffered.
//! - [`oplog`]: the server side: one order per document, idempotent submits.
//! - [`digest`]: the fingerprint of a history, a hash chain over its ops.
//! - [`presence`]: who is in a room, with expiry as a function of time.
//! - [`undo`]: per-user selective undo and redo of text edits.
//! - [`sim`]: a seeded simulation of a server and many clients over a lossy,
//!   reordering network, checking that everyone converges.

pub mod client;
pub mod crdt;
pub mod digest;
pub mod oplog;
pub mod presence;
pub mod sim;
pub mod text;
pub mod trace;
pub mod undo;
