//! Cursors and selections carried through ops, so that a caret stays on the
//! same character while others edit around it.
//!
//! A position is a code point offset between characters. Someone else's insert
//! exactly at a caret leaves the caret before it (the reference's rule); the
//! caret's owner typing there moves it after the new text (the own-insert
//! rule), as an editor does for the person typing.

use serde::{Deserialize, Serialize};

use super::op::{char_len, Component, TextOp};

/// Whose op moves the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Author {
    /// The op belongs to the position's owner: an insert at the position pushes
    /// it along.
    Own,
    /// Someone else's op: an insert at the position stays after it.
    Other,
}

/// A selection: `anchor` stays put, `head` is where the caret is. Equal for a
/// plain caret; `head` may be before `anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    pub fn caret(at: usize) -> Self {
        Self { anchor: at, head: at }
    }

    pub fn is_caret(&self) -> bool {
        self.anchor == self.head
    }
}

impl TextOp {
    /// Where code point position `cursor` ends up after this op.
    ///
    /// Same as inserting a marker at `cursor` and transforming the op past it:
    /// the marker wins a tie with someone else's insert and loses it to its
    /// owner's, so it stays where applying the op to a marked text puts it.
    pub fn transform_position(&self, cursor: usize, author: Author) -> usize {
        let mut moved = cursor;
        // Code points of the original document walked so far.
        let mut pre = 0;
        for c in self.components() {
            match c {
                Component::Insert(s) => {
                    if pre < cursor || (pre == cursor && author == Author::Own) {
                        moved = moved.saturating_add(char_len(s));
                    } else {
                        break;
                    }
                }
                _ if pre >= cursor => break,
                Component::Retain(n) => pre = pre.saturating_add(*n),
                Component::Delete(d) => {
                    moved -= d.len().min(cursor - pre);
                    pre = pre.saturating_add(d.len());
                }
            }
        }
        moved
    }

    /// Where `selection` ends up after this op. A caret stays a caret; a range
    /// moves both ends, so text typed at its edges by others stays outside it.
    pub fn transform_selection(&self, selection: Selection, author: Author) -> Selection {
        Selection {
            anchor: self.transform_position(selection.anchor, author),
            head: self.transform_position(selection.head, author),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn inserts_at_the_caret_follow_the_own_insert_rule() {
        let o = op(r#"[3,"ab"]"#);
        assert_eq!(o.transform_position(3, Author::Other), 3);
        assert_eq!(o.transform_position(3, Author::Own), 5);
        assert_eq!(o.transform_position(2, Author::Own), 2);
        assert_eq!(o.transform_position(4, Author::Other), 6);
    }

    #[test]
    fn deletes_pull_positions_back_to_their_start() {
        let o = op(r#"[2,{"d":3}]"#);
        assert_eq!(o.transform_position(1, Author::Other), 1);
        assert_eq!(o.transform_position(4, Author::Other), 2);
        assert_eq!(o.transform_position(7, Author::Other), 4);
        // A caret inside replaced text goes to where the text was, before the
        // replacement (which was typed after the deleted range, not at the caret).
        let o = op(r#"[2,{"d":2},"xyz"]"#);
        assert_eq!(o.transform_position(3, Author::Own), 2);
        assert_eq!(o.transform_position(3, Author::Other), 2);
        assert_eq!(o.transform_position(2, Author::Own), 2);
        let o = op(r#"[2,"xyz",{"d":2}]"#);
        assert_eq!(o.transform_position(2, Author::Own), 5);
    }

    #[test]
    fn selections_move_both_ends() {
        let o = op(r#"["😭",4,{"d":1}]"#);
        let s = o.transform_selection(Selection { anchor: 5, head: 1 }, Author::Other);
        assert_eq!(s, Selection { anchor: 5, head: 2 });
    }
}
