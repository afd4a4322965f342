//! Recorded editing traces (the `editing-traces` JSON format), turned into
//! text ops.
//!
//! Traces are real histories of people typing, each with the text a correct
//! replay must end with, so they test the text type against something nobody
//! here chose. Parsing is pure: the caller reads (and decompresses) the file.

use serde::Deserialize;

use crate::text::{OpBuilder, TextOp};

/// One edit: at code point `pos`, delete `del` code points, then insert `ins`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "(usize, usize, String)")]
pub struct Patch {
    pub pos: usize,
    pub del: usize,
    pub ins: String,
}

impl From<(usize, usize, String)> for Patch {
    fn from((pos, del, ins): (usize, usize, String)) -> Self {
        Self { pos, del, ins }
    }
}

impl Patch {
    /// The patch as a text op: retain `pos`, delete `del`, insert `ins`.
    pub fn to_op(&self) -> TextOp {
        let mut b = OpBuilder::with_capacity(3);
        b.retain(self.pos);
        b.delete(crate::text::Delete::Len(self.del));
        b.insert(self.ins.as_str());
        b.finish()
    }
}

/// One transaction: patches applied one after another, against the document
/// as it stood after `parents` (concurrent traces only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Txn {
    #[serde(default)]
    pub parents: Vec<usize>,
    #[serde(default)]
    pub agent: usize,
    pub patches: Vec<Patch>,
}

impl Txn {
    /// The whole transaction as one op (its patches composed).
    pub fn to_op(&self) -> TextOp {
        let mut patches = self.patches.iter();
        let first = patches.next().map(Patch::to_op).unwrap_or_default();
        patches.fold(first, |op, p| op.compose(&p.to_op()))
    }
}

/// A recorded trace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    #[serde(default)]
    pub num_agents: Option<usize>,
    pub txns: Vec<Txn>,
}

impl Trace {
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Every patch as an op, in order (for sequential traces).
    pub fn patch_ops(&self) -> Vec<TextOp> {
        self.txns.iter().flat_map(|t| t.patches.iter().map(Patch::to_op)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::apply_to_str;

    #[test]
    fn patches_become_ops() {
        let t = Trace::from_json(
            r#"{"startContent":"","endContent":"hé!","txns":[
                {"time":"x","patches":[[0,0,"hXé"]]},
                {"time":"x","patches":[[1,1,""],[2,0,"!"]]}]}"#,
        )
        .unwrap();
        let mut text = t.start_content.clone();
        for op in t.patch_ops() {
            text = apply_to_str(&text, &op).unwrap();
        }
        assert_eq!(text, t.end_content);
        assert_eq!(t.txns[1].to_op(), serde_json::from_str(r#"[1,{"d":1},1,"!"]"#).unwrap());
    }
}
