//! Room values that merge by law: registers, counters, sets and maps.
//!
//! Text needs OT because characters have positions; a title, a vote count or
//! a set of tags does not, so these values are CRDTs: any two states merge
//! into one, and the merge is commutative, associative and idempotent (the
//! property tests in `laws.rs` check each law for each type). That lets nodes
//! exchange whole states or ops in any order and still agree, and lets a joiner
//! start from a snapshot of the state (every type is serde).
//!
//! Ops ([`ValueOp`]) are what travels on the wire. Register and map writes and
//! set adds and removes are idempotent: applying one twice is applying it
//! once. Counter increments are not (two identical increments are two
//! increments), so the server must apply each increment op exactly once and
//! deduplicate resubmissions before it gets here.
//!
//! Last-writer-wins orders writes by [`Hlc`] stamps, never by floating-point
//! wall-clock seconds, and breaks ties by writer, so every replica picks the
//! same winner.

mod change;
mod counter;
mod hlc;
mod register;
mod set;

#[cfg(test)]
mod laws;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;

pub use change::Change;
pub use counter::{GCounter, PnCounter};
pub use hlc::{ClockError, Hlc, HlcClock, DEFAULT_MAX_DRIFT_MS};
pub use register::{LwwMap, LwwRegister};
pub use set::OrSet;

/// Why an op or a merge was refused. The value is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The op or state is for another kind of value.
    #[error("the value is of kind {expected}, and `{got}` does not apply to it")]
    WrongKind {
        expected: ValueKind,
        got: &'static str,
    },
    /// A counter would leave the range of its type.
    #[error("the counter would overflow")]
    Overflow,
    /// A grow-only counter was asked to go down.
    #[error("a g_counter only grows; it cannot add {amount}")]
    NegativeIncrement { amount: i64 },
}

/// Which kind a [`Value`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Register,
    GCounter,
    PnCounter,
    OrSet,
    LwwMap,
}

impl ValueKind {
    pub const ALL: [ValueKind; 5] = [
        ValueKind::Register,
        ValueKind::GCounter,
        ValueKind::PnCounter,
        ValueKind::OrSet,
        ValueKind::LwwMap,
    ];

    /// The wire name, as serde spells it.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Register => "register",
            ValueKind::GCounter => "g_counter",
            ValueKind::PnCounter => "pn_counter",
            ValueKind::OrSet => "or_set",
            ValueKind::LwwMap => "lww_map",
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of one room value. Serializes with a `kind` field naming its
/// [`ValueKind`], which is the form joiners receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Value {
    Register(LwwRegister),
    GCounter(GCounter),
    PnCounter(PnCounter),
    OrSet(OrSet),
    LwwMap(LwwMap),
}

/// One change to a value, as shipped over the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ValueOp {
    /// Register write. Idempotent.
    Set { value: Json, stamp: Hlc },
    /// Counter change by `writer`; negative only for a `pn_counter`. Not
    /// idempotent: apply each exactly once.
    Increment { writer: String, amount: i64 },
    /// Set add under a fresh tag. Idempotent.
    Add { element: String, tag: Hlc },
    /// Set remove of the tags the remover saw. Idempotent.
    Remove {
        element: String,
        tags: BTreeSet<Hlc>,
    },
    /// Map write of one key. Idempotent.
    MapSet {
        key: String,
        value: Json,
        stamp: Hlc,
    },
    /// Map delete of one key. Idempotent.
    MapDelete { key: String, stamp: Hlc },
}

impl ValueOp {
    /// The wire name of the op, as serde spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ValueOp::Set { .. } => "set",
            ValueOp::Increment { .. } => "increment",
            ValueOp::Add { .. } => "add",
            ValueOp::Remove { .. } => "remove",
            ValueOp::MapSet { .. } => "map_set",
            ValueOp::MapDelete { .. } => "map_delete",
        }
    }

    /// False for ops that count twice when applied twice.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, ValueOp::Increment { .. })
    }
}

