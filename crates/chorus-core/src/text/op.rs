//! The text operation: a list of components that walks over a document.
//!
//! The wire form is the one of the `ot-text-unicode` type, component for
//! component: a number retains that many code points, a string inserts itself,
//! `{"d": n}` deletes n code points and `{"d": "text"}` deletes that text (the
//! form that can be inverted). Every length is counted in Unicode code points,
//! never in bytes or UTF-16 units, so an op means the same to every replica
//! whatever language it is written in.
//!
//! An op is valid when it has no empty components, no two adjacent retains and
//! no trailing retain (the reference's own rule). [`TextOp::normalize`] turns
//! any list of components into that canonical shape.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::OpError;

/// What a delete component removes: a count of code points, or the exact text
/// (which makes the op invertible).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Delete {
    Len(usize),
    Text(String),
}

impl Delete {
    /// Number of code points deleted.
    pub fn len(&self) -> usize {
        match self {
            Delete::Len(n) => *n,
            Delete::Text(s) => char_len(s),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Delete::Len(n) => *n == 0,
            Delete::Text(s) => s.is_empty(),
        }
    }
}

/// One step of a [`TextOp`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    /// Keep this many code points.
    Retain(usize),
    /// Insert this text at the current position.
    Insert(String),
    /// Remove code points at the current position.
    Delete(Delete),
}

impl Component {
    /// Code points this component spans in the document it applies to.
    pub fn input_len(&self) -> usize {
        match self {
            Component::Retain(n) => *n,
            Component::Insert(_) => 0,
            Component::Delete(d) => d.len(),
        }
    }

    /// Code points this component spans in the document it produces.
    pub fn output_len(&self) -> usize {
        match self {
            Component::Retain(n) => *n,
            Component::Insert(s) => char_len(s),
            Component::Delete(_) => 0,
        }
    }

    fn is_noop(&self) -> bool {
        match self {
            Component::Retain(n) => *n == 0,
            Component::Insert(s) => s.is_empty(),
            Component::Delete(d) => d.is_empty(),
        }
    }
}

/// A text operation: ordered components over a document of code points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TextOp {
    components: Vec<Component>,
}

