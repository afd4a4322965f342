//! The client side of OT: at most one op in flight, later edits composed into
//! a buffer, and every op from the server transformed past both.
//!
//! The three states are the classic ones (synchronized, awaiting an ack,
//! awaiting an ack with a buffer). Keeping a single op in flight means the
//! server only ever transforms an op against ops it has already ordered, so the
//! server needs nothing but TP1. The machine holds no text: the caller applies
//! local edits itself and applies whatever [`OtClient::remote`] returns.
//!
//! The in-flight op keeps its sequence number through reconnects, and its base
//! moves forward as remote ops are transformed into it, so resubmitting it
//! after a reconnect is always consistent with what the client has seen; the
//! server recognises a resubmission by (client id, sequence number).

use thiserror::Error;

use crate::text::{Side, TextOp};

/// An op the client sends: made against document version `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub base: u64,
    pub seq: u64,
    pub op: TextOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Synchronized,
    AwaitingAck { inflight: Submission },
    AwaitingWithBuffer { inflight: Submission, buffer: TextOp },
}

/// A message that does not fit the client's state: the connection is out of
/// step with the server and must resync.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("expected version {expected} next but the server sent version {got}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("an acknowledgement arrived with no op in flight")]
    UnexpectedAck,
}

/// One client's view of one document's op stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtClient {
    version: u64,
    next_seq: u64,
    state: State,
}

impl OtClient {
    /// A client that has the document at `version`. `next_seq` is the sequence
    /// number its next op will carry (sequence numbers never repeat for one
    /// client id).
    pub fn new(version: u64, next_seq: u64) -> Self {
        Self { version, next_seq, state: State::Synchronized }
    }

    /// The last server version this client has seen.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The sequence number the next new op will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn is_synchronized(&self) -> bool {
        self.state == State::Synchronized
    }

    /// The op awaiting acknowledgement, to resend after a reconnect.
    pub fn inflight(&self) -> Option<&Submission> {
        match &self.state {
            State::Synchronized => None,
            State::AwaitingAck { inflight } | State::AwaitingWithBuffer { inflight, .. } => {
                Some(inflight)
            }
        }
    }

    /// Local edits not yet sent (composed into one op).
    pub fn buffer(&self) -> Option<&TextOp> {
        match &self.state {
            State::AwaitingWithBuffer { buffer, .. } => Some(buffer),
            _ => None,
        }
    }

    /// Records a local edit the caller has already applied to its text.
    /// Returns the submission to send, if the edit can go out now.
    pub fn local(&mut self, op: TextOp) -> Option<Submission> {
        if op.is_noop() {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Synchronized) {
            State::Synchronized => {
                let sub = self.submission(op);
                self.state = State::AwaitingAck { inflight: sub.clone() };
                Some(sub)
            }
            State::AwaitingAck { inflight } => {
                self.state = State::AwaitingWithBuffer { inflight, buffer: op };
                None
            }
            State::AwaitingWithBuffer { inflight, buffer } => {
                self.state = State::AwaitingWithBuffer { inflight, buffer: buffer.compose(&op) };
                None
            }
        }
    }

    /// The server committed our in-flight op as `version`. Returns the buffer
    /// as the next submission, if there is one.
    pub fn ack(&mut self, version: u64) -> Result<Option<Submission>, ClientError> {
        self.expect_next(version)?;
        match std::mem::replace(&mut self.state, State::Synchronized) {
            State::Synchronized => Err(ClientError::UnexpectedAck),
            State::AwaitingAck { .. } => {
                self.version = version;
                Ok(None)
            }
            State::AwaitingWithBuffer { buffer, .. } => {
                self.version = version;
                let sub = self.submission(buffer);
                self.state = State::AwaitingAck { inflight: sub.clone() };
                Ok(Some(sub))
            }
        }
    }

    /// Someone else's op, committed as `version`. Returns the op to apply to
    /// the local text (transformed past our unacknowledged edits).
    pub fn remote(&mut self, version: u64, op: &TextOp) -> Result<TextOp, ClientError> {
        self.expect_next(version)?;
        self.version = version;
        Ok(match &mut self.state {
            State::Synchronized => op.clone(),
            State::AwaitingAck { inflight } => {
                let mine = inflight.op.transform(op, Side::Right);
                let theirs = op.transform(&inflight.op, Side::Left);
                inflight.op = mine;
                inflight.base = version;
                theirs
            }
            State::AwaitingWithBuffer { inflight, buffer } => {
                let mine = inflight.op.transform(op, Side::Right);
                let theirs = op.transform(&inflight.op, Side::Left);
                let buffered = buffer.transform(&theirs, Side::Right);
                let theirs = theirs.transform(buffer, Side::Left);
                inflight.op = mine;
                inflight.base = version;
                *buffer = buffered;
                theirs
            }
        })
    }

    fn expect_next(&self, version: u64) -> Result<(), ClientError> {
        if version != self.version + 1 {
            return Err(ClientError::OutOfOrder { expected: self.version + 1, got: version });
        }
        Ok(())
    }

    fn submission(&mut self, op: TextOp) -> Submission {
        let seq = self.next_seq;
        self.next_seq += 1;
        Submission { base: self.version, seq, op }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;
    use crate::text::apply_to_str;

    #[test]
    fn one_op_in_flight_the_rest_composed() {
        let mut c = OtClient::new(0, 1);
        let s = c.local(op(r#"["a"]"#)).unwrap();
        assert_eq!(s, Submission { base: 0, seq: 1, op: op(r#"["a"]"#) });
        assert_eq!(c.local(op(r#"[1,"b"]"#)), None);
        assert_eq!(c.local(op(r#"[2,"c"]"#)), None);
        assert_eq!(c.buffer(), Some(&op(r#"[1,"bc"]"#)));
        let next = c.ack(1).unwrap().unwrap();
        assert_eq!(next, Submission { base: 1, seq: 2, op: op(r#"[1,"bc"]"#) });
        assert_eq!(c.ack(2).unwrap(), None);
        assert!(c.is_synchronized());
    }

    #[test]
    fn remote_ops_are_transformed_past_local_edits() {
        // Document "xy"; we insert "a" at 0 (in flight) and "b" at 2 (buffered);
        // the server meanwhile committed someone's "Z" at 1.
        let mut c = OtClient::new(5, 1);
        c.local(op(r#"["a"]"#)).unwrap();
        c.local(op(r#"[2,"b"]"#));
        let local = apply_to_str(&apply_to_str("xy", &op(r#"["a"]"#)).unwrap(), &op(r#"[2,"b"]"#)).unwrap();
        assert_eq!(local, "axby");
        let apply = c.remote(6, &op(r#"[1,"Z"]"#)).unwrap();
        assert_eq!(apply_to_str(&local, &apply).unwrap(), "axZby");
        // What the server will receive next composes to the same text.
        let inflight = c.inflight().unwrap().clone();
        assert_eq!(inflight.base, 6);
        let server = apply_to_str("xZy", &inflight.op).unwrap();
        let next = c.ack(7).unwrap().unwrap();
        assert_eq!(apply_to_str(&server, &next.op).unwrap(), "axZby");
    }

    #[test]
    fn out_of_order_messages_are_refused() {
        let mut c = OtClient::new(3, 1);
        assert_eq!(c.remote(5, &op("[]")), Err(ClientError::OutOfOrder { expected: 4, got: 5 }));
        assert_eq!(c.ack(4), Err(ClientError::UnexpectedAck));
        assert_eq!(c.version(), 3);
    }
}
