//! The node-wide budget for room state held in memory (`--max-state-bytes`).
//!
//! Per-room limits bound one room; this bounds them all together, so a
//! node's memory for rooms has a stated ceiling whatever clients create.
//! What counts: the text of every loaded document, the ops its log keeps
//! (as `document::op_bytes` counts them, plus [`OP_RECORD_BYTES`] each),
//! and the stored JSON of the rooms' shared values. Each room reports its own total after every step
//! ([`Budget::settle`]); growth this node chooses (loading a document or a
//! room, committing an op, changing a value) is refused with `node_full`
//! when it would go over. Changes committed by other nodes are applied
//! whatever the budget says (a replica must follow its store) and counted,
//! so the total may pass the budget by what other nodes wrote until rooms
//! unload.

use std::sync::atomic::{AtomicUsize, Ordering};

use chorus_protocol::ErrorCode;

use crate::refusal::Refusal;

/// What one op kept in a document's log costs besides its text (its
/// record: version, submitter, sequence number, digest, components), so a
/// log of many small ops is not counted as nearly free.
pub const OP_RECORD_BYTES: usize = 192;

/// Bytes of room state a node holds, against its limit.
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0) }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Whether `more` bytes fit; a refusal that names the flag otherwise.
    pub fn admit(&self, more: usize, what: impl FnOnce() -> String) -> Result<(), Refusal> {
        let used = self.used();
        if used.saturating_add(more) <= self.limit {
            return Ok(());
        }
        metrics::counter!("chorus_state_refusals_total").increment(1);
        let message = format!(
            "{}: this node holds {used} bytes of room state and its limit is {} (--max-state-bytes); try again later",
            what(),
            self.limit
        );
        Err(Refusal::new(ErrorCode::NodeFull, message))
    }

    /// A room's total is now `now` where it was `*held`.
    pub fn settle(&self, held: &mut usize, now: usize) {
        if now == *held {
            return; // Most turns of a room's loop change nothing here.
        }
        if now > *held {
            self.used.fetch_add(now - *held, Ordering::AcqRel);
        } else {
            self.used.fetch_sub(*held - now, Ordering::AcqRel);
        }
        *held = now;
        crate::hot_metrics().state_bytes.set(self.used() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_refused_and_release_makes_room() {
        let budget = Budget::new(1_000);
        let (mut a, mut b) = (0, 0);
        budget.settle(&mut a, 600);
        assert!(budget.admit(400, || "x".into()).is_ok());
        let Err(Refusal::Refused(code, message)) = budget.admit(401, || "loading document d".into()) else { panic!("admitted") };
        assert_eq!(code, ErrorCode::NodeFull);
        assert!(message.contains("--max-state-bytes") && message.starts_with("loading document d"), "{message}");
        budget.settle(&mut b, 300);
        assert_eq!(budget.used(), 900);
        budget.settle(&mut a, 0);
        assert_eq!((budget.used(), a), (300, 0));
        assert!(budget.admit(700, || "x".into()).is_ok());
    }
}
