//! Undo histories on Redis: one hash per document, a field per user, under
//! the room's hash tag like everything else of the room.

use async_trait::async_trait;
use chorus_store::{HistoryStore, StoreResult};

use crate::{doc_key, store_error, RedisStore};

#[async_trait]
impl HistoryStore for RedisStore {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<String>> {
        redis::cmd("HGET").arg(doc_key(room, doc, "history")).arg(user).query_async(&mut self.conn()).await.map_err(store_error)
    }

    async fn save_history(&self, room: &str, doc: &str, user: &str, saved: String) -> StoreResult<()> {
        let _: i64 = redis::cmd("HSET").arg(doc_key(room, doc, "history")).arg(user).arg(saved).query_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(())
    }
}
