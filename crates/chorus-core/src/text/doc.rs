//! A text document held in a rope, and the one place ops touch text.
//!
//! Apply is all-or-nothing: the op is checked in full against the document
//! (shape, length, and the text of every `{"d": "text"}` delete) before the
//! first edit, so a refused op leaves the document exactly as it was. The rope
//! indexes by code point natively, which is the unit of every op.

use ropey::Rope;

use super::error::{OpError, UnitError};
use super::op::{Component, Delete, OpBuilder, TextOp};

/// A shared text document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextDoc {
    rope: Rope,
}

impl TextDoc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Length in code points.
    pub fn len_chars(&self) -> usize {
        self.rope.len_chars()
    }

    pub fn is_empty(&self) -> bool {
        self.rope.len_chars() == 0
    }

    /// Length in UTF-16 code units, the unit of browser editors.
    pub fn len_utf16(&self) -> usize {
        self.rope.len_utf16_cu()
    }

    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Checks `op` against this document without changing it.
    pub fn check(&self, op: &TextOp) -> Result<(), OpError> {
        op.check_against(self.len_chars())?;
        let mut pos = 0;
        for (index, c) in op.components().iter().enumerate() {
            if let Component::Delete(Delete::Text(expected)) = c {
                let n = super::op::char_len(expected);
                if !self.rope.slice(pos..pos + n).chars().eq(expected.chars()) {
                    return Err(OpError::DeleteMismatch { index });
                }
            }
            pos += c.input_len();
        }
        Ok(())
    }

    /// Applies `op`, or refuses it and changes nothing.
    pub fn apply(&mut self, op: &TextOp) -> Result<(), OpError> {
        self.check(op)?;
        self.apply_unchecked(op);
        Ok(())
    }

    /// Applies an op already checked against this document.
    fn apply_unchecked(&mut self, op: &TextOp) {
        let mut cursor = 0;
        for c in op.components() {
            match c {
                Component::Retain(n) => cursor += n,
                Component::Insert(s) => {
                    self.rope.insert(cursor, s);
                    cursor += super::op::char_len(s);
                }
                Component::Delete(d) => self.rope.remove(cursor..cursor + d.len()),
            }
        }
    }

    /// `op` with every counted delete replaced by the text it deletes here,
    /// so that it can be inverted (for undo).
    pub fn make_invertible(&self, op: &TextOp) -> Result<TextOp, OpError> {
        op.check_against(self.len_chars())?;
        let mut b = OpBuilder::with_capacity(op.components().len());
        let mut pos = 0;
        for c in op.components() {
            let n = c.input_len();
            b.push(match c {
                Component::Delete(Delete::Len(_)) => {
                    Component::Delete(Delete::Text(self.rope.slice(pos..pos + n).to_string()))
                }
                other => other.clone(),
            });
            pos += n;
        }
        Ok(b.finish())
    }

    /// Code points `start..end` as a string.
    pub fn slice(&self, start: usize, end: usize) -> Option<String> {
        (start <= end && end <= self.len_chars()).then(|| self.rope.slice(start..end).to_string())
    }

    /// The UTF-16 offset of code point `cp`.
    pub fn utf16_from_code_point(&self, cp: usize) -> Result<usize, UnitError> {
        let len = self.len_chars();
        if cp > len {
            return Err(UnitError::OutOfRange { offset: cp, len });
        }
        Ok(self.rope.char_to_utf16_cu(cp))
    }

    /// The code point at UTF-16 offset `u`; refuses offsets that split a
    /// surrogate pair.
    pub fn code_point_from_utf16(&self, u: usize) -> Result<usize, UnitError> {
        let len = self.len_utf16();
        if u > len {
            return Err(UnitError::OutOfRange { offset: u, len });
        }
        let cp = self.rope.utf16_cu_to_char(u);
        if self.rope.char_to_utf16_cu(cp) != u {
            return Err(UnitError::SplitsSurrogatePair { offset: u });
        }
        Ok(cp)
    }
}

impl From<&str> for TextDoc {
    fn from(s: &str) -> Self {
        Self { rope: Rope::from_str(s) }
    }
}

impl std::fmt::Display for TextDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.rope.chunks() {
            f.write_str(chunk)?;
        }
        Ok(())
    }
}

/// Applies `op` to a string (for tests and small documents).
pub fn apply_to_str(text: &str, op: &TextOp) -> Result<String, OpError> {
    let mut doc = TextDoc::from(text);
    doc.apply(op)?;
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn apply_edits_by_code_point() {
        let mut d = TextDoc::from("a😭b🏳️‍🌈c");
        d.apply(&op(r#"[1,{"d":"😭"},"X",1,{"d":4},"é"]"#)).unwrap();
        assert_eq!(d.to_string(), "aXbéc");
        assert_eq!(apply_to_str("ab\r\ncd", &op(r#"[2,{"d":2},"\n"]"#)).unwrap(), "ab\ncd");
    }

    #[test]
    fn refused_ops_change_nothing() {
        let mut d = TextDoc::from("hello");
        let before = d.clone();
        for (bad, err) in [
            (r#"["x",6]"#, OpError::TrailingRetain),
            (r#"["x",4,{"d":2}]"#, OpError::Overrun { needed: 6, doc_len: 5 }),
            (r#"["x",1,{"d":"EL"}]"#, OpError::DeleteMismatch { index: 2 }),
            (r#"["x",0]"#, OpError::EmptyRetain { index: 1 }),
        ] {
            assert_eq!(d.apply(&op(bad)), Err(err), "{bad}");
            assert_eq!(d, before);
        }
    }

    #[test]
    fn make_invertible_fills_in_deleted_text() {
        let d = TextDoc::from("a😭bc");
        let o = d.make_invertible(&op(r#"[1,{"d":2},"z"]"#)).unwrap();
        assert_eq!(o, op(r#"[1,{"d":"😭b"},"z"]"#));
        let mut d2 = d.clone();
        d2.apply(&o).unwrap();
        d2.apply(&o.invert().unwrap()).unwrap();
        assert_eq!(d2, d);
    }

    #[test]
    fn utf16_offsets_convert_and_refuse_split_pairs() {
        let d = TextDoc::from("a😭b");
        assert_eq!(d.len_utf16(), 4);
        assert_eq!(d.utf16_from_code_point(2).unwrap(), 3);
        assert_eq!(d.code_point_from_utf16(3).unwrap(), 2);
        assert_eq!(d.code_point_from_utf16(2), Err(UnitError::SplitsSurrogatePair { offset: 2 }));
        assert_eq!(d.code_point_from_utf16(5), Err(UnitError::OutOfRange { offset: 5, len: 4 }));
        assert_eq!(d.utf16_from_code_point(4), Err(UnitError::OutOfRange { offset: 4, len: 3 }));
    }
}
