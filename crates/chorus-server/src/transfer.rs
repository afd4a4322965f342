//! `chorus export` and `chorus import`: a room's documents and values as
//! JSON lines, between any two backends (from one node's SQLite to a shared
//! Redis when a team outgrows one node, and back).
//!
//! The first line names the format and the room; then one line per
//! document (its text at the head, with the version, epoch and digest
//! there, so readers of the old store carry on without a reset when they
//! are at the head) and one per value (its state). Ops are not exported:
//! the imported document starts its log at the exported version.
//!
//! An import checks the whole file and the target room first, and refuses
//! (changing nothing) when the room already has one of the documents or
//! values, unless asked to replace them.

use std::io::{BufRead, Write};

use chorus_core::digest::Digest;
use chorus_store::{random_id, Backend, ImportedDoc, StoreError, ValuePut};
use serde::{Deserialize, Serialize};

use crate::auth::{check_doc_name, check_value_name};

/// The format's name and version, on the first line.
const FORMAT: &str = "chorus-export/1";

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("document {doc} cannot be exported: {reason}")]
    Unreadable { doc: String, reason: String },
    #[error("room {room} already has {what}; nothing was imported (--replace replaces them)")]
    Exists { room: String, what: String },
    #[error("room {room} changed while importing ({what}); run the import again")]
    Raced { room: String, what: String },
}

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    Header { format: String, room: String },
    Doc { doc: String, epoch: String, version: u64, digest: Digest, changed_at: u64, text: String },
    Value { name: String, state: chorus_core::crdt::Value },
}

/// What an export or an import moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub docs: usize,
    pub values: usize,
}

