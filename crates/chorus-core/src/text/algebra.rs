//! Transform and compose: the two laws that make a server-ordered op log
//! converge.
//!
//! Both walk one op's components while taking matching pieces off the other,
//! exactly as the `ot-text-unicode` reference does, so that Chorus and the
//! JavaScript SDK (which uses the reference) compute identical ops. An op is
//! treated as retaining everything past its end, so neither function needs the
//! document. Inputs are assumed valid ([`TextOp::check`]); an invalid input gives
//! a meaningless result but never a panic or a hang.

use super::op::{byte_offset, char_len, Component, Delete, OpBuilder, TextOp};

/// Which op wins when both insert at the same position.
///
/// In a Chorus op log the op committed first is `Left`: an incoming op is
/// transformed with `Side::Right` against everything committed since its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This op's insert goes before the other's.
    Left,
    /// This op's insert goes after the other's.
    Right,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// A borrowed piece of a component, cut off by [`Taker`].
enum Piece<'a> {
    Retain(usize),
    Insert(&'a str),
    DeleteLen(usize),
    DeleteText(&'a str),
}

impl Piece<'_> {
    fn into_component(self) -> Component {
        match self {
            Piece::Retain(n) => Component::Retain(n),
            Piece::Insert(s) => Component::Insert(s.to_owned()),
            Piece::DeleteLen(n) => Component::Delete(Delete::Len(n)),
            Piece::DeleteText(s) => Component::Delete(Delete::Text(s.to_owned())),
        }
    }
}

/// Which kind of component `take` hands out whole rather than splitting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Whole {
    Inserts,
    Deletes,
}

/// Cuts pieces off the front of an op. Past the end, the op retains forever.
struct Taker<'a> {
    components: &'a [Component],
    index: usize,
    /// Progress into the current component: code points for retains and
    /// counted deletes, bytes for inserts and text deletes.
    offset: usize,
}

impl<'a> Taker<'a> {
    fn new(op: &'a TextOp) -> Self {
        Self { components: op.components(), index: 0, offset: 0 }
    }

    fn peek_is_insert(&self) -> bool {
        matches!(self.components.get(self.index), Some(Component::Insert(_)))
    }

    fn advance(&mut self) {
        self.index += 1;
        self.offset = 0;
    }

    /// The next piece, at most `max` code points long (or the whole remaining
    /// component when `max` is `None` or the component is of the `whole` kind).
    /// `None` only when the op is exhausted and `max` is `None`.
    fn take(&mut self, max: Option<usize>, whole: Option<Whole>) -> Option<Piece<'a>> {
        let Some(c) = self.components.get(self.index) else {
            return max.map(Piece::Retain);
        };
        match c {
            Component::Retain(n) => {
                let rest = n - self.offset.min(*n);
                match max {
                    Some(m) if m < rest => {
                        self.offset += m;
                        Some(Piece::Retain(m))
                    }
                    _ => {
                        self.advance();
                        Some(Piece::Retain(rest))
                    }
                }
            }
            Component::Insert(s) => {
                let rest = &s[self.offset..];
                match max {
                    Some(m) if whole != Some(Whole::Inserts) && m < char_len(rest) => {
                        let cut = byte_offset(rest, m);
                        self.offset += cut;
                        Some(Piece::Insert(&rest[..cut]))
                    }
                    _ => {
                        self.advance();
                        Some(Piece::Insert(rest))
                    }
                }
            }
            Component::Delete(Delete::Len(n)) => {
                let rest = n - self.offset.min(*n);
                match max {
                    Some(m) if whole != Some(Whole::Deletes) && m < rest => {
                        self.offset += m;
                        Some(Piece::DeleteLen(m))
                    }
                    _ => {
                        self.advance();
                        Some(Piece::DeleteLen(rest))
                    }
                }
            }
            Component::Delete(Delete::Text(s)) => {
                let rest = &s[self.offset..];
                match max {
                    Some(m) if whole != Some(Whole::Deletes) && m < char_len(rest) => {
                        let cut = byte_offset(rest, m);
                        self.offset += cut;
                        Some(Piece::DeleteText(&rest[..cut]))
                    }
                    _ => {
                        self.advance();
                        Some(Piece::DeleteText(rest))
                    }
                }
            }
        }
    }
}

fn piece_len(p: &Piece<'_>) -> usize {
    match p {
        Piece::Retain(n) | Piece::DeleteLen(n) => *n,
        Piece::Insert(s) | Piece::DeleteText(s) => char_len(s),
    }
}

/// Code points `start..end` of a delete, keeping its text when it has one.
fn delete_slice(d: &Delete, start: usize, end: usize) -> Delete {
    match d {
        Delete::Len(n) => Delete::Len(end.min(*n).saturating_sub(start)),
        Delete::Text(s) => {
            let a = byte_offset(s, start);
            let b = a + byte_offset(&s[a..], end.saturating_sub(start));
            Delete::Text(s[a..b].to_owned())
        }
    }
}

