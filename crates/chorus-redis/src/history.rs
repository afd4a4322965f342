//! Undo histories on Redis: per document, a hash of each user's saved
//! history and a hash of its revision (with the version of the undo op
//! written with it and the token of the write), under the room's hash tag
//! like everything else of the room. An undo's op and its history are
//! written by the append script, in one step.

use async_trait::async_trait;
use chorus_store::{HistoryStore, StoreError, StoreResult, StoredHistory};
use redis::Value as Reply;

use crate::{decode_error, doc_key, number, text, RedisStore};

#[async_trait]
impl HistoryStore for RedisStore {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<StoredHistory>> {
        let reply: Reply = self.invoke(self.scripts.history_load.keys(&[doc_key(room, doc, "history"), doc_key(room, doc, "history-rev")])
            .arg(user)).await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => match items.as_slice() {
                [rev, saved] => Ok(Some(StoredHistory { rev: number(rev)?, saved: text(saved)? })),
                other => Err(decode_error("history", format!("{other:?}"))),
            },
            other => Err(decode_error("history", format!("{other:?}"))),
        }
    }

    async fn save_history(&self, room: &str, doc: &str, epoch: &str, user: &str, expected_rev: u64, token: &str, saved: &str) -> StoreResult<bool> {
        let written: i64 = self.invoke(self.scripts.history_save.keys(&[doc_key(room, doc, "history"), doc_key(room, doc, "history-rev"), doc_key(room, doc, "meta")])
            .arg(user)
            .arg(expected_rev.to_string())
            .arg(token)
            .arg(saved)
            .arg(epoch)).await?;
        if written < 0 {
            return Err(StoreError::Stale(format!("no undo history saved for document {doc}: it is not incarnation {epoch} any more (deleted or created again)")));
        }
        Ok(written == 1)
    }
}
