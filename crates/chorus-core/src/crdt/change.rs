//! What a user asks of a value, before it becomes an op.
//!
//! Clients say "set the title", "add one", "add the tag urgent"; the server
//! that orders the change turns it into a [`ValueOp`] with the stamps and
//! tags the CRDT needs. A set is stamped after the stamp it replaces (the
//! clock observes it first), so a later write in the server's order always
//! wins, even when nodes' clocks disagree; a remove names the tags it has
//! seen, so an add it has not seen survives it.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Hlc, HlcClock, Value, ValueError, ValueKind, ValueOp};

/// A change to a value, as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Register: replace the value.
    Set { value: Json },
    /// Counters: add `by` (negative only on a `pn_counter`).
    Increment { by: i64 },
    /// Set: add an element.
    Add { element: String },
    /// Set: remove an element (the adds seen so far).
    Remove { element: String },
    /// Map: write one key.
    MapSet { key: String, value: Json },
    /// Map: delete one key.
    MapDelete { key: String },
}

impl Change {
    /// The kind of value this change applies to (both counters for
    /// `increment`).
    pub fn applies_to(&self, kind: ValueKind) -> bool {
        matches!(
            (self, kind),
            (Change::Set { .. }, ValueKind::Register)
                | (Change::Increment { .. }, ValueKind::GCounter | ValueKind::PnCounter)
                | (Change::Add { .. } | Change::Remove { .. }, ValueKind::OrSet)
                | (Change::MapSet { .. } | Change::MapDelete { .. }, ValueKind::LwwMap)
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Change::Set { .. } => "set",
            Change::Increment { .. } => "increment",
            Change::Add { .. } => "add",
            Change::Remove { .. } => "remove",
            Change::MapSet { .. } => "map_set",
            Change::MapDelete { .. } => "map_delete",
        }
    }
}

impl Value {
    /// The op that makes `change` on this value, by `writer` (whose
    /// counter entry an increment raises), stamped by `clock`. The clock
    /// should accept any remote stamp (`HlcClock::with_max_drift(_, u64::MAX)`)
    /// when every stamp comes from a trusted server.
    pub fn op_for(&self, change: &Change, writer: &str, clock: &mut HlcClock, now_ms: u64) -> Result<ValueOp, ValueError> {
        if !change.applies_to(self.kind()) {
            return Err(ValueError::WrongKind { expected: self.kind(), got: change.name() });
        }
        let mut after = |seen: Option<&Hlc>| -> Result<Hlc, ValueError> {
            if let Some(seen) = seen {
                clock.observe(seen, now_ms).map_err(|_| ValueError::Overflow)?;
            }
            clock.issue(now_ms).map_err(|_| ValueError::Overflow)
        };
        Ok(match (self, change) {
            (Value::Register(r), Change::Set { value }) => ValueOp::Set { value: value.clone(), stamp: after(r.stamp())? },
            (_, Change::Increment { by }) => ValueOp::Increment { writer: writer.to_owned(), amount: *by },
            (_, Change::Add { element }) => ValueOp::Add { element: element.clone(), tag: after(None)? },
            (Value::OrSet(s), Change::Remove { element }) => ValueOp::Remove { element: element.clone(), tags: s.tags(element).cloned().collect() },
            (Value::LwwMap(m), Change::MapSet { key, value }) => ValueOp::MapSet { key: key.clone(), value: value.clone(), stamp: after(m.stamp(key))? },
            (Value::LwwMap(m), Change::MapDelete { key }) => ValueOp::MapDelete { key: key.clone(), stamp: after(m.stamp(key))? },
            _ => unreachable!("applies_to checked the kind"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(value: &mut Value, change: Change, clock: &mut HlcClock, now: u64) -> Result<(), ValueError> {
        let op = value.op_for(&change, "ann", clock, now)?;
        value.apply(&op)
    }

    #[test]
    fn a_later_set_wins_even_from_a_clock_behind() {
        let mut v = Value::new(ValueKind::Register);
        let mut fast = HlcClock::with_max_drift("node-a", u64::MAX);
        let mut slow = HlcClock::with_max_drift("node-b", u64::MAX);
        apply(&mut v, Change::Set { value: json!("first") }, &mut fast, 10_000).unwrap();
        apply(&mut v, Change::Set { value: json!("second") }, &mut slow, 5).unwrap();
        assert_eq!(v.view().unwrap(), json!("second"));
        let mut m = Value::new(ValueKind::LwwMap);
        apply(&mut m, Change::MapSet { key: "k".into(), value: json!(1) }, &mut fast, 20_000).unwrap();
        apply(&mut m, Change::MapDelete { key: "k".into() }, &mut slow, 6).unwrap();
        assert_eq!(m.view().unwrap(), json!({}));
    }

    #[test]
    fn a_remove_takes_only_the_adds_it_saw() {
        let mut clock = HlcClock::with_max_drift("n", u64::MAX);
        let mut here = Value::new(ValueKind::OrSet);
        apply(&mut here, Change::Add { element: "x".into() }, &mut clock, 1).unwrap();
        let remove = here.op_for(&Change::Remove { element: "x".into() }, "ann", &mut clock, 2).unwrap();
        let concurrent_add = here.op_for(&Change::Add { element: "x".into() }, "bob", &mut clock, 3).unwrap();
        here.apply(&concurrent_add).unwrap();
        here.apply(&remove).unwrap();
        assert_eq!(here.view().unwrap(), json!(["x"]), "add wins over a remove that did not see it");
    }

    #[test]
    fn changes_for_another_kind_are_refused() {
        let mut clock = HlcClock::new("n");
        let v = Value::new(ValueKind::GCounter);
        let err = v.op_for(&Change::Add { element: "x".into() }, "ann", &mut clock, 1).unwrap_err();
        assert_eq!(err, ValueError::WrongKind { expected: ValueKind::GCounter, got: "add" });
        assert!(v.op_for(&Change::Increment { by: 3 }, "ann", &mut clock, 1).is_ok());
        assert!(Value::new(ValueKind::PnCounter).op_for(&Change::Increment { by: -3 }, "ann", &mut clock, 1).is_ok());
    }
}