impl TextOp {
    /// Rewrites this op to apply after `other`, where both were made against
    /// the same document. `side` breaks the tie when both insert at one spot.
    ///
    /// Convergence (TP1): for ops `a` and `b` on one document,
    /// `apply(apply(d, a), b.transform(a, s.other()))` equals
    /// `apply(apply(d, b), a.transform(b, s))`.
    pub fn transform(&self, other: &TextOp, side: Side) -> TextOp {
        let mut out = OpBuilder::with_capacity(self.components().len() + 2);
        let mut mine = Taker::new(self);
        for c2 in other.components() {
            match c2 {
                Component::Retain(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let Some(p) = mine.take(Some(left), Some(Whole::Inserts)) else { break };
                        if !matches!(p, Piece::Insert(_)) {
                            left -= piece_len(&p).min(left);
                        }
                        out.push(p.into_component());
                    }
                }
                Component::Insert(s) => {
                    if side == Side::Left && mine.peek_is_insert() {
                        if let Some(p) = mine.take(None, None) {
                            out.push(p.into_component());
                        }
                    }
                    out.retain(char_len(s));
                }
                Component::Delete(d) => {
                    let mut left = d.len();
                    while left > 0 {
                        let Some(p) = mine.take(Some(left), Some(Whole::Inserts)) else { break };
                        match p {
                            // Text the other op deleted: ours need not retain or delete it.
                            Piece::Retain(k) | Piece::DeleteLen(k) => left -= k.min(left),
                            Piece::DeleteText(s) => left -= char_len(s).min(left),
                            Piece::Insert(s) => {
                                out.insert(s);
                            }
                        }
                    }
                }
            }
        }
        while let Some(p) = mine.take(None, None) {
            out.push(p.into_component());
        }
        out.finish()
    }

    /// The single op that does this op and then `next` (made against this op's
    /// result).
    pub fn compose(&self, next: &TextOp) -> TextOp {
        let mut out = OpBuilder::with_capacity(self.components().len() + next.components().len());
        let mut first = Taker::new(self);
        for c2 in next.components() {
            match c2 {
                Component::Retain(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let Some(p) = first.take(Some(left), Some(Whole::Deletes)) else { break };
                        if !matches!(p, Piece::DeleteLen(_) | Piece::DeleteText(_)) {
                            left -= piece_len(&p).min(left);
                        }
                        out.push(p.into_component());
                    }
                }
                Component::Insert(s) => {
                    out.insert(s.as_str());
                }
                Component::Delete(d) => {
                    let len = d.len();
                    let mut offset = 0;
                    while offset < len {
                        let Some(p) = first.take(Some(len - offset), Some(Whole::Deletes)) else {
                            break;
                        };
                        match p {
                            Piece::Retain(k) => {
                                out.delete(delete_slice(d, offset, offset + k));
                                offset += k;
                            }
                            // Inserted by the first op, deleted by the second: gone.
                            Piece::Insert(s) => offset += char_len(s),
                            p @ (Piece::DeleteLen(_) | Piece::DeleteText(_)) => {
                                out.push(p.into_component());
                            }
                        }
                    }
                }
            }
        }
        while let Some(p) = first.take(None, None) {
            out.push(p.into_component());
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn concurrent_inserts_at_one_spot_follow_the_side() {
        let a = op(r#"[2,"a"]"#);
        let b = op(r#"[2,"b"]"#);
        assert_eq!(a.transform(&b, Side::Left), op(r#"[2,"a"]"#));
        assert_eq!(a.transform(&b, Side::Right), op(r#"[3,"a"]"#));
    }

    #[test]
    fn overlapping_deletes_shrink_to_the_remainder() {
        // "abcdef": a deletes "bcd", b deletes "cde".
        let a = op(r#"[1,{"d":"bcd"}]"#);
        let b = op(r#"[2,{"d":"cde"}]"#);
        assert_eq!(a.transform(&b, Side::Left), op(r#"[1,{"d":"b"}]"#));
        assert_eq!(b.transform(&a, Side::Right), op(r#"[1,{"d":"e"}]"#));
    }

    #[test]
    fn insert_inside_a_concurrent_delete_survives() {
        // "hello world": a deletes "hello ", b inserts "u" before "world".
        let a = op(r#"[{"d":6}]"#);
        let b = op(r#"[6,"u"]"#);
        assert_eq!(b.transform(&a, Side::Right), op(r#"["u"]"#));
        assert_eq!(a.transform(&b, Side::Left), op(r#"[{"d":6}]"#));
    }

    #[test]
    fn astral_code_points_count_once() {
        let a = op(r#"[1,{"d":"😭🏳️‍🌈"}]"#);
        let b = op(r#"[3,"x"]"#);
        // The flag is 4 code points; b's insert lands inside it, so a's delete
        // splits around it and keeps the deleted text on both sides.
        assert_eq!(a.transform(&b, Side::Left), op(r#"[1,{"d":"😭🏳"},1,{"d":"️‍🌈"}]"#));
        assert_eq!(b.transform(&a, Side::Right), op(r#"[1,"x"]"#));
    }

    #[test]
    fn compose_cancels_inserted_then_deleted_text() {
        let a = op(r#"[1,"xyz"]"#);
        let b = op(r#"[2,{"d":2}]"#);
        assert_eq!(a.compose(&b), op(r#"[1,"x"]"#));
        let a = op(r#"[{"d":"ab"}]"#);
        let b = op(r#"[{"d":"c"}]"#);
        assert_eq!(a.compose(&b), op(r#"[{"d":"abc"}]"#));
        let a = op(r#"[1,"😭"]"#);
        let b = op(r#"[1,{"d":"😭a"}]"#);
        assert_eq!(a.compose(&b), op(r#"[1,{"d":"a"}]"#));
    }
}
