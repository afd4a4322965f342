//! Last-writer-wins values: a single register, and a map of them.
//!
//! The write with the greatest [`Hlc`] stamp wins, whatever order writes and
//! merges arrive in. Stamps are unique when every writer uses its own clock,
//! but a broken writer could reuse one for two different values; the values
//! themselves then break the tie (by a fixed total order on JSON), so replicas
//! still agree instead of each keeping whichever arrived first.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::hlc::Hlc;

/// A JSON value, replaced as a whole by the latest write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LwwRegister {
    /// `null` until the first write.
    value: Json,
    /// `None` until the first write; any write beats it.
    stamp: Option<Hlc>,
}

impl LwwRegister {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn value(&self) -> &Json {
        &self.value
    }

    pub fn stamp(&self) -> Option<&Hlc> {
        self.stamp.as_ref()
    }

    /// Writes `value` if `stamp` is later than the current write. Returns
    /// whether it took effect. Idempotent, and writes commute.
    pub fn set(&mut self, value: Json, stamp: Hlc) -> bool {
        let wins = match &self.stamp {
            None => true,
            Some(current) => match stamp.cmp(current) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => cmp_json(&value, &self.value) == Ordering::Greater,
            },
        };
        if wins {
            self.value = value;
            self.stamp = Some(stamp);
        }
        wins
    }

    /// Keeps whichever of the two writes is later.
    pub fn merge(&mut self, other: &LwwRegister) {
        if let Some(stamp) = &other.stamp {
            self.set(other.value.clone(), stamp.clone());
        }
    }
}

/// String keys, each a [`LwwRegister`]. Deleting a key writes `null` with a
/// stamp, so a delete and a concurrent set are ordered like two sets; `null`
/// means "absent", as in JSON Merge Patch (RFC 7396), so setting a key to
/// `null` is the same as deleting it. Deleted keys keep their stamp (a
/// tombstone) so that an older set arriving later cannot bring them back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LwwMap {
    entries: BTreeMap<String, LwwRegister>,
}

impl LwwMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` at `key` if `stamp` is later than the key's last write.
    pub fn set(&mut self, key: impl Into<String>, value: Json, stamp: Hlc) -> bool {
        self.entries
            .entry(key.into())
            .or_default()
            .set(value, stamp)
    }

    /// Deletes `key` if `stamp` is later than the key's last write.
    pub fn delete(&mut self, key: impl Into<String>, stamp: Hlc) -> bool {
        self.set(key, Json::Null, stamp)
    }

    /// The value at `key`; `None` when never set or deleted.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.entries
            .get(key)
            .map(LwwRegister::value)
            .filter(|v| !v.is_null())
    }

    /// The stamp of `key`'s last write (a delete included).
    pub fn stamp(&self, key: &str) -> Option<&Hlc> {
        self.entries.get(key).and_then(LwwRegister::stamp)
    }

    /// The present keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.entries
            .iter()
            .filter(|(_, r)| !r.value().is_null())
            .map(|(k, r)| (k.as_str(), r.value()))
    }

    /// Merges key by key.
    pub fn merge(&mut self, other: &LwwMap) {
        for (key, theirs) in &other.entries {
            self.entries.entry(key.clone()).or_default().merge(theirs);
        }
    }

    /// The present entries as a JSON object.
    pub fn view(&self) -> Json {
        Json::Object(
            self.iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        )
    }
}

/// A total order on JSON values, used only to break ties between writes with
/// one stamp. By type first (null, bool, number, string, array, object), then
/// by content; objects compare as their entries sorted by key, so the order
/// does not depend on how a map happens to be stored.
pub(crate) fn cmp_json(a: &Json, b: &Json) -> Ordering {
    fn rank(v: &Json) -> u8 {
        match v {
            Json::Null => 0,
            Json::Bool(_) => 1,
            Json::Number(_) => 2,
            Json::String(_) => 3,
            Json::Array(_) => 4,
            Json::Object(_) => 5,
        }
    }
    match (a, b) {
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        // Numbers need a deterministic order, not a numeric one; their text
        // form is exact and distinguishes 1 from 1.0 as `==` does.
        (Json::Number(x), Json::Number(y)) => x.to_string().cmp(&y.to_string()),
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (Json::Array(x), Json::Array(y)) => cmp_seq(x.iter(), y.iter(), cmp_json),
        (Json::Object(x), Json::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            cmp_seq(xs.into_iter(), ys.into_iter(), |(k1, v1), (k2, v2)| {
                k1.cmp(k2).then_with(|| cmp_json(v1, v2))
            })
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn cmp_seq<T>(
    mut xs: impl Iterator<Item = T>,
    mut ys: impl Iterator<Item = T>,
    cmp: impl Fn(T, T) -> Ordering,
) -> Ordering {
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match cmp(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(wall_ms: u64, writer: &str) -> Hlc {
        Hlc::new(wall_ms, 0, writer)
    }

    #[test]
    fn the_later_stamp_wins_in_either_order() {
        let mut a = LwwRegister::new();
        assert!(a.set(json!("first"), at(1, "x")));
        assert!(a.set(json!("second"), at(2, "x")));
        assert!(
            !a.set(json!("late"), at(1, "y")),
            "an older write that arrives late loses"
        );
        assert_eq!(a.value(), &json!("second"));
        // The writer breaks a tie on wall time and counter.
        let mut b = LwwRegister::new();
        b.set(json!("by y"), at(5, "y"));
        b.set(json!("by x"), at(5, "x"));
        assert_eq!(b.value(), &json!("by y"));
    }

    #[test]
    fn a_reused_stamp_is_settled_by_the_value() {
        let (mut a, mut b) = (LwwRegister::new(), LwwRegister::new());
        a.set(json!(1), at(1, "x"));
        a.set(json!("s"), at(1, "x"));
        b.set(json!("s"), at(1, "x"));
        b.set(json!(1), at(1, "x"));
        assert_eq!(a, b);
        assert_eq!(a.value(), &json!("s"));
    }

    #[test]
    fn deletes_are_writes_of_null_and_hide_the_key() {
        let mut m = LwwMap::new();
        m.set("title", json!("Plan"), at(1, "a"));
        m.delete("title", at(2, "b"));
        m.set("title", json!("Old"), at(1, "c"));
        assert_eq!(m.get("title"), None, "the tombstone outranks the older set");
        m.set("owner", json!({"id": 7}), at(3, "a"));
        assert_eq!(m.view(), json!({"owner": {"id": 7}}));
    }

    #[test]
    fn json_order_ignores_object_key_order() {
        let a: Json = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(cmp_json(&a, &b), Ordering::Equal);
        assert_ne!(cmp_json(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(cmp_json(&json!(null), &json!(false)), Ordering::Less);
        assert_eq!(cmp_json(&json!([1, 2]), &json!([1, 2, 0])), Ordering::Less);
    }
}
