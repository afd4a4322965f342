//! Why a text op was refused. Every refusal names the component at fault, so
//! the error a client sees says what to fix.

use thiserror::Error;

/// A text op that cannot be applied, inverted or trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("component {index}: a retain must be greater than zero")]
    EmptyRetain { index: usize },
    #[error("component {index}: a retain follows a retain; merge them")]
    AdjacentRetains { index: usize },
    #[error("the op ends with a retain; drop it")]
    TrailingRetain,
    #[error("component {index}: an insert must not be empty")]
    EmptyInsert { index: usize },
    #[error("component {index}: a delete must not be empty")]
    EmptyDelete { index: usize },
    #[error("the op spans {needed} code points but the document has {doc_len}")]
    Overrun { needed: usize, doc_len: usize },
    #[error("component {index}: the text it deletes differs from the document's")]
    DeleteMismatch { index: usize },
    #[error("component {index}: a delete by count cannot be inverted; it must carry its text")]
    NotInvertible { index: usize },
}

/// A position in one unit that has no counterpart in another.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnitError {
    #[error("offset {offset} is past the end of the text ({len} units)")]
    OutOfRange { offset: usize, len: usize },
    #[error("UTF-16 offset {offset} falls inside a surrogate pair")]
    SplitsSurrogatePair { offset: usize },
}