/// Writes the room's documents and values to `out`, one JSON line each.
pub async fn export(backend: &dyn Backend, room: &str, mut out: impl Write) -> Result<Moved, TransferError> {
    let mut write = |line: &Line| -> Result<(), TransferError> {
        serde_json::to_writer(&mut out, line).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    write(&Line::Header { format: FORMAT.into(), room: room.into() })?;
    let mut moved = Moved::default();
    for summary in backend.list_docs(room).await? {
        let stored = backend.load(room, &summary.name).await?;
        let version = stored.head();
        if version == 0 {
            continue; // Deleted since it was listed.
        }
        let text = stored.text_at(version).map_err(|e| TransferError::Unreadable { doc: summary.name.clone(), reason: e.to_string() })?;
        let line = Line::Doc { doc: summary.name, epoch: stored.epoch.clone(), version, digest: stored.head_digest(), changed_at: summary.changed_at, text };
        write(&line)?;
        moved.docs += 1;
    }
    let mut values = backend.values(room).await?.values;
    values.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in values {
        write(&Line::Value { name, state: value.state })?;
        moved.values += 1;
    }
    out.flush()?;
    Ok(moved)
}

/// Reads an export: its room and its documents and values.
pub fn read(input: impl BufRead) -> Result<(String, Vec<Line>), TransferError> {
    let mut room = None;
    let mut lines = Vec::new();
    for (i, text) in input.lines().enumerate() {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| TransferError::BadLine { line: i + 1, reason };
        let line: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        match (&line, &room) {
            (Line::Header { format, room: r }, None) if format == FORMAT => room = Some(r.clone()),
            (Line::Header { format, .. }, None) => return Err(bad(format!("format {format:?} is not {FORMAT:?}"))),
            (Line::Header { .. }, Some(_)) => return Err(bad("a second header".into())),
            (_, None) => return Err(bad(format!("the file does not start with a {FORMAT} header"))),
            (Line::Doc { version: 0, doc, .. }, _) => return Err(bad(format!("document {doc} at version 0"))),
            (Line::Doc { doc, .. }, _) if check_doc_name(doc).is_err() => return Err(bad(format!("document name {doc:?}: {}", check_doc_name(doc).unwrap_err()))),
            (Line::Value { name, .. }, _) if check_value_name(name).is_err() => return Err(bad(format!("value name {name:?}: {}", check_value_name(name).unwrap_err()))),
            _ => lines.push(line),
        }
    }
    let room = room.ok_or(TransferError::BadLine { line: 1, reason: "an empty file".into() })?;
    Ok((room, lines))
}

/// Imports `lines` into `room`. Without `replace`, refuses (changing
/// nothing) when the room has any of the documents or values already.
pub async fn import(backend: &dyn Backend, room: &str, lines: &[Line], replace: bool) -> Result<Moved, TransferError> {
    let docs: Vec<&str> = lines.iter().filter_map(|l| if let Line::Doc { doc, .. } = l { Some(doc.as_str()) } else { None }).collect();
    let heads = backend.status(room, &docs, crate::clock::now_ms()).await?.docs;
    let current_values = backend.values(room).await?.values;
    let version_of = |name: &str| current_values.iter().find(|(n, _)| n == name).map(|(_, v)| v.version);
    if !replace {
        let mut present = Vec::new();
        for (doc, head) in docs.iter().zip(&heads) {
            if let Some(h) = head.as_ref().filter(|h| h.version > 0) {
                present.push(format!("document {doc} (version {})", h.version));
            }
        }
        for line in lines {
            if let Line::Value { name, .. } = line {
                if version_of(name).is_some() {
                    present.push(format!("value {name}"));
                }
            }
        }
        if !present.is_empty() {
            return Err(TransferError::Exists { room: room.into(), what: present.join(", ") });
        }
    }
    let mut moved = Moved::default();
    for (line, head) in lines.iter().filter(|l| matches!(l, Line::Doc { .. })).zip(&heads) {
        let Line::Doc { doc, epoch, version, digest, changed_at, text } = line else { continue };
        // One opened somewhere and never edited is not a document yet: the
        // import takes its place.
        if head.as_ref().is_some_and(|h| h.version > 0) {
            backend.delete_doc(room, doc).await?;
        }
        let imported = ImportedDoc { epoch, version: *version, digest: *digest, text, changed_at: *changed_at };
        if !backend.import_doc(room, doc, &imported).await? {
            return Err(TransferError::Raced { room: room.into(), what: format!("document {doc} was edited meanwhile") });
        }
        moved.docs += 1;
    }
    for line in lines {
        let Line::Value { name, state } = line else { continue };
        let expected = version_of(name).unwrap_or(0);
        match backend.put_value(room, name, expected, state, &random_id()).await? {
            ValuePut::Written { .. } => moved.values += 1,
            ValuePut::Conflict { .. } => return Err(TransferError::Raced { room: room.into(), what: format!("value {name} was changed meanwhile") }),
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_reads_back_and_bad_files_say_where() {
        let lines = [
            r#"{"kind":"header","format":"chorus-export/1","room":"r"}"#,
            r#"{"kind":"doc","doc":"d","epoch":"e","version":3,"digest":"0000000000000000","changed_at":5,"text":"héllo"}"#,
        ];
        let (room, read) = read(lines.join("\n").as_bytes()).unwrap();
        assert_eq!(room, "r");
        assert!(matches!(&read[..], [Line::Doc { doc, version: 3, .. }] if doc == "d"));
        let err = read_err(&[lines[1]]);
        assert!(err.contains("line 1") && err.contains("header"), "{err}");
        let err = read_err(&[lines[0], "{not json"]);
        assert!(err.starts_with("line 2"), "{err}");
        let err = read_err(&[r#"{"kind":"header","format":"chorus-export/9","room":"r"}"#]);
        assert!(err.contains("chorus-export/9"), "{err}");
    }

    fn read_err(lines: &[&str]) -> String {
        match read(lines.join("\n").as_bytes()) {
            Ok(_) => panic!("{lines:?} was read, not refused"),
            Err(err) => err.to_string(),
        }
    }
}
