//! Document logs on Redis: the order of each text document.
//!
//! Redis holds the ops, the snapshot, each client's last (seq, version) and
//! the users' undo histories, never the text at the head (the nodes do), so
//! a commit is a constant amount of work whatever the document's size. The
//! log is a list whose first element is the op after version `oldest`;
//! trimming drops from the front behind a snapshot.

use async_trait::async_trait;
use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_store::{
    random_id, Appended, Commit, DeletedDoc, DocCatalog, DocStore, DocSummary, Group, ImportedDoc, Snapshot, StoreError, StoreResult, StoredDoc,
};
use redis::Value as Reply;

use crate::{channel, decode_error, doc_key, number, room_key, text, RedisStore};

/// The room's set of stored document names.
fn docs_key(room: &str) -> String {
    room_key(room, "docs")
}

/// Every key of a document, then the room's set of document names.
fn doc_and_catalog_keys(room: &str, doc: &str) -> [String; 7] {
    let [meta, log, snapshot, clients, history, history_rev] = ["meta", "log", "snapshot", "clients", "history", "history-rev"].map(|what| doc_key(room, doc, what));
    [meta, log, snapshot, clients, history, history_rev, docs_key(room)]
}

pub(crate) fn entry_from(bytes: &[u8]) -> StoreResult<LogEntry> {
    serde_json::from_slice(bytes).map_err(|e| decode_error("op", e))
}

fn entries(replies: &[Reply]) -> StoreResult<Vec<LogEntry>> {
    replies
        .iter()
        .map(|r| match r {
            Reply::BulkString(b) => entry_from(b),
            other => Err(decode_error("op", format!("{other:?}"))),
        })
        .collect()
}

pub(crate) fn digest(reply: &Reply) -> StoreResult<Digest> {
    let hex = text(reply)?;
    Digest::from_hex(&hex).ok_or_else(|| decode_error("digest", hex))
}

/// One outcome of doc_append.lua (or of one op of doc_append_group.lua).
fn appended(reply: &[Reply]) -> StoreResult<Appended> {
    let Some((outcome, rest)) = reply.split_first() else {
        return Err(decode_error("append reply", "empty"));
    };
    Ok(match (text(outcome)?.as_str(), rest) {
        ("committed", [version, at]) => Appended::Committed { version: number(version)?, at: number(at)? },
        ("duplicate", [version]) => Appended::Duplicate { version: number(version)? },
        ("conflict", [head, missed @ ..]) => Appended::Conflict { head: number(head)?, missed: entries(missed)? },
        ("stale", [last]) => Appended::StaleSeq { last: number(last)? },
        ("epoch", [epoch]) => Appended::EpochChanged { epoch: text(epoch)? },
        ("diverged", []) => Appended::Diverged,
        ("history", []) => Appended::HistoryMoved,
        (other, _) => return Err(decode_error("append outcome", format!("{other} {rest:?}"))),
    })
}

