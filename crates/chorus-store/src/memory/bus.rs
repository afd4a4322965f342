//! The bus in memory: one broadcast channel per room with subscribers,
//! removed when its last subscription is dropped.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{lock, MemoryStore, BUS_CAPACITY};
use crate::{Bus, RoomEvent, StoreResult, Subscription};

#[async_trait]
impl Bus for MemoryStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        self.broadcast(room, event);
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let mut channels = lock(&self.inner.channels);
        let tx = channels.entry(room.to_owned()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0);
        let inner = Arc::downgrade(&self.inner);
        let room = room.to_owned();
        Ok(Subscription::new(tx.subscribe()).on_drop(move || {
            let Some(inner) = inner.upgrade() else { return };
            let mut channels = lock(&inner.channels);
            if channels.get(&room).is_some_and(|tx| tx.receiver_count() == 0) {
                channels.remove(&room);
            }
        }))
    }

    async fn confirm(&self, room: &str) -> StoreResult<()> {
        // Nothing between publisher and subscriber can fail here; a room
        // that asks holds a subscription, so its channel exists.
        let _ = room;
        Ok(())
    }

    fn subscribed_rooms(&self) -> usize {
        lock(&self.inner.channels).len()
    }
}