/// Number of Unicode code points in `s`.
#[inline]
pub(crate) fn char_len(s: &str) -> usize {
    // Short inserts dominate real editing; ASCII needs no decoding.
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Byte offset of code point `n` in `s`, or `s.len()` when `n` reaches past it.
#[inline]
pub(crate) fn byte_offset(s: &str, n: usize) -> usize {
    if s.is_ascii() {
        return n.min(s.len());
    }
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

impl TextOp {
    /// The empty op, which changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// An op made of exactly these components, as given. Use [`TextOp::check`]
    /// before trusting it, or [`TextOp::normalize`] to make it canonical.
    pub fn from_components(components: Vec<Component>) -> Self {
        Self { components }
    }

    /// Inserts `text` at code point `at` (the simple form `{insert at, text}`).
    pub fn insert(at: usize, text: impl Into<String>) -> Self {
        let mut b = OpBuilder::new();
        b.retain(at);
        b.insert(text.into());
        b.finish()
    }

    /// Deletes `len` code points at `at` (the simple form `{delete at, length}`).
    pub fn delete(at: usize, len: usize) -> Self {
        let mut b = OpBuilder::new();
        b.retain(at);
        b.delete(Delete::Len(len));
        b.finish()
    }

    /// Deletes `text`, which starts at code point `at`; invertible.
    pub fn delete_text(at: usize, text: impl Into<String>) -> Self {
        let mut b = OpBuilder::new();
        b.retain(at);
        b.delete(Delete::Text(text.into()));
        b.finish()
    }

    /// The components, in order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    pub fn into_components(self) -> Vec<Component> {
        self.components
    }

    /// True when the op changes nothing (after normalization, the empty op).
    pub fn is_noop(&self) -> bool {
        self.components.iter().all(|c| matches!(c, Component::Retain(_)) || c.is_noop())
    }

    /// Code points of the document the op needs: its retains plus its deletes.
    /// The op applies to any document at least this long.
    pub fn input_len(&self) -> usize {
        self.components.iter().fold(0usize, |n, c| n.saturating_add(c.input_len()))
    }

    /// Change in document length, in code points, when the op applies.
    pub fn len_delta(&self) -> isize {
        self.components.iter().fold(0isize, |n, c| match c {
            Component::Retain(_) => n,
            Component::Insert(s) => n.saturating_add_unsigned(char_len(s)),
            Component::Delete(d) => n.saturating_sub_unsigned(d.len()),
        })
    }

    /// Checks the shape of the op: no empty components, no adjacent retains,
    /// no trailing retain.
    pub fn check(&self) -> Result<(), OpError> {
        let mut last_was_retain = false;
        for (index, c) in self.components.iter().enumerate() {
            match c {
                Component::Retain(0) => return Err(OpError::EmptyRetain { index }),
                Component::Retain(_) if last_was_retain => {
                    return Err(OpError::AdjacentRetains { index })
                }
                Component::Insert(s) if s.is_empty() => {
                    return Err(OpError::EmptyInsert { index })
                }
                Component::Delete(d) if d.is_empty() => {
                    return Err(OpError::EmptyDelete { index })
                }
                _ => {}
            }
            last_was_retain = matches!(c, Component::Retain(_));
        }
        if last_was_retain {
            return Err(OpError::TrailingRetain);
        }
        Ok(())
    }

    /// Checks the shape of the op and that it fits a document of `doc_len`
    /// code points.
    pub fn check_against(&self, doc_len: usize) -> Result<(), OpError> {
        self.check()?;
        let needed = self.input_len();
        if needed > doc_len {
            return Err(OpError::Overrun { needed, doc_len });
        }
        Ok(())
    }

    /// The canonical form: no-op components dropped, neighbours of one kind
    /// merged, the trailing retain trimmed. Applying it does the same thing.
    pub fn normalize(self) -> Self {
        let mut b = OpBuilder::with_capacity(self.components.len());
        for c in self.components {
            b.push(c);
        }
        b.finish()
    }

    /// The op that undoes this one, for ops whose deletes carry their text.
    pub fn invert(&self) -> Result<TextOp, OpError> {
        let mut b = OpBuilder::with_capacity(self.components.len());
        for (index, c) in self.components.iter().enumerate() {
            b.push(match c {
                Component::Retain(n) => Component::Retain(*n),
                Component::Insert(s) => Component::Delete(Delete::Text(s.clone())),
                Component::Delete(Delete::Text(s)) => Component::Insert(s.clone()),
                Component::Delete(Delete::Len(_)) => {
                    return Err(OpError::NotInvertible { index })
                }
            });
        }
        Ok(b.finish())
    }

    /// True when every delete carries its text, so [`TextOp::invert`] succeeds.
    pub fn is_invertible(&self) -> bool {
        !self
            .components
            .iter()
            .any(|c| matches!(c, Component::Delete(Delete::Len(_))))
    }

    /// The same op with its deletes' text forgotten (`{"d": n}` everywhere).
    pub fn strip_invertible(&self) -> TextOp {
        let mut b = OpBuilder::with_capacity(self.components.len());
        for c in &self.components {
            b.push(match c {
                Component::Delete(d) => Component::Delete(Delete::Len(d.len())),
                other => other.clone(),
            });
        }
        b.finish()
    }
}

/// Builds canonical ops one component at a time: drops no-ops, merges
/// neighbours of the same kind, and trims the trailing retain on `finish`.
#[derive(Debug, Default)]
pub struct OpBuilder {
    components: Vec<Component>,
}

impl OpBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self { components: Vec::with_capacity(n) }
    }

    pub fn retain(&mut self, n: usize) -> &mut Self {
        self.push(Component::Retain(n))
    }

    pub fn insert(&mut self, s: impl Into<String>) -> &mut Self {
        self.push(Component::Insert(s.into()))
    }

    pub fn delete(&mut self, d: Delete) -> &mut Self {
        self.push(Component::Delete(d))
    }

    /// Appends a component, merging it into the last one when both are of one
    /// kind. Merging a counted delete with a text delete keeps only the count.
    pub fn push(&mut self, c: Component) -> &mut Self {
        if c.is_noop() {
            return self;
        }
        match (self.components.last_mut(), c) {
            (Some(Component::Retain(a)), Component::Retain(b)) => *a = a.saturating_add(b),
            (Some(Component::Insert(a)), Component::Insert(b)) => a.push_str(&b),
            (Some(Component::Delete(a)), Component::Delete(b)) => match (a, b) {
                (Delete::Text(a), Delete::Text(b)) => a.push_str(&b),
                (a, b) => *a = Delete::Len(a.len().saturating_add(b.len())),
            },
            (_, c) => self.components.push(c),
        }
        self
    }

    pub fn finish(mut self) -> TextOp {
        if let Some(Component::Retain(_)) = self.components.last() {
            self.components.pop();
        }
        TextOp { components: self.components }
    }
}

