//! Why a room refused a request: the answer every room operation gives its
//! caller (a session turns it into an error message, the HTTP API into a
//! status), below both so neither depends on the other.

use chorus_protocol::ErrorCode;
use chorus_store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The room task was stopping; ask for the room again.
    Retry,
    Refused(ErrorCode, String),
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal::Refused(code, message.into())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => Refusal::Refused(ErrorCode::Unavailable, format!("the store is unavailable ({reason}); retry")),
            other => Refusal::Refused(ErrorCode::Unavailable, other.to_string()),
        }
    }
}
