//! Shared text: the operation type, its algebra, and the document it edits.
//!
//! Semantics follow the `ot-text-unicode` type component for component, so the
//! browser SDK can run the same algebra from npm and both sides agree; the
//! differential tests in `tests/reference.rs` hold Chorus to that.

mod algebra;
mod doc;
mod edit;
mod error;
mod op;
mod position;
pub mod units;

pub use algebra::Side;
pub use doc::{apply_to_str, TextDoc};
pub use edit::SimpleEdit;
pub use error::{OpError, UnitError};
pub use op::{Component, Delete, OpBuilder, TextOp};
pub use position::{Author, Selection};

/// Parses an op from its JSON form, for tests.
#[cfg(test)]
pub(crate) fn test_op(json: &str) -> TextOp {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad op {json}: {e}"))
}
