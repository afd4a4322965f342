//! A room's shared values on one node: the latest state of each, and the
//! turning of a client's change into the next state.
//!
//! The CRDT logic is the core's; the store only orders writers with a
//! compare-and-set on each value's version. A node applies a change to the
//! state it knows and writes the result "if the value is still at version
//! v"; when another node got there first, the store hands back the newer
//! state and the change is applied again on top of it. Every write comes
//! back on the bus as a whole state with its version, stamped with the
//! room's values sequence: a node that sees a gap in the sequence (or
//! another epoch) reloads them all.

use std::collections::HashMap;

use chorus_core::crdt::{Change, HlcClock, Value, ValueError, ValueKind};
use chorus_protocol::{ErrorCode, ValueState};
use chorus_store::{RoomValuesStored, Stamp, StoredValue, ValuesContent};

use crate::refusal::Refusal;

/// Limits on a room's values.
#[derive(Debug, Clone, Copy)]
pub struct ValueLimits {
    pub max_value_bytes: usize,
    pub values_per_room: usize,
    /// All of a room's values together, in bytes of their stored JSON.
    pub max_room_value_bytes: usize,
}

pub struct RoomValues {
    values: HashMap<String, StoredValue>,
    /// Bytes of each value's stored JSON, kept beside it so a write is
    /// checked against the room's total without measuring every value.
    sizes: HashMap<String, usize>,
    /// The room's values sequence this node has seen up to.
    stamp: Option<Stamp>,
    /// Stamps for last-writer-wins writes made here. Every stamp comes from
    /// a Chorus node, so it takes any stamp it observes, however far ahead.
    clock: HlcClock,
}

/// Whether a values event follows what a node has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// The next one.
    Next,
    /// Seen already (or older).
    Old,
    /// Some were missed, or the store's values are another incarnation.
    Gap,
}

/// Where `stamp` falls after `seen`.
pub fn sequence(seen: Option<&Stamp>, stamp: &Stamp) -> Sequence {
    match seen {
        Some(s) if s.epoch == stamp.epoch && stamp.seq <= s.seq => Sequence::Old,
        Some(s) if s.epoch == stamp.epoch && stamp.seq == s.seq + 1 => Sequence::Next,
        None if stamp.seq == 1 => Sequence::Next,
        _ => Sequence::Gap,
    }
}

/// A change ready to store: the state it makes, if the value is still at
/// `expected`.
pub struct Prepared {
    pub expected: u64,
    pub state: Value,
    /// Bytes of the new state's stored JSON.
    pub bytes: usize,
}

impl RoomValues {
    pub fn new(stored: RoomValuesStored) -> Self {
        let writer = format!("{:016x}", rand::random::<u64>());
        let values: HashMap<String, StoredValue> = stored.values.into_iter().collect();
        let sizes = values.iter().map(|(n, v)| (n.clone(), bytes_of(&v.state))).collect();
        Self { values, sizes, stamp: stored.stamp, clock: HlcClock::with_max_drift(writer, u64::MAX) }
    }

    /// Bytes of one value's stored JSON (0 when it does not exist).
    pub fn bytes_of(&self, name: &str) -> usize {
        self.sizes.get(name).copied().unwrap_or(0)
    }

    /// Bytes of all the room's values.
    pub fn total_bytes(&self) -> usize {
        self.sizes.values().fold(0, |total, n| total.saturating_add(*n))
    }

    pub fn stamp(&self) -> Option<&Stamp> {
        self.stamp.as_ref()
    }

    /// What the values hold, as the store's status tells it.
    pub fn content(&self) -> ValuesContent {
        ValuesContent::of(self.values.iter().map(|(n, v)| (n.as_str(), v)))
    }

    /// Notes that the store's values are at `stamp`; whether that follows
    /// what was seen.
    pub fn saw(&mut self, stamp: &Stamp) -> Sequence {
        let sequence = sequence(self.stamp.as_ref(), stamp);
        if sequence != Sequence::Old {
            self.stamp = Some(stamp.clone());
        }
        sequence
    }

    /// Replaces everything known with the store's (after missing events).
    /// Returns the values that changed, as clients see them, and whether
    /// some value is gone or went back to another state at its version or
    /// an older one (which no `value` message can tell: clients take only
    /// newer versions).
    pub fn reset(&mut self, stored: RoomValuesStored) -> (Vec<ValueState>, bool) {
        let fresh: HashMap<String, StoredValue> = stored.values.into_iter().collect();
        let retold = self.values.iter().any(|(n, old)| fresh.get(n).is_none_or(|v| v.version <= old.version && v.state != old.state));
        let mut changed: Vec<ValueState> = fresh
            .iter()
            .filter(|(n, v)| self.values.get(*n).is_none_or(|old| old.version != v.version || old.state != v.state))
            .map(|(n, v)| view_of(n, v.version, &v.state))
            .collect();
        changed.sort_by(|a, b| a.name.cmp(&b.name));
        self.sizes = fresh.iter().map(|(n, v)| (n.clone(), bytes_of(&v.state))).collect();
        self.values = fresh;
        self.stamp = stored.stamp;
        (changed, retold)
    }