impl FromIterator<Component> for TextOp {
    /// Collects components into a normalized op.
    fn from_iter<I: IntoIterator<Item = Component>>(iter: I) -> Self {
        let mut b = OpBuilder::new();
        for c in iter {
            b.push(c);
        }
        b.finish()
    }
}

// ---- serde: the ot-text-unicode JSON form --------------------------------

impl Serialize for Component {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Component::Retain(n) => s.serialize_u64(*n as u64),
            Component::Insert(text) => s.serialize_str(text),
            Component::Delete(d) => {
                let mut m = s.serialize_map(Some(1))?;
                match d {
                    Delete::Len(n) => m.serialize_entry("d", n)?,
                    Delete::Text(t) => m.serialize_entry("d", t)?,
                }
                m.end()
            }
        }
    }
}

const COMPONENT_EXPECTED: &str =
    "an op component: a number (retain), a string (insert), or {\"d\": count or text} (delete)";

struct ComponentVisitor;

impl<'de> Visitor<'de> for ComponentVisitor {
    type Value = Component;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(COMPONENT_EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Component, E> {
        usize::try_from(v)
            .map(Component::Retain)
            .map_err(|_| E::custom("retain count too large"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Component, E> {
        if v < 0 {
            return Err(E::custom(format!("a retain must be positive, got {v}")));
        }
        self.visit_u64(v as u64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Component, E> {
        Ok(Component::Insert(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Component, E> {
        Ok(Component::Insert(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Component, A::Error> {
        let mut delete = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "d" {
                return Err(de::Error::custom(format!(
                    "unknown key {key:?} in an op component (only \"d\", for delete, is allowed)"
                )));
            }
            if delete.is_some() {
                return Err(de::Error::duplicate_field("d"));
            }
            delete = Some(map.next_value::<DeleteValue>()?.0);
        }
        delete
            .map(Component::Delete)
            .ok_or_else(|| de::Error::custom("a delete component needs \"d\""))
    }
}

struct DeleteValue(Delete);

impl<'de> Deserialize<'de> for DeleteValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DeleteValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a delete count (number) or the deleted text (string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeleteValue, E> {
                usize::try_from(v)
                    .map(|n| DeleteValue(Delete::Len(n)))
                    .map_err(|_| E::custom("delete count too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeleteValue, E> {
                if v < 0 {
                    return Err(E::custom(format!("a delete count must be positive, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeleteValue, E> {
                Ok(DeleteValue(Delete::Text(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<DeleteValue, E> {
                Ok(DeleteValue(Delete::Text(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Component {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ComponentVisitor)
    }
}

impl Serialize for TextOp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.components.len()))?;
        for c in &self.components {
            seq.serialize_element(c)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TextOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a text op: an array of op components")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOp, A::Error> {
                let mut components = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(c) = seq.next_element::<Component>()? {
                    components.push(c);
                }
                Ok(TextOp { components })
            }
        }
        d.deserialize_seq(V)
    }
}

impl fmt::Display for TextOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn json_form_round_trips() {
        let text = r#"[3,"hi",{"d":2},1,{"d":"😭x"}]"#;
        let parsed = op(text);
        assert_eq!(
            parsed.components(),
            &[
                Component::Retain(3),
                Component::Insert("hi".into()),
                Component::Delete(Delete::Len(2)),
                Component::Retain(1),
                Component::Delete(Delete::Text("😭x".into())),
            ]
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text);
    }

    #[test]
    fn malformed_components_are_named() {
        for (bad, needle) in [
            (r#"[true]"#, "op component"),
            (r#"[-1]"#, "positive"),
            (r#"[{"x":1}]"#, "unknown key"),
            (r#"[{}]"#, "needs \"d\""),
            (r#"[{"d":-3}]"#, "positive"),
            (r#"[1.5]"#, "op component"),
            (r#"{"d":1}"#, "array"),
        ] {
            let err = serde_json::from_str::<TextOp>(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn check_rejects_what_the_reference_rejects() {
        assert_eq!(op("[0]").check(), Err(OpError::EmptyRetain { index: 0 }));
        assert_eq!(op(r#"[1,2,"a"]"#).check(), Err(OpError::AdjacentRetains { index: 1 }));
        assert_eq!(op(r#"["a",3]"#).check(), Err(OpError::TrailingRetain));
        assert_eq!(op(r#"[""]"#).check(), Err(OpError::EmptyInsert { index: 0 }));
        assert_eq!(op(r#"[{"d":0}]"#).check(), Err(OpError::EmptyDelete { index: 0 }));
        assert_eq!(op(r#"[{"d":""}]"#).check(), Err(OpError::EmptyDelete { index: 0 }));
        assert_eq!(op(r#"[2,{"d":"ab"}]"#).check_against(3), Err(OpError::Overrun { needed: 4, doc_len: 3 }));
        assert_eq!(op(r#"[2,"x",{"d":1}]"#).check_against(3), Ok(()));
    }

    #[test]
    fn normalize_merges_and_trims() {
        let n = op(r#"[1,2,"a","b",{"d":"x"},{"d":"y"},{"d":2},0,"",4]"#).normalize();
        assert_eq!(n, op(r#"[3,"ab",{"d":4}]"#));
        let n = op(r#"[{"d":"x"},{"d":"😭"}]"#).normalize();
        assert_eq!(n, op(r#"[{"d":"x😭"}]"#));
    }

    #[test]
    fn simple_forms() {
        assert_eq!(TextOp::insert(0, "a"), op(r#"["a"]"#));
        assert_eq!(TextOp::insert(4, "a"), op(r#"[4,"a"]"#));
        assert_eq!(TextOp::insert(4, ""), op("[]"));
        assert_eq!(TextOp::delete(0, 2), op(r#"[{"d":2}]"#));
        assert_eq!(TextOp::delete(5, 0), op("[]"));
        assert_eq!(TextOp::delete_text(1, "é"), op(r#"[1,{"d":"é"}]"#));
    }

    #[test]
    fn invert_swaps_inserts_and_text_deletes() {
        let o = op(r#"[2,{"d":"😭"},"ab",3,{"d":"c"}]"#);
        assert_eq!(o.invert().unwrap(), op(r#"[2,"😭",{"d":"ab"},3,"c"]"#));
        assert_eq!(op(r#"[1,{"d":2}]"#).invert(), Err(OpError::NotInvertible { index: 1 }));
        assert_eq!(o.strip_invertible(), op(r#"[2,{"d":1},"ab",3,{"d":1}]"#));
    }
}