#[async_trait]
impl DocStore for RedisStore {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        let items: Vec<Reply> = self.invoke(self.scripts.doc_load.keys(&[doc_key(room, doc, "meta"), doc_key(room, doc, "log"), doc_key(room, doc, "snapshot"), docs_key(room)])
            .arg(random_id())
            .arg(doc)).await?;
        let [epoch, snapshot_version, snapshot, oldest_digest, ops @ ..] = items.as_slice() else {
            return Err(decode_error("document", format!("{items:?}")));
        };
        Ok(StoredDoc {
            epoch: text(epoch)?,
            snapshot_version: number(snapshot_version)?,
            snapshot: text(snapshot)?,
            oldest_digest: digest(oldest_digest)?,
            ops: entries(ops)?,
        })
    }

    async fn append(&self, room: &str, doc: &str, c: &Commit<'_>) -> StoreResult<Appended> {
        let op = serde_json::to_string(c.op).map_err(|e| StoreError::Backend(e.to_string()))?;
        let [meta, log, clients, history, history_rev] = ["meta", "log", "clients", "history", "history-rev"].map(|what| doc_key(room, doc, what));
        let mut invocation = self.scripts.doc_append.keys(&[meta, log, clients, history, history_rev, docs_key(room)]);
        invocation
            .arg(c.epoch)
            .arg(c.expected)
            .arg(c.expected_digest.to_hex())
            .arg(c.client)
            .arg(c.seq.to_string())
            .arg(op)
            .arg(c.digest.to_hex())
            .arg(doc)
            .arg(channel(room))
            .arg(self.bus.node())
            .arg(self.publish_command());
        if let Some(h) = c.history {
            invocation.arg(h.user).arg(h.expected_rev.to_string()).arg(h.token).arg(h.saved);
        }
        let reply: Vec<Reply> = self.invoke(&invocation).await?;
        appended(&reply)
    }

    async fn append_group(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>> {
        group.check_size()?;
        if group.ops.is_empty() {
            return Ok(Vec::new());
        }
        let keys = [doc_key(room, doc, "meta"), doc_key(room, doc, "log"), doc_key(room, doc, "clients"), docs_key(room)];
        let mut invocation = self.scripts.doc_append_group.keys(&keys);
        invocation
            .arg(group.epoch)
            .arg(group.expected)
            .arg(group.expected_digest.to_hex())
            .arg(doc)
            .arg(channel(room))
            .arg(self.bus.node())
            .arg(self.publish_command());
        for o in group.ops {
            let op = serde_json::to_string(o.op).map_err(|e| StoreError::Backend(e.to_string()))?;
            invocation.arg(o.client).arg(o.seq.to_string()).arg(op).arg(o.digest.to_hex());
        }
        let replies: Vec<Vec<Reply>> = self.invoke(&invocation).await?;
        if replies.is_empty() || replies.len() > group.ops.len() {
            return Err(decode_error("group reply", format!("{} outcomes for {} ops", replies.len(), group.ops.len())));
        }
        replies.iter().map(|r| appended(r)).collect()
    }

    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        let reply: Reply = self.invoke(self.scripts.doc_since.keys(&[doc_key(room, doc, "meta"), doc_key(room, doc, "log")])
            .arg(epoch)
            .arg(version)).await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => entries(&items).map(Some),
            other => Err(decode_error("ops reply", format!("{other:?}"))),
        }
    }

    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        let last: Option<String> = self.query(redis::cmd("HGET").arg(doc_key(room, doc, "clients")).arg(client)).await?;
        let Some(last) = last else { return Ok(None) };
        let parsed = last.split_once(':').and_then(|(s, v)| Some((s.parse().ok()?, v.parse().ok()?)));
        parsed.map(Some).ok_or_else(|| decode_error("client entry", last))
    }

    async fn snapshot(&self, room: &str, doc: &str, s: Snapshot<'_>) -> StoreResult<()> {
        let _: i64 = self.invoke(self.scripts.doc_snapshot.keys(&[doc_key(room, doc, "meta"), doc_key(room, doc, "log"), doc_key(room, doc, "snapshot"), doc_key(room, doc, "clients")])
            .arg(s.epoch)
            .arg(s.version)
            .arg(s.text)
            .arg(s.trim_to)
            .arg(s.trim_digest.to_hex())).await?;
        Ok(())
    }
}

#[async_trait]
impl DocCatalog for RedisStore {
    async fn list_docs(&self, room: &str) -> StoreResult<Vec<DocSummary>> {
        let mut names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(docs_key(room))).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        names.sort();
        let keys: Vec<String> = names.iter().map(|name| doc_key(room, name, "meta")).collect();
        let items: Vec<Reply> = self.invoke(&self.scripts.doc_list.keys(&keys)).await?;
        if items.len() != names.len() * 3 {
            return Err(decode_error("document list", format!("{items:?}")));
        }
        let mut out = Vec::with_capacity(names.len());
        for (name, head) in names.into_iter().zip(items.chunks(3)) {
            match head {
                // Deleted between the two reads.
                [Reply::Nil, _, _] => {}
                [epoch, version, changed] => {
                    let version = number(version)?;
                    // Opened, never edited: not a document yet.
                    if version == 0 {
                        continue;
                    }
                    out.push(DocSummary { name, epoch: text(epoch)?, version, changed_at: number(changed)? })
                }
                other => return Err(decode_error("document head", format!("{other:?}"))),
            }
        }
        Ok(out)
    }

    async fn discard_if_empty(&self, room: &str, doc: &str, epoch: &str) -> StoreResult<bool> {
        let discarded: i64 = self.invoke(self.scripts.doc_discard.keys(&doc_and_catalog_keys(room, doc)).arg(epoch).arg(doc)).await?;
        Ok(discarded == 1)
    }

    async fn delete_doc(&self, room: &str, doc: &str) -> StoreResult<Option<DeletedDoc>> {
        let reply: Reply = self.invoke(self.scripts.doc_delete.keys(&doc_and_catalog_keys(room, doc)).arg(doc).arg(channel(room)).arg(self.publish_command())).await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => match items.as_slice() {
                [epoch, head] => Ok(Some(DeletedDoc { epoch: text(epoch)?, version: number(head)? })),
                other => Err(decode_error("delete reply", format!("{other:?}"))),
            },
            other => Err(decode_error("delete reply", format!("{other:?}"))),
        }
    }

    async fn import_doc(&self, room: &str, doc: &str, d: &ImportedDoc<'_>) -> StoreResult<bool> {
        let created: i64 = self.invoke(self.scripts.doc_import.keys(&[doc_key(room, doc, "meta"), doc_key(room, doc, "snapshot"), docs_key(room)])
            .arg(d.epoch)
            .arg(d.version)
            .arg(d.digest.to_hex())
            .arg(d.text)
            .arg(d.changed_at)
            .arg(doc)).await?;
        Ok(created == 1)
    }
}