impl Value {
    /// The empty value of `kind`: a register holding `null`, a zero counter,
    /// an empty set or map.
    pub fn new(kind: ValueKind) -> Self {
        match kind {
            ValueKind::Register => Value::Register(LwwRegister::new()),
            ValueKind::GCounter => Value::GCounter(GCounter::new()),
            ValueKind::PnCounter => Value::PnCounter(PnCounter::new()),
            ValueKind::OrSet => Value::OrSet(OrSet::new()),
            ValueKind::LwwMap => Value::LwwMap(LwwMap::new()),
        }
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Register(_) => ValueKind::Register,
            Value::GCounter(_) => ValueKind::GCounter,
            Value::PnCounter(_) => ValueKind::PnCounter,
            Value::OrSet(_) => ValueKind::OrSet,
            Value::LwwMap(_) => ValueKind::LwwMap,
        }
    }

    /// Applies one op, or refuses it and changes nothing.
    pub fn apply(&mut self, op: &ValueOp) -> Result<(), ValueError> {
        match (self, op) {
            (Value::Register(r), ValueOp::Set { value, stamp }) => {
                r.set(value.clone(), stamp.clone());
            }
            (Value::GCounter(c), ValueOp::Increment { writer, amount }) => {
                let amount = u64::try_from(*amount)
                    .map_err(|_| ValueError::NegativeIncrement { amount: *amount })?;
                c.increment(writer, amount)?;
            }
            (Value::PnCounter(c), ValueOp::Increment { writer, amount }) => {
                c.increment(writer, *amount)?;
            }
            (Value::OrSet(s), ValueOp::Add { element, tag }) => {
                s.add(element.clone(), tag.clone());
            }
            (Value::OrSet(s), ValueOp::Remove { element, tags }) => s.remove_tags(element, tags),
            (Value::LwwMap(m), ValueOp::MapSet { key, value, stamp }) => {
                m.set(key.clone(), value.clone(), stamp.clone());
            }
            (Value::LwwMap(m), ValueOp::MapDelete { key, stamp }) => {
                m.delete(key.clone(), stamp.clone());
            }
            (value, op) => {
                return Err(ValueError::WrongKind {
                    expected: value.kind(),
                    got: op.name(),
                })
            }
        }
        Ok(())
    }

    /// Merges another replica's state of the same value into this one.
    pub fn merge(&mut self, other: &Value) -> Result<(), ValueError> {
        match (self, other) {
            (Value::Register(a), Value::Register(b)) => a.merge(b),
            (Value::GCounter(a), Value::GCounter(b)) => a.merge(b),
            (Value::PnCounter(a), Value::PnCounter(b)) => a.merge(b),
            (Value::OrSet(a), Value::OrSet(b)) => a.merge(b),
            (Value::LwwMap(a), Value::LwwMap(b)) => a.merge(b),
            (a, b) => {
                return Err(ValueError::WrongKind {
                    expected: a.kind(),
                    got: b.kind().name(),
                })
            }
        }
        Ok(())
    }

    /// What users see: a register's value, a counter's number, a set as a
    /// sorted array of its elements, a map as an object of its present keys.
    /// Only a counter merged out of its range fails.
    pub fn view(&self) -> Result<Json, ValueError> {
        Ok(match self {
            Value::Register(r) => r.value().clone(),
            Value::GCounter(c) => Json::from(c.value()?),
            Value::PnCounter(c) => Json::from(c.value()?),
            Value::OrSet(s) => Json::Array(s.iter().map(Json::from).collect()),
            Value::LwwMap(m) => m.view(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_for_another_kind_are_refused() {
        let mut v = Value::new(ValueKind::Register);
        let op = ValueOp::Increment {
            writer: "a".into(),
            amount: 1,
        };
        assert_eq!(
            v.apply(&op),
            Err(ValueError::WrongKind {
                expected: ValueKind::Register,
                got: "increment"
            })
        );
        assert_eq!(v, Value::new(ValueKind::Register));
        let err = Value::new(ValueKind::OrSet)
            .merge(&Value::new(ValueKind::GCounter))
            .unwrap_err();
        assert_eq!(
            err,
            ValueError::WrongKind {
                expected: ValueKind::OrSet,
                got: "g_counter"
            }
        );
        assert_eq!(
            err.to_string(),
            "the value is of kind or_set, and `g_counter` does not apply to it"
        );
    }

    #[test]
    fn counters_refuse_overflow_and_negative_growth() {
        let mut g = Value::new(ValueKind::GCounter);
        let inc = |amount| ValueOp::Increment {
            writer: "a".into(),
            amount,
        };
        assert_eq!(
            g.apply(&inc(-1)),
            Err(ValueError::NegativeIncrement { amount: -1 })
        );
        let mut p = Value::new(ValueKind::PnCounter);
        p.apply(&inc(i64::MAX)).unwrap();
        assert_eq!(p.apply(&inc(1)), Err(ValueError::Overflow));
        p.apply(&inc(-3)).unwrap();
        assert_eq!(p.view(), Ok(json!(i64::MAX - 3)));
        g.apply(&inc(2)).unwrap();
        g.apply(&inc(2)).unwrap();
        assert_eq!(g.view(), Ok(json!(4)), "increments are not idempotent");
    }

    #[test]
    fn views_are_plain_json() {
        let stamp = |w: u64| Hlc::new(w, 0, "n");
        let mut s = Value::new(ValueKind::OrSet);
        for e in ["pear", "apple"] {
            s.apply(&ValueOp::Add {
                element: e.into(),
                tag: stamp(1),
            })
            .unwrap();
        }
        assert_eq!(s.view(), Ok(json!(["apple", "pear"])));
        let mut m = Value::new(ValueKind::LwwMap);
        m.apply(&ValueOp::MapSet {
            key: "k".into(),
            value: json!([1]),
            stamp: stamp(1),
        })
        .unwrap();
        m.apply(&ValueOp::MapSet {
            key: "gone".into(),
            value: json!(2),
            stamp: stamp(1),
        })
        .unwrap();
        m.apply(&ValueOp::MapDelete {
            key: "gone".into(),
            stamp: stamp(2),
        })
        .unwrap();
        assert_eq!(m.view(), Ok(json!({"k": [1]})));
        assert_eq!(Value::new(ValueKind::Register).view(), Ok(json!(null)));
        assert_eq!(Value::new(ValueKind::PnCounter).view(), Ok(json!(0)));
    }

    #[test]
    fn states_and_ops_round_trip_through_json() {
        let mut v = Value::new(ValueKind::OrSet);
        v.apply(&ValueOp::Add {
            element: "x".into(),
            tag: Hlc::new(3, 1, "n1"),
        })
        .unwrap();
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"or_set","elements":{"x":{"live":[{"wall_ms":3,"counter":1,"writer":"n1"}],"removed":[]}}}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        let op = ValueOp::Set {
            value: json!({"a": [1, null]}),
            stamp: Hlc::new(1, 0, "n"),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"op":"set","value":{"a":[1,null]},"stamp":{"wall_ms":1,"counter":0,"writer":"n"}}"#
        );
        assert_eq!(serde_json::from_str::<ValueOp>(&text).unwrap(), op);
        for kind in ValueKind::ALL {
            let v = Value::new(kind);
            let json = serde_json::to_value(&v).unwrap();
            assert_eq!(json["kind"], json!(kind.name()));
            assert_eq!(serde_json::from_value::<Value>(json).unwrap(), v);
        }
    }
}
