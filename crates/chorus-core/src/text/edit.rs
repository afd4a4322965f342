//! The simple edit forms a client may send instead of a full op:
//! `{"insert": {"at": 3, "text": "hi"}}` and `{"delete": {"at": 3, "length": 2}}`.

use serde::{Deserialize, Serialize};

use super::op::TextOp;

/// One insert or one delete, in code points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SimpleEdit {
    Insert { at: usize, text: String },
    Delete { at: usize, length: usize },
}

impl From<SimpleEdit> for TextOp {
    fn from(e: SimpleEdit) -> Self {
        match e {
            SimpleEdit::Insert { at, text } => TextOp::insert(at, text),
            SimpleEdit::Delete { at, length } => TextOp::delete(at, length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_forms_convert_to_ops() {
        let e: SimpleEdit = serde_json::from_str(r#"{"insert":{"at":2,"text":"😭"}}"#).unwrap();
        assert_eq!(TextOp::from(e), serde_json::from_str(r#"[2,"😭"]"#).unwrap());
        let e: SimpleEdit = serde_json::from_str(r#"{"delete":{"at":0,"length":3}}"#).unwrap();
        assert_eq!(TextOp::from(e), serde_json::from_str(r#"[{"d":3}]"#).unwrap());
        assert!(serde_json::from_str::<SimpleEdit>(r#"{"insert":{"at":-1,"text":"a"}}"#).is_err());
    }
}