    /// The state `change` makes of value `name` (created as `kind` when it
    /// does not exist), checked against the limits.
    pub fn prepare(&mut self, name: &str, kind: ValueKind, change: &Change, writer: &str, limits: ValueLimits, now_ms: u64) -> Result<Prepared, Refusal> {
        let (expected, mut state) = match self.values.get(name) {
            Some(v) => (v.version, v.state.clone()),
            None if self.values.len() >= limits.values_per_room => {
                return Err(Refusal::Refused(ErrorCode::TooManyValues, format!("a room holds at most {} values", limits.values_per_room)));
            }
            None => (0, Value::new(kind)),
        };
        if state.kind() != kind {
            return Err(Refusal::Refused(ErrorCode::WrongKind, format!("value {name} is a {}, not a {kind}", state.kind())));
        }
        let op = state.op_for(change, writer, &mut self.clock, now_ms).map_err(|e| refusal(name, e))?;
        state.apply(&op).map_err(|e| refusal(name, e))?;
        // A merge can leave a counter whose total does not fit; refuse
        // rather than store a value nobody can read.
        state.view().map_err(|e| refusal(name, e))?;
        let bytes = serde_json::to_vec(&state).map(|b| b.len()).unwrap_or(usize::MAX);
        if bytes > limits.max_value_bytes {
            return Err(Refusal::Refused(
                ErrorCode::ValueTooLarge,
                format!("value {name} would take {bytes} bytes; the limit is {}", limits.max_value_bytes),
            ));
        }
        let room = (self.total_bytes() - self.sizes.get(name).copied().unwrap_or(0)).saturating_add(bytes);
        if room > limits.max_room_value_bytes {
            return Err(Refusal::Refused(
                ErrorCode::ValueTooLarge,
                format!("the room's values would take {room} bytes; a room holds at most {} (--max-room-value-bytes)", limits.max_room_value_bytes),
            ));
        }
        Ok(Prepared { expected, state, bytes })
    }

    /// The store had a newer state (or none): remember it, to retry on.
    /// True when it is older than what this node held (the store went
    /// back): clients were told a version the store no longer has, and take
    /// the store's only with the whole room.
    pub fn conflict(&mut self, name: &str, current: Option<StoredValue>) -> bool {
        let went_back = current.as_ref().map_or(0, |v| v.version) < self.values.get(name).map_or(0, |v| v.version);
        match current {
            Some(v) => {
                self.sizes.insert(name.to_owned(), bytes_of(&v.state));
                self.values.insert(name.to_owned(), v);
            }
            None => {
                self.sizes.remove(name);
                self.values.remove(name);
            }
        }
        went_back
    }

    /// A state written as `version` (here, or heard on the bus). Returns what
    /// to tell the room, unless it is not newer than what is known.
    pub fn changed(&mut self, name: &str, version: u64, state: Value) -> Option<ValueState> {
        if self.values.get(name).is_some_and(|v| v.version >= version) {
            return None;
        }
        let shown = view_of(name, version, &state);
        self.sizes.insert(name.to_owned(), bytes_of(&state));
        self.values.insert(name.to_owned(), StoredValue { version, state });
        Some(shown)
    }

