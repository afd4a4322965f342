//! Document logs on Redis: the order of each text document.
//!
//! Redis holds the ops, the snapshot and each client's last (seq, version),
//! never the text at the head (the nodes do), so a commit is a constant
//! amount of work whatever the document's size. The log is a list whose
//! first element is the op after version `oldest`; trimming drops from the
//! front behind a snapshot.

use async_trait::async_trait;
use chorus_core::oplog::LogEntry;
use chorus_core::text::TextOp;
use chorus_store::{Appended, DocStore, StoreError, StoreResult, StoredDoc};
use redis::Value as Reply;

use crate::{channel, decode_error, doc_key, number, store_error, text, RedisStore};

fn entry_from(bytes: &[u8]) -> StoreResult<LogEntry> {
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

#[async_trait]
impl DocStore for RedisStore {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        let fresh_epoch = format!("{:016x}", rand::random::<u64>());
        let items: Vec<Reply> = self
            .scripts
            .doc_load
            .key(doc_key(room, doc, ""))
            .key(doc_key(room, doc, "log"))
            .key(doc_key(room, doc, "snapshot"))
            .arg(fresh_epoch)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let [epoch, snapshot_version, snapshot, ops @ ..] = items.as_slice() else {
            return Err(decode_error("document", format!("{items:?}")));
        };
        let ops = entries(ops)?;
        Ok(StoredDoc { epoch: text(epoch)?, snapshot_version: number(snapshot_version)?, snapshot: text(snapshot)?, ops })
    }

    async fn append(&self, room: &str, doc: &str, epoch: &str, expected: u64, client: &str, seq: u64, op: &TextOp) -> StoreResult<Appended> {
        let op = serde_json::to_string(op).map_err(|e| StoreError::Backend(e.to_string()))?;
        let reply: Vec<Reply> = self
            .scripts
            .doc_append
            .key(doc_key(room, doc, ""))
            .key(doc_key(room, doc, "log"))
            .key(doc_key(room, doc, "clients"))
            .arg(epoch)
            .arg(expected)
            .arg(client)
            .arg(seq)
            .arg(op)
            .arg(doc)
            .arg(channel(room))
            .arg(self.bus.node())
            .arg(self.publish_command())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let [outcome, value, missed @ ..] = reply.as_slice() else {
            return Err(decode_error("append reply", format!("{reply:?}")));
        };
        Ok(match text(outcome)?.as_str() {
            "committed" => Appended::Committed { version: number(value)? },
            "duplicate" => Appended::Duplicate { version: number(value)? },
            "conflict" => Appended::Conflict { head: number(value)?, missed: entries(missed)? },
            "stale" => Appended::StaleSeq { last: number(value)? },
            "epoch" => Appended::EpochChanged { epoch: text(value)? },
            other => return Err(decode_error("append outcome", other)),
        })
    }

    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        let reply: Reply = self
            .scripts
            .doc_since
            .key(doc_key(room, doc, ""))
            .key(doc_key(room, doc, "log"))
            .arg(epoch)
            .arg(version)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => entries(&items).map(Some),
            other => Err(decode_error("ops reply", format!("{other:?}"))),
        }
    }

    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        let last: Option<String> = redis::cmd("HGET").arg(doc_key(room, doc, "clients")).arg(client).query_async(&mut self.conn()).await.map_err(store_error)?;
        let Some(last) = last else { return Ok(None) };
        let parsed = last.split_once(':').and_then(|(s, v)| Some((s.parse().ok()?, v.parse().ok()?)));
        parsed.map(Some).ok_or_else(|| decode_error("client entry", last))
    }

    async fn snapshot(&self, room: &str, doc: &str, epoch: &str, version: u64, text: String, trim_to: u64) -> StoreResult<()> {
        let _: i64 = self
            .scripts
            .doc_snapshot
            .key(doc_key(room, doc, ""))
            .key(doc_key(room, doc, "log"))
            .key(doc_key(room, doc, "snapshot"))
            .key(doc_key(room, doc, "clients"))
            .arg(epoch)
            .arg(version)
            .arg(text)
            .arg(trim_to)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