    /// Every value, by name, as clients see them.
    pub fn states(&self) -> Vec<ValueState> {
        let mut out: Vec<ValueState> = self.values.iter().map(|(n, v)| view_of(n, v.version, &v.state)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Bytes of a value's stored JSON, as the limits count them.
fn bytes_of(state: &Value) -> usize {
    serde_json::to_vec(state).map(|b| b.len()).unwrap_or(usize::MAX)
}

fn view_of(name: &str, version: u64, state: &Value) -> ValueState {
    // States are checked before they are stored, so the view exists.
    ValueState { name: name.to_owned(), kind: state.kind(), version, value: state.view().unwrap_or_default() }
}

fn refusal(name: &str, e: ValueError) -> Refusal {
    let code = match e {
        ValueError::WrongKind { .. } => ErrorCode::WrongKind,
        _ => ErrorCode::ValueOverflow,
    };
    Refusal::Refused(code, format!("value {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: ValueLimits = ValueLimits { max_value_bytes: 200, values_per_room: 2, max_room_value_bytes: 1_000 };

    fn code(r: Result<Prepared, Refusal>) -> ErrorCode {
        match r {
            Err(Refusal::Refused(code, _)) => code,
            other => panic!("expected a refusal, got {:?}", other.map(|p| p.expected)),
        }
    }

    fn empty() -> RoomValues {
        RoomValues::new(RoomValuesStored { values: vec![], stamp: None })
    }

    #[test]
    fn stamps_tell_the_next_event_from_a_gap() {
        let at = |epoch: &str, seq| Stamp { epoch: epoch.into(), seq };
        assert_eq!(sequence(None, &at("e", 1)), Sequence::Next);
        assert_eq!(sequence(None, &at("e", 2)), Sequence::Gap);
        assert_eq!(sequence(Some(&at("e", 4)), &at("e", 5)), Sequence::Next);
        assert_eq!(sequence(Some(&at("e", 4)), &at("e", 4)), Sequence::Old);
        assert_eq!(sequence(Some(&at("e", 4)), &at("e", 7)), Sequence::Gap);
        assert_eq!(sequence(Some(&at("e", 4)), &at("f", 1)), Sequence::Gap, "another incarnation");
    }

    #[test]
    fn a_reset_tells_what_changed_and_whether_anything_went() {
        let mut values = empty();
        let p = values.prepare("a", ValueKind::GCounter, &Change::Increment { by: 1 }, "ann", LIMITS, 1).unwrap();
        values.changed("a", 1, p.state.clone());
        values.changed("b", 1, p.state.clone());
        let (changed, gone) = values.reset(RoomValuesStored { values: vec![("a".into(), StoredValue { version: 1, state: p.state.clone() })], stamp: None });
        assert!(changed.is_empty() && gone, "b went, a is as it was");
        let (changed, gone) = values.reset(RoomValuesStored { values: vec![("a".into(), StoredValue { version: 2, state: p.state.clone() })], stamp: None });
        assert_eq!((changed.len(), gone), (1, false));
        let other = values.prepare("a", ValueKind::GCounter, &Change::Increment { by: 5 }, "bob", LIMITS, 2).unwrap().state;
        let (changed, retold) = values.reset(RoomValuesStored { values: vec![("a".into(), StoredValue { version: 2, state: other })], stamp: None });
        assert_eq!((changed.len(), retold), (1, true), "another state at the same version: only a joined tells clients");
    }

    #[test]
    fn changes_are_checked_before_they_are_stored() {
        let mut values = empty();
        let set = Change::Set { value: json!("title") };
        let p = values.prepare("title", ValueKind::Register, &set, "ann", LIMITS, 1).unwrap();
        assert_eq!(p.expected, 0);
        values.changed("title", 1, p.state);
        assert_eq!(code(values.prepare("title", ValueKind::GCounter, &Change::Increment { by: 1 }, "ann", LIMITS, 2)), ErrorCode::WrongKind);
        assert_eq!(code(values.prepare("title", ValueKind::Register, &Change::Increment { by: 1 }, "ann", LIMITS, 2)), ErrorCode::WrongKind);
        let big = Change::Set { value: json!("x".repeat(300)) };
        assert_eq!(code(values.prepare("title", ValueKind::Register, &big, "ann", LIMITS, 2)), ErrorCode::ValueTooLarge);
        let p = values.prepare("views", ValueKind::PnCounter, &Change::Increment { by: i64::MAX }, "ann", LIMITS, 2).unwrap();
        values.changed("views", 1, p.state);
        assert_eq!(code(values.prepare("views", ValueKind::PnCounter, &Change::Increment { by: 1 }, "bob", LIMITS, 3)), ErrorCode::ValueOverflow);
        assert_eq!(code(values.prepare("third", ValueKind::OrSet, &Change::Add { element: "a".into() }, "ann", LIMITS, 3)), ErrorCode::TooManyValues);
        assert_eq!(values.states().iter().map(|v| (v.name.as_str(), v.version)).collect::<Vec<_>>(), [("title", 1), ("views", 1)]);
    }

    #[test]
    fn a_room_holds_a_bounded_total_of_value_bytes() {
        let limits = ValueLimits { max_value_bytes: 300, values_per_room: 10, max_room_value_bytes: 600 };
        let mut values = empty();
        let set = |n: usize| Change::Set { value: json!("x".repeat(n)) };
        let p = values.prepare("a", ValueKind::Register, &set(150), "ann", limits, 1).unwrap();
        values.changed("a", 1, p.state);
        let p = values.prepare("b", ValueKind::Register, &set(150), "ann", limits, 2).unwrap();
        values.changed("b", 1, p.state);
        assert_eq!(code(values.prepare("c", ValueKind::Register, &set(150), "ann", limits, 3)), ErrorCode::ValueTooLarge);
        // Shrinking a value makes room: its old size no longer counts.
        let p = values.prepare("a", ValueKind::Register, &set(1), "ann", limits, 4).unwrap();
        values.changed("a", 2, p.state);
        assert!(values.prepare("c", ValueKind::Register, &set(150), "ann", limits, 5).is_ok());
    }

    #[test]
    fn only_newer_states_are_told() {
        let mut values = empty();
        let p = values.prepare("n", ValueKind::GCounter, &Change::Increment { by: 2 }, "ann", LIMITS, 1).unwrap();
        let told = values.changed("n", 1, p.state.clone()).expect("new");
        assert_eq!((told.version, told.value), (1, json!(2)));
        assert!(values.changed("n", 1, p.state).is_none(), "the bus echo of a write already applied");
    }
}
